"""`porter run`'s path, read from the code as calls: one job builder, one launcher, a CLI
that only parses and prints (README: Architecture)."""

import ast
from collections import defaultdict

from conftest import REPO

ROOT = REPO


def _callers() -> dict:
    """Each called name (`f` for `f(...)` and `x.f(...)`, `Cls.f` for `Cls.f(...)`), with
    the modules of porter/ and runtime/ that call it."""
    callers = defaultdict(set)
    for path in sorted([*ROOT.glob("porter/**/*.py"), *ROOT.glob("runtime/**/*.py")]):
        module = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                function = node.func
                if isinstance(function, ast.Name):
                    callers[function.id].add(module)
                elif isinstance(function, ast.Attribute):
                    callers[function.attr].add(module)
                    if isinstance(function.value, ast.Name):
                        callers[f"{function.value.id}.{function.attr}"].add(module)
    return callers


def test_only_job_setup_builds_a_job():
    callers = _callers()
    for builds in ("Lifecycle", "RuntimeSettings.from_config", "job_folder"):
        assert callers[builds] == {"runtime/job_setup.py"}, builds
    assert callers["for_node"] == {"runtime/launch.py"}
    assert callers["for_process"] == {"runtime/run.py"}


def test_only_launch_launches_and_only_running_asks_it_to():
    callers = _callers()
    assert callers["supervise"] == {"porter/running.py"}
    assert callers["torchrun"] == {"runtime/launch.py"}
    assert callers["run_recipe_main"] == {"runtime/launch.py"}
    assert callers["check_config"] == {"runtime/launch.py"}
    # porter run and porter demo both go through run_job; the CLI builds no Launch.
    assert callers["run_job"] == {"porter/cli/run_commands.py"}
    assert callers["Launch"] == {"porter/running.py"}


def test_the_cli_imports_nothing_of_the_launch_path_but_running():
    imported = {
        node.module
        for path in (ROOT / "porter" / "cli").glob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
    }
    assert "porter.running" in imported
    assert not imported & {"runtime.launch", "runtime.run", "runtime.job_setup", "runtime.job_config"}
