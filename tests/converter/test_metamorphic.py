"""Metamorphic: behaviour-preserving variants of every upstream recipe port as the recipe
does, or as an assisted port, or are refused cleanly; never a crash, never a silent
change.

Each installed torchtune training recipe is rewritten the ways teams' forks rewrite
recipes, one or two rewrites at a time: locals of `train` renamed, the dataset condition
spelled otherwise, the metric dict built in steps, the epoch save moved into a helper,
training run inside a `with`. Where the rewrite commutes with the port (renames, the
dataset condition, the metric dict), the variant's port must be the original's port
rewritten the same way, statement for statement (the same ast: black may break inserted
lines elsewhere for other names): porter followed the code, not its spelling. The others
must port, with a note saying what moved (or leave holes). Every rewrite here ports
today, so a refusal fails the test. conftest prints the counts.
"""

from __future__ import annotations

import ast
import itertools
from collections import Counter
from typing import Callable, Dict, Optional

import libcst as cst
import libcst.matchers as m
import pytest

from conftest import installed_recipes
from porter.pipeline import port

VARIANTS = Counter()  # by outcome: full, assisted, refused, crashes; conftest prints it

# Locals of `train` that upstream recipes name this way, and forks otherwise.
RENAMED = {"curr_epoch": "epoch_index", "log_dict": "metrics", "time_per_step": "step_seconds", "t0": "step_clock"}


class _RenameLocals(cst.CSTTransformer):
    """Renames RENAMED's names inside the methods called `methods`."""

    def __init__(self, methods) -> None:
        super().__init__()
        self.methods, self.depth = methods, 0

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if node.name.value in self.methods or self.depth:
            self.depth += 1

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        if self.depth:
            self.depth -= 1
        return updated

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        return (
            updated.with_changes(value=RENAMED[updated.value]) if self.depth and updated.value in RENAMED else updated
        )

    # Attribute names (`self._metric_logger.log_dict`) and keywords are not the local.
    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)


def rename_locals(code: str, methods=("train",)) -> Optional[str]:
    renamed = cst.parse_module(code).visit(_RenameLocals(methods)).code
    return renamed if renamed != code else None


_LIST_CONFIG = m.Call(func=m.Name("isinstance"), args=[m.Arg(value=m.Name()), m.Arg(value=m.Name("ListConfig"))])


class _DatasetCondition(cst.CSTTransformer):
    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if m.matches(updated, _LIST_CONFIG):
            return updated.with_deep_changes(updated.args[1], value=cst.parse_expression("(ListConfig, list)"))
        return updated


def dataset_condition(code: str) -> Optional[str]:
    """`isinstance(cfg_dataset, ListConfig)` as `isinstance(cfg_dataset, (ListConfig, list))`:
    the same for any config OmegaConf gives."""
    changed = cst.parse_module(code).visit(_DatasetCondition()).code
    return changed if changed != code else None


class _MetricsInSteps(cst.CSTTransformer):
    """`d = {"loss": a, "lr": b}` as `d = {"loss": a}` then `d["lr"] = b`."""

    def leave_SimpleStatementLine(self, original, updated):
        small = updated.body[0] if len(updated.body) == 1 else None
        if not (
            isinstance(small, cst.Assign)
            and isinstance(small.value, cst.Dict)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
            and small.targets[0].target.value in ("log_dict", "metrics")
            and len(small.value.elements) > 1
            and all(isinstance(e, cst.DictElement) for e in small.value.elements)
        ):
            return updated
        name = small.targets[0].target.value
        first, *rest = small.value.elements
        statements = [
            updated.with_changes(
                body=[small.with_changes(value=cst.Dict([first.with_changes(comma=cst.MaybeSentinel.DEFAULT)]))]
            )
        ]
        for element in rest:
            assign = cst.parse_statement(f"{name}[{cst.Module([]).code_for_node(element.key)}] = _")
            # parenthesised: a value that spans lines inside the dict needs them as a statement
            value = element.value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
            statements.append(assign.with_deep_changes(assign.body[0], value=value))
        return cst.FlattenSentinel(statements)


def metrics_in_steps(code: str) -> Optional[str]:
    changed = cst.parse_module(code).visit(_MetricsInSteps()).code
    return changed if changed != code else None


def save_in_a_helper(code: str) -> Optional[str]:
    """The epoch save `self.save_checkpoint(epoch=curr_epoch)` through a helper method."""
    call = "self.save_checkpoint(epoch=curr_epoch)"
    if code.count(call) != 1 or "\nclass " not in code:
        return None
    helper = "\n    def _save_epoch(self, epoch: int) -> None:\n        self.save_checkpoint(epoch=epoch)\n"
    code = code.replace(call, "self._save_epoch(curr_epoch)")
    anchor = code.index("\n    def cleanup(self)")
    return code[:anchor] + "\n" + helper + code[anchor:]


def train_in_a_with(code: str) -> Optional[str]:
    """`recipe.train()` in `recipe_main` run inside `with contextlib.nullcontext():`."""
    if code.count("\n    recipe.train()\n") != 1:
        return None
    code = code.replace("\n    recipe.train()\n", "\n    with contextlib.nullcontext():\n        recipe.train()\n")
    return "import contextlib\n" + code


# name: (rewrite, whether port(rewrite(x)) must equal rewrite'(port(x)), and rewrite')
REWRITES: Dict[str, Callable[[str], Optional[str]]] = {
    "rename_locals": rename_locals,
    "dataset_condition": dataset_condition,
    "metrics_in_steps": metrics_in_steps,
    "save_in_a_helper": save_in_a_helper,
    "train_in_a_with": train_in_a_with,
}
# The rewrites that commute with the port, each as it applies to ported code.
COMMUTING = {
    "rename_locals": lambda code: rename_locals(code, ("train", "_train")),
    "dataset_condition": dataset_condition,
    "metrics_in_steps": metrics_in_steps,
}
COMBINATIONS = [(name,) for name in REWRITES] + list(itertools.combinations(REWRITES, 2))
RECIPES = sorted(
    path for path in installed_recipes().rglob("*.py") if "FTRecipeInterface" in path.read_text(encoding="utf-8")
)


@pytest.fixture(scope="module")
def originals():
    return {path: port(path.read_text(encoding="utf-8")) for path in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda path: path.stem)
def test_a_recipes_rewrites_port_as_the_recipe_does(path, originals):
    source, original = path.read_text(encoding="utf-8"), originals[path]
    assert original.status == "converted", original.reason
    for combination in COMBINATIONS:
        variant = source
        for name in combination:
            variant = REWRITES[name](variant) or variant
        if variant == source:
            continue  # nothing to rewrite in this recipe
        result = port(variant)
        what = f"{path.stem} rewritten by {' + '.join(combination)}"
        if (result.reason or "").startswith("internal error"):
            VARIANTS["crashes"] += 1
            pytest.fail(f"{what}: {result.reason}")
        VARIANTS[{"converted": "full", "partial": "assisted", "failed": "refused"}[result.status]] += 1
        # Every rewrite here is one porter ports today: a refusal is a regression.
        assert result.status != "failed", f"{what}: refused: {result.reason}"
        compile(result.code, what, "exec")
        if all(name in COMMUTING for name in combination):
            expected = original.code
            for name in combination:
                expected = COMMUTING[name](expected) or expected
            # the same code: black may break the inserted lines elsewhere for the other names
            assert ast.dump(ast.parse(result.code)) == ast.dump(ast.parse(expected)), (
                f"{what}: its port is not the original's port rewritten the same way"
            )
        if "train_in_a_with" in combination:
            assert any("`run_recipe(...)` takes its place there" in str(note) for note in result.notes), what
