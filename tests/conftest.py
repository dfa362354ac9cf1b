"""Shared test helpers: golden files, fixtures, upstream recipe sources."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
GOLDEN = REPO / "tests" / "golden"
CACHE = Path(os.environ.get("PORTER_TEST_CACHE", REPO / ".cache" / "tests"))


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="rewrite golden files with the current output instead of comparing",
    )


class Golden:
    def __init__(self, update: bool) -> None:
        self.update = update

    def check(self, path: Path, actual: str) -> None:
        if self.update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(actual)
            return
        assert path.exists(), f"no golden file {path}; run pytest --update-golden"
        expected = path.read_text()
        assert actual == expected, f"output differs from {path.relative_to(REPO)}"


@pytest.fixture
def golden(request) -> Golden:
    return Golden(request.config.getoption("--update-golden"))


def fixture_text(name: str) -> str:
    return (FIXTURES / "recipes" / name).read_text()


def installed_recipes() -> Path:
    from porter.sources import installed_recipes_dir

    return installed_recipes_dir()


def torchtune_wheel_recipes(version: str) -> Path:
    """The recipes folder of a released torchtune wheel, downloaded once into the cache."""
    target = CACHE / f"torchtune-{version}"
    recipes = target / "recipes"
    if recipes.is_dir():
        return recipes
    download = CACHE / "wheels"
    download.mkdir(parents=True, exist_ok=True)
    wheel = next(download.glob(f"torchtune-{version}-*.whl"), None)
    if wheel is None:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
             "-d", str(download), f"torchtune=={version}"],
            check=True,
        )
        wheel = next(download.glob(f"torchtune-{version}-*.whl"))
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    with zipfile.ZipFile(wheel) as archive:
        members = [n for n in archive.namelist() if n.startswith(("recipes/", f"torchtune-{version}.dist-info/"))]
        archive.extractall(partial, members)
    partial.rename(target)
    return recipes


def run_porter(*args: str, cwd: Path = REPO, env: dict = None, timeout: float = 300):
    """`porter ARGS` in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "porter", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )
