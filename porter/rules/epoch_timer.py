"""P005 epoch-timer: start the epoch clock where the step clock starts.

`t_epoch_start = time.perf_counter()` goes right above the `t0 = time.perf_counter()`
declaration in the body of `train`; the comment block above `t0` stays with `t0`. The
`t0` reset inside the optimizer-step block is never the anchor.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import recipe_class, required_method
from porter.rules.base import PortingRule
from porter.syntax import block_statements, leading_blank_lines, replace_statement

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
    train: cst.FunctionDef
    step_timer: cst.SimpleStatementLine


class EpochTimer(PortingRule):
    RULE_ID = "P005"
    NAME = "epoch-timer"
    DESCRIPTION = "Insert `t_epoch_start = time.perf_counter()` above the `t0` declaration."

    def find(self, tree: cst.Module) -> Anchors:
        train = required_method(recipe_class(tree, self.RULE_ID), "train", self.RULE_ID)
        timers = [stmt for stmt in block_statements(train) if m.matches(stmt, STEP_TIMER)]
        if len(timers) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected one `t0 = time.perf_counter()` directly in "
                f"`{train.name.value}`, found {len(timers)}",
                timers[1] if timers else train,
            )
        return Anchors(train, timers[0])

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        (epoch_timer,) = snippets.statements("epoch_timer.py.j2", depth=2)
        blank, comments = leading_blank_lines(anchors.step_timer)
        return replace_statement(
            tree,
            anchors.step_timer,
            [
                epoch_timer.with_changes(leading_lines=blank),
                anchors.step_timer.with_changes(leading_lines=comments),
            ],
        )
