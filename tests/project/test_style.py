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


def _imports_between_modules() -> dict:
    """{module: the porter/runtime modules it imports, at the top or inside a function}."""
    import ast

    paths = {
        ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__"): path
        for package in ("porter", "runtime")
        for path in (REPO / package).rglob("*.py")
    }
    graph = {}
    for module, path in paths.items():
        named = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                named.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                named.add(node.module)
                named.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[module] = {name for name in named if name in paths and name != module}
    return graph


def test_no_module_of_porter_or_the_runtime_imports_itself_through_others():
    graph = _imports_between_modules()
    assert "porter.pipeline" in graph["porter.codemods"]  # the walk sees imports
    for start in graph:
        # Every module `start` reaches; none may reach `start` back.
        reached, frontier = set(), list(graph[start])
        while frontier:
            module = frontier.pop()
            if module not in reached:
                reached.add(module)
                frontier.extend(graph[module])
        assert start not in reached, f"{start} imports itself through {sorted(reached & set(graph))}"


def test_no_test_folder_shadows_a_package_jobs_import():
    # Jobs run with tests/ on PYTHONPATH (fault-injecting components live there): a folder
    # tests/runtime would be a namespace package found before the installed runtime.
    packages = {path.name for path in REPO.iterdir() if (path / "__init__.py").is_file()}
    assert {"porter", "runtime"} <= packages
    assert not packages & {path.name for path in (REPO / "tests").iterdir() if path.is_dir()}
