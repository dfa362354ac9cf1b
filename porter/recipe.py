"""What a torchtune training recipe looks like to the rules: shared structural lookups."""

from __future__ import annotations

from typing import List, Optional, Tuple

import libcst as cst
import libcst.matchers as m

from porter.errors import PortError
from porter.syntax import block_statements, dotted_name, iter_statements

UPSTREAM_BASE = "FTRecipeInterface"
PORTED_BASE = "RecipeBase"
INTERFACE_METHODS = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup")


def base_name(arg: cst.Arg) -> Optional[str]:
    """The last component of a base class expression: `a.B` gives `B`."""
    name = dotted_name(arg.value)
    return name.rsplit(".", 1)[-1] if name is not None else None


def base_names(cls: cst.ClassDef) -> List[str]:
    return [name for name in map(base_name, cls.bases) if name is not None]


def recipe_classes(module: cst.Module) -> List[cst.ClassDef]:
    """Module-level classes that subclass FTRecipeInterface, or RecipeBase once ported."""
    return [
        stmt
        for stmt in module.body
        if isinstance(stmt, cst.ClassDef)
        and {UPSTREAM_BASE, PORTED_BASE} & set(base_names(stmt))
    ]


def recipe_class(module: cst.Module, rule_id: str) -> cst.ClassDef:
    classes = recipe_classes(module)
    if len(classes) != 1:
        names = ", ".join(c.name.value for c in classes) or "none"
        raise PortError(
            rule_id,
            f"expected one {UPSTREAM_BASE} subclass, found {len(classes)} ({names})",
            classes[1] if len(classes) > 1 else None,
        )
    return classes[0]


def interface_method(cls: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
    """The method `name` of the recipe, public as upstream or `_`-prefixed once ported."""
    found = None
    for stmt in block_statements(cls):
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value in (name, f"_{name}"):
            if found is None or stmt.name.value == name:
                found = stmt
    return found


def required_method(cls: cst.ClassDef, name: str, rule_id: str) -> cst.FunctionDef:
    found = interface_method(cls, name)
    if found is None:
        raise PortError(
            rule_id, f"class {cls.name.value} has no `{name}` method", cls
        )
    return found


def is_self_attribute(node: cst.CSTNode, *names: str) -> bool:
    """`self.<name>` for one of `names`."""
    return m.matches(
        node,
        m.Attribute(
            value=m.Name("self"), attr=m.OneOf(*(m.Name(name) for name in names))
        ),
    )


_EPOCH_RANGE = m.Call(
    func=m.Name("range"),
    args=[
        m.Arg(value=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?epochs_run")))),
        m.Arg(value=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?total_epochs")))),
    ],
)


def epoch_loops(train: cst.FunctionDef) -> List[cst.For]:
    """`for <epoch> in range(self.epochs_run, self.total_epochs)` loops in `train`."""
    return [
        stmt
        for stmt, _ in iter_statements(train)
        if isinstance(stmt, cst.For)
        and isinstance(stmt.target, cst.Name)
        and m.matches(stmt.iter, _EPOCH_RANGE)
    ]


def epoch_loop(train: cst.FunctionDef, rule_id: str) -> cst.For:
    loops = epoch_loops(train)
    if len(loops) != 1:
        raise PortError(
            rule_id,
            "expected one epoch loop `for <epoch> in range(self.epochs_run, "
            f"self.total_epochs)` in `{train.name.value}`, found {len(loops)}",
            loops[1] if loops else train,
        )
    return loops[0]


def epoch_attribute(loop: cst.For, index: int) -> str:
    """`self.epochs_run` / `self.total_epochs` as the loop spells them (PPO: `_`)."""
    return f"self.{loop.iter.args[index].value.attr.value}"


_SELF = m.Name("self")
# `self.global_step % self._log_every_n_steps == 0` in SFT loops; RL loops (PPO, GRPO)
# count `self._steps_run` instead and log through a `log_metrics` method.
_STEP_COUNTERS = {"global_step": "sft", "_steps_run": "rl"}
_LOGGING_TEST = m.Comparison(
    left=m.BinaryOperation(
        left=m.Attribute(value=_SELF, attr=m.Name()),
        operator=m.Modulo(),
        right=m.Attribute(value=_SELF, attr=m.Name("_log_every_n_steps")),
    ),
    comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Integer("0"))],
)


def _conjuncts(test: cst.BaseExpression):
    """`a`, `b` and `c` of a test `a and (b and c)`; the test itself otherwise."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        yield from _conjuncts(test.left)
        yield from _conjuncts(test.right)
    else:
        yield test


def _logging_kind(test: cst.BaseExpression) -> Optional[str]:
    for comparison in _conjuncts(test):
        if not m.matches(comparison, _LOGGING_TEST):
            continue
        counter = comparison.left.left
        if isinstance(counter, cst.Attribute) and m.matches(counter.value, _SELF):
            kind = _STEP_COUNTERS.get(counter.attr.value)
            if kind is not None:
                return kind
    return None


def step_logging_block(loop: cst.For, rule_id: str) -> Tuple[cst.If, str]:
    """The `if` that logs every N steps in the epoch loop, and the loop's kind:
    'sft' (counts `self.global_step`) or 'rl' (counts `self._steps_run`)."""
    blocks = [
        (stmt, _logging_kind(stmt.test))
        for stmt, _ in iter_statements(loop)
        if isinstance(stmt, cst.If) and _logging_kind(stmt.test) is not None
    ]
    if len(blocks) != 1:
        raise PortError(
            rule_id,
            "expected one `if self.global_step % self._log_every_n_steps == 0` block "
            f"(`self._steps_run` in RL loops) in the epoch loop, found {len(blocks)}",
            blocks[1][0] if len(blocks) > 1 else loop,
        )
    return blocks[0]


def step_loop(loop: cst.For, rule_id: str) -> cst.For:
    """The loop over the dataloader directly inside the epoch loop."""
    loops = [
        stmt
        for stmt in block_statements(loop)
        if isinstance(stmt, cst.For)
        and m.findall(stmt.iter, m.Attribute(value=_SELF, attr=m.Name("_dataloader")))
    ]
    if len(loops) != 1:
        raise PortError(
            rule_id,
            f"expected one loop over `self._dataloader` directly in the epoch loop, found {len(loops)}",
            loops[1] if len(loops) > 1 else loop,
        )
    return loops[0]
