"""Shared test helpers: golden files, fixtures, upstream recipe sources."""

from __future__ import annotations

import os
import pty
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
# porter's cache of ports, for every porter the tests run: never the user's own.
os.environ["PORTER_CACHE_DIR"] = str(CACHE / "ports")


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


def torchtune_wheel(version: str) -> Path:
    """A released torchtune wheel, downloaded once into the cache."""
    download = CACHE / "wheels"
    download.mkdir(parents=True, exist_ok=True)
    wheel = next(download.glob(f"torchtune-{version}-*.whl"), None)
    if wheel is None:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(download),
                f"torchtune=={version}",
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            import pytest

            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            pytest.skip(
                f"torchtune {version}'s wheel is not cached and pip cannot download it (no registry here?): {last}"
            )
        wheel = next(download.glob(f"torchtune-{version}-*.whl"))
    return wheel


def torchtune_wheel_recipes(version: str) -> Path:
    """The recipes folder of a released torchtune wheel, unpacked once into the cache."""
    target = CACHE / f"torchtune-{version}"
    recipes = target / "recipes"
    if recipes.is_dir():
        return recipes
    wheel = torchtune_wheel(version)
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


def on_terminal(*args, env=None, cwd=REPO):
    """`porter ARGS` with stdout and stderr on a pseudo-terminal: what a user's terminal shows."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "porter", *map(str, args)],
        stdout=terminal,
        stderr=terminal,
        cwd=cwd,
        env={**os.environ, "TERM": "xterm", **(env or {})},
    )
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        output += chunk
    process.wait(timeout=120)
    os.close(controller)
    return process.returncode, output.decode("utf-8", "replace")


# -- training runs ---------------------------------------------------------------------

JOB_ENV = {
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_OFFLINE": "1",
    "TIKTOKEN_CACHE_DIR": "",
    # faults.py (failing metric logger, slow sinks) is importable by the jobs.
    "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), os.environ.get("PYTHONPATH", "")]),
}


@pytest.fixture(scope="session")
def demo():
    """The demo's model, tokenizer, data and configs, made once per cache."""
    from porter.demo import prepare

    return prepare(CACHE / "demo")


@pytest.fixture(scope="session")
def generated(tmp_path_factory) -> Path:
    """The installed torchtune's recipes, converted once per test session."""
    from porter.convert import convert
    from porter.sources import discover

    out = tmp_path_factory.mktemp("generated_recipes")
    convert(discover([], installed=True), out)
    return out


def events_of(path: Path) -> list:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def porter_run_args(
    demo, generated, root: Path, recipe: str, *args: str, job_id: str, user_id: str, config: Path = None
) -> list:
    """`run RECIPE ...`: the arguments of `porter run` for a job of the session's generated
    recipes on the demo's config for RECIPE (or `config`), under output root `root`."""
    return [
        "run",
        recipe,
        "--config",
        str(config or demo.config(recipe)),
        "--job-id",
        job_id,
        "--user-id",
        user_id,
        "--output-root",
        str(root),
        "--recipes-dir",
        str(generated),
        *args,
    ]


def job_runner(demo, generated, root: Path):
    """`porter run` of a generated recipe on the demo config; returns (process, events)."""

    def run(
        recipe: str,
        *args: str,
        job_id: str = "job",
        user_id: str = "tester",
        config: Path = None,
        env: dict = None,
        timeout: float = 300,
    ):
        done = run_porter(
            *porter_run_args(
                demo, generated, root, recipe, "--no-console", *args, job_id=job_id, user_id=user_id, config=config
            ),
            env={**JOB_ENV, **(env or {})},
            timeout=timeout,
        )
        events_path = root / user_id / job_id / "events.jsonl"
        return done, (events_of(events_path) if events_path.exists() else [])

    run.root = root
    return run


@pytest.fixture
def run_job(demo, generated, tmp_path):
    return job_runner(demo, generated, tmp_path / "runs")


def pytest_terminal_summary(terminalreporter):
    """How many mutants the property test and variants the metamorphic test tried, by
    outcome (CI prints them)."""
    import sys

    metamorphic = sys.modules.get("test_metamorphic")
    if metamorphic is not None and metamorphic.VARIANTS:
        counts = metamorphic.VARIANTS
        terminalreporter.write_line(
            f"metamorphic test: {sum(counts.values())} variants of upstream recipes: {counts['full']} full, "
            f"{counts['assisted']} assisted, {counts['refused']} refused, {counts['crashes']} crashes"
        )
    mutations = sys.modules.get("test_mutations")
    if mutations is not None and mutations.MUTANTS:
        counts = dict(mutations.MUTANTS)
        unprintable = counts.pop("unprintable", 0)
        terminalreporter.write_line(
            f"mutation property test: {sum(counts.values())} mutants converted or refused "
            f"({', '.join(f'{n} {status}' for status, n in sorted(counts.items()))}), none crashed; "
            f"{unprintable} more that libcst could not print were not tried"
        )
