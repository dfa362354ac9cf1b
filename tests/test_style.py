"""porter's own code is linted and formatted with ruff (pyproject.toml, [tool.ruff])."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

CODE = ("porter", "runtime", "bench", "scripts", "tests")


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_ruff_passes_on_porters_own_code(command):
    done = subprocess.run(
        [sys.executable, "-m", "ruff", *command, *CODE], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
