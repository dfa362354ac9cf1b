"""P005 epoch-timer: start the epoch clock where the step clock starts.

`t_epoch_start = time.perf_counter()` goes right above the `t0 = time.perf_counter()`
declaration in the body of `train`; the comment block above `t0` stays with `t0`. The
`t0` reset inside the optimizer-step block is never the anchor. RL loops (PPO, GRPO)
have no `t0`: the clock starts right above the statement holding the epoch loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import epoch_loop, recipe_class, required_method, step_logging_block
from porter.rules.base import PortingRule
from porter.syntax import block_statements, iter_statements, leading_blank_lines, replace_statement

STEP_TIMER = m.SimpleStatementLine(
    body=[
        m.Assign(
            targets=[m.AssignTarget(target=m.Name("t0"))],
            value=m.Call(func=m.Attribute(value=m.Name("time"), attr=m.Name("perf_counter"))),
        )
    ]
)


@dataclass
class Anchors:
    before: cst.BaseStatement  # the clock starts right above this statement


class EpochTimer(PortingRule):
    RULE_ID = "P005"
    NAME = "epoch-timer"
    DESCRIPTION = "Insert `t_epoch_start = time.perf_counter()` above the `t0` declaration."

    def find(self, tree: cst.Module) -> Anchors:
        train = required_method(recipe_class(tree, self.RULE_ID), "train", self.RULE_ID)
        timers = [stmt for stmt in block_statements(train) if m.matches(stmt, STEP_TIMER)]
        if len(timers) == 1:
            return Anchors(timers[0])
        if not timers:
            loop = epoch_loop(train, self.RULE_ID)
            if step_logging_block(loop, self.RULE_ID)[1] == "rl":
                (holder,) = [s for s in block_statements(train) if any(a is loop for a in _inner(s))]
                return Anchors(holder)
        raise PortError(
            self.RULE_ID,
            f"expected one `t0 = time.perf_counter()` directly in "
            f"`{train.name.value}`, found {len(timers)}",
            timers[1] if timers else train,
        )

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        (epoch_timer,) = snippets.statements("epoch_timer.py.j2", depth=2)
        blank, comments = leading_blank_lines(anchors.before)
        return replace_statement(
            tree,
            anchors.before,
            [
                epoch_timer.with_changes(leading_lines=blank),
                anchors.before.with_changes(leading_lines=comments),
            ],
        )


def _inner(stmt: cst.BaseStatement):
    """`stmt` and every statement inside it."""
    yield stmt
    for inner, _ in iter_statements(stmt):
        yield inner
