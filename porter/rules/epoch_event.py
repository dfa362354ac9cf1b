"""P005 epoch-event: each epoch is timed and logged as an `epoch` job event.

The epoch clock, `t_epoch_start = time.perf_counter()`, starts right above the step
clock's declaration (`t0 = time.perf_counter()`, the one the step-logging block reads)
when it is in the body of the method with the epoch loop; otherwise (RL loops, older
recipes) right above the statement that holds the epoch loop. Where the epoch ends
(after `self.epochs_run += 1`, and after the epoch's save when it follows) go the
`epoch` event, with the keywords the runtime contract's `log_epoch` takes, and the
clock's reset. Every rank runs it, so each rank logs its epoch.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import List

import libcst as cst
import libcst.matchers as m

from porter.edits import Edits
from porter.errors import PortError
from porter.imports import Needed
from porter.rules.base import PortingRule
from porter.shape import EPOCH_COUNT, EPOCH_LOOP, RecipeShape
from porter.syntax import block_statements, METHOD_BODY_DEPTH
from porter.verify import called_once

CLOCK = "t_epoch_start"


@dataclass
class Anchors:
    clock_before: cst.BaseStatement  # the epoch clock starts right above this statement
    epoch_end: cst.BaseStatement  # the event goes right after this one


class EpochEvent(PortingRule):
    RULE_ID = "P005"
    NAME = "epoch-event"
    DESCRIPTION = (
        "Start an epoch clock above the step clock; log an `epoch` job event and reset the clock where each epoch ends."
    )
    NEEDS = (EPOCH_LOOP, EPOCH_COUNT)
    TEMPLATE = "epoch_event.py.j2"

    def find(self, shape: RecipeShape) -> Anchors:
        method = shape.epoch.method
        if CLOCK in shape.names_in(method):
            raise PortError(self.RULE_ID, f"`{method.name.value}` already has a `{CLOCK}`", method)
        return Anchors(clock_before=_step_clock(shape) or shape.epoch.holder, epoch_end=shape.epoch_end)

    def edit(self, shape: RecipeShape, anchors: Anchors, edits: Edits) -> None:
        fields = self.contract.log_epoch
        if "epoch_time_elapsed_s" in fields:  # the clock is read by that field alone
            edits.insert_before(anchors.clock_before, self.snippet("clock", depth=METHOD_BODY_DEPTH))
        edits.insert_after(
            anchors.epoch_end,
            self.snippet(
                "epoch_end",
                depth=shape.epoch.body_depth,
                fields=fields,
                epoch=shape.epoch.variable,
                epoch_len=shape.epoch.total_epochs,
            ),
        )

    def imports(self, anchors: Anchors) -> List[Needed]:
        return [Needed("time")] if "epoch_time_elapsed_s" in self.contract.log_epoch else []

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Anchors) -> List[str]:
        return called_once(ported, shape, shape.epoch.method, "self.job_logger.log_epoch")


def _step_clock(shape: RecipeShape):
    """The declaration of the clock the step-logging block reads (`t0 = time.perf_counter()`),
    if it is the only one in the body of the method with the epoch loop, before the loop."""
    logging = shape.logging
    if logging is None or logging.step_time is None:
        return None
    timer = logging.step_clock
    body = list(block_statements(shape.epoch.method))
    declarations = [
        stmt
        for stmt in body[: body.index(shape.epoch.holder)]
        if m.matches(
            stmt,
            m.SimpleStatementLine(
                body=[
                    m.Assign(
                        targets=[m.AssignTarget(target=m.Name(timer))],
                        value=m.Call(func=m.Attribute(value=m.Name("time"), attr=m.Name("perf_counter"))),
                    )
                ]
            ),
        )
    ]
    return declarations[0] if len(declarations) == 1 else None
