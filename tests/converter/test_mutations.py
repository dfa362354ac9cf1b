"""Property: the converter never fails with an unexpected exception.

Real recipes are mutated structurally (statements deleted, duplicated, swapped with a
neighbour; methods renamed) and converted. Every result is either a port that passes
the converter's invariants or a failure reported with its reason.
"""

from __future__ import annotations

import ast
from collections import Counter

import libcst as cst
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import FIXTURES, installed_recipes
from porter.edits import EmptyBlockError, Edits
from porter.pipeline import port
from porter.syntax import iter_statements

MUTANTS = Counter()  # by result status; conftest prints it at the end of the run
SOURCES = [
    *(
        installed_recipes() / name
        for name in (
            "full_finetune_single_device.py",
            "lora_finetune_distributed.py",
            "ppo_full_finetune_single_device.py",
            "dev/lora_finetune_distributed_multi_dataset.py",
        )
    ),
    *(FIXTURES / "recipes" / name for name in ("main_recipe.py", "inline_save_recipe.py")),
]
PARSED = {path: cst.parse_module(path.read_text()) for path in SOURCES}
METHOD_NAMES = [
    "__init__",
    "setup",
    "train",
    "save_checkpoint",
    "load_checkpoint",
    "cleanup",
    "_setup_data",
    "validate",
]


def mutate(module: cst.Module, data) -> cst.Module:
    statements = [stmt for stmt, _ in iter_statements(module)]
    kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "rename"]), label="mutation")
    edits = Edits()
    if kind == "rename":
        methods = [stmt for stmt in statements if isinstance(stmt, cst.FunctionDef)]
        target = data.draw(st.sampled_from(methods), label="method")
        name = data.draw(st.sampled_from(METHOD_NAMES + [target.name.value + "_old"]), label="new name")
        edits.replace(target, [target.with_changes(name=cst.Name(name))])
    else:
        target = data.draw(st.sampled_from(statements), label="statement")
        if kind == "delete":
            edits.remove(target)
        elif kind == "duplicate":
            edits.insert_after(target, [target.deep_clone()])
        else:
            siblings = _siblings(module, target)
            index = next(i for i, stmt in enumerate(siblings) if stmt is target)
            if index + 1 >= len(siblings):
                return module
            after = siblings[index + 1]
            edits.replace(after, [target.deep_clone()])
            edits.replace(target, [after.deep_clone()])
    try:
        return edits.apply(module)
    except EmptyBlockError:  # deleting a block's only statement makes no module
        return module


def _siblings(module: cst.Module, target: cst.BaseStatement):
    """The statement list `target` sits in."""
    for block in _blocks(module):
        if any(stmt is target for stmt in block.body):
            return list(block.body)
    return []


def _blocks(node: cst.CSTNode):
    """Every statement list under `node`, walking statements only."""
    if isinstance(node, (cst.Module, cst.IndentedBlock)):
        yield node
        for stmt in node.body:
            if not isinstance(stmt, cst.SimpleStatementLine):
                yield from _blocks(stmt)
        return
    for child in node.children:
        if isinstance(child, (cst.IndentedBlock, cst.Else, cst.Finally, cst.ExceptHandler, cst.If)):
            yield from _blocks(child)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_recipes_are_ported_or_refused_never_crash(data):
    path = data.draw(st.sampled_from(SOURCES), label="recipe")
    module = PARSED[path]
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        module = mutate(module, data)
    try:
        code = module.code
    except Exception:  # libcst cannot print every mutant (an emptied block): counted apart
        MUTANTS["unprintable"] += 1
        return
    result = port(code)
    MUTANTS[result.status] += 1
    # port() turns a bug into a failed file, so that one file never stops the others:
    # here that is the crash the property is about.
    assert not (result.reason or "").startswith("internal error"), result.reason
    if result.status in ("converted", "partial"):  # partial: an assisted port, its holes marked
        compile(result.code, str(path), "exec")
        assert ported_shape_problems(ast.parse(result.code)) == []
        assert (result.status == "partial") == ("# TODO(porter P" in result.code) == bool(result.holes)
    else:
        assert result.reason and "\n" not in result.reason


def ported_shape_problems(tree: ast.Module) -> list:
    """What any port looks like, checked apart from porter's own checks."""
    classes = [
        n for n in tree.body if isinstance(n, ast.ClassDef) and any(ast.unparse(b) == "RecipeBase" for b in n.bases)
    ]
    if len(classes) != 1:
        return [f"{len(classes)} RecipeBase subclasses"]
    methods = {n.name for n in classes[0].body if isinstance(n, ast.FunctionDef)}
    problems = [
        f"public `{name}` left"
        for name in ("__init__", "setup", "train", "save_checkpoint", "cleanup")
        if name in methods
    ]
    if any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body):
        problems.append("`__main__` block left")
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "recipe_main"]
    if [a.arg for a in main.args.args] != ["job_id", "user_id", "cfg", "dataset"]:
        problems.append("recipe_main signature")
    for event in ("log_step", "log_epoch"):
        calls = [
            n
            for n in ast.walk(classes[0])
            if isinstance(n, ast.Call) and ast.unparse(n.func) == f"self.job_logger.{event}"
        ]
        if len(calls) != 1:
            problems.append(f"{len(calls)} {event} calls")
    return problems
