"""porter advertises Python 3.10: its converter runs there (tomli for tomllib) and
writes the same files as on 3.11. Run in a venv of Python 3.10 made once into the test
cache; skipped where no Python 3.10 is installed."""

from __future__ import annotations

import glob
import importlib.metadata
import os
import shutil
import subprocess
import sys

import pytest

from conftest import CACHE, FIXTURES, REPO


def _find_python310():
    """A Python 3.10 that runs: a pyenv shim on PATH may exist yet refuse to start."""
    candidates = [
        shutil.which("python3.10"),
        *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.10*/bin/python3.10"))),
    ]
    for candidate in filter(None, candidates):
        try:
            version = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if version.returncode == 0 and version.stdout.startswith("Python 3.10"):
            return candidate
    return None


PYTHON310 = _find_python310()
# What the converter needs; torch and torchtune only the runtime and --installed do.
CONVERTER_DEPENDENCIES = ["jinja2", "pyflakes", "click", "omegaconf", "tomli", "packaging"]
# The parser and formatter decide the output: the versions this interpreter has. (Not all
# of constraints.txt, resolved on 3.11, has 3.10 builds.)
SAME_OUTPUT_PINS = [f"{name}=={importlib.metadata.version(name)}" for name in ("libcst", "black")]


@pytest.fixture(scope="module")
def python310():
    if PYTHON310 is None:
        pytest.skip("no python3.10 on this machine")
    venv = CACHE / "py310"
    python = venv / "bin" / "python"
    if not python.exists():
        partial = venv.with_name("py310.partial")
        shutil.rmtree(partial, ignore_errors=True)
        subprocess.run([PYTHON310, "-m", "venv", str(partial)], check=True)
        pip = [str(partial / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *CONVERTER_DEPENDENCIES, *SAME_OUTPUT_PINS], check=True, timeout=600)
        partial.rename(venv)
    # porter itself from this checkout (editable, so it tests the code as it is now),
    # without its heavy runtime dependencies.
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(REPO)], check=True, timeout=600
    )
    return python


def porter310(python, *args, cwd):
    return subprocess.run(
        [str(python), "-m", "porter", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PORTER_CACHE_DIR": str(cwd / "cache")},
    )


def test_the_converter_runs_on_python_3_10_and_writes_what_3_11_writes(python310, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(FIXTURES / "recipes", project / "recipes")
    (project / "pyproject.toml").write_text('[tool.porter]\nsource = ["recipes"]\noutput = "out"\n')  # read with tomli
    old = porter310(python310, "convert", cwd=project)
    assert old.returncode == 0, old.stderr
    assert "Python 3.10" in subprocess.run([str(python310), "--version"], capture_output=True, text=True).stdout
    new = subprocess.run(
        [sys.executable, "-m", "porter", "convert", "-o", "out311"], cwd=project, capture_output=True, text=True
    )
    assert new.returncode == 0, new.stderr
    names = sorted(p.name for p in (project / "out").iterdir())
    assert names == sorted(p.name for p in (project / "out311").iterdir()) and len(names) == 6
    for name in names:
        assert (project / "out" / name).read_text() == (project / "out311" / name).read_text(), name
