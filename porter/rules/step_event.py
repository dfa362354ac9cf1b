"""P006 step-event: every logged training step becomes a `step` job event.

The anchor is the metric-logger call (`self._metric_logger.log_dict(...)`) in the `if`
that tests `self.global_step % self._log_every_n_steps == 0`: only there, and only on
the rank that logs, do `log_dict` and `time_per_step` exist. `self.job_logger.log_step`
goes right after it, with the arguments in templates/step_event.py.j2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import epoch_attribute, epoch_loop, recipe_class, required_method
from porter.rules.base import PortingRule
from porter.syntax import (
    block_statements,
    called_name,
    iter_statements,
    METHOD_BODY_DEPTH,
    nesting,
    replace_statement,
    single_small_statement,
)

_SELF = m.Name("self")
LOG_EVERY_N_STEPS = m.Comparison(
    left=m.BinaryOperation(
        left=m.Attribute(value=_SELF, attr=m.Name("global_step")),
        operator=m.Modulo(),
        right=m.Attribute(value=_SELF, attr=m.Name("_log_every_n_steps")),
    ),
    comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Integer("0"))],
)
METRIC_LOGGER_CALL = "self._metric_logger.log_dict"
# Names the step event reads; the logging block must assign them.
_STEP_VALUES = ("log_dict", "time_per_step")


@dataclass
class Anchors:
    log_call: cst.BaseStatement
    depth: int
    epoch_variable: str
    total_epochs: str


class StepEvent(PortingRule):
    RULE_ID = "P006"
    NAME = "step-event"
    DESCRIPTION = "Log a `step` job event after the metric logger's per-step call."

    def find(self, tree: cst.Module) -> Anchors:
        train = required_method(recipe_class(tree, self.RULE_ID), "train", self.RULE_ID)
        loop = epoch_loop(train, self.RULE_ID)
        blocks = [
            stmt
            for stmt, _ in iter_statements(loop)
            if isinstance(stmt, cst.If) and m.findall(stmt.test, LOG_EVERY_N_STEPS)
        ]
        if len(blocks) != 1:
            raise PortError(
                self.RULE_ID,
                "expected one `if self.global_step % self._log_every_n_steps == 0` "
                f"block in the epoch loop, found {len(blocks)}",
                blocks[1] if blocks else loop,
            )
        block = blocks[0]
        calls = [
            stmt for stmt in block_statements(block) if called_name(stmt) == METRIC_LOGGER_CALL
        ]
        if len(calls) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected one `{METRIC_LOGGER_CALL}(...)` call directly in the "
                f"step-logging block, found {len(calls)}",
                calls[1] if calls else block,
            )
        assigned = _assigned_names(block_statements(block))
        missing = [name for name in _STEP_VALUES if name not in assigned]
        if missing:
            raise PortError(
                self.RULE_ID,
                f"the step-logging block does not assign {', '.join(missing)}",
                block,
            )
        return Anchors(
            log_call=calls[0],
            depth=METHOD_BODY_DEPTH + nesting(train, calls[0]),
            epoch_variable=loop.target.value,
            total_epochs=epoch_attribute(loop, 1),
        )

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        event = snippets.statements(
            "step_event.py.j2",
            depth=anchors.depth,
            epoch=anchors.epoch_variable,
            epoch_len=anchors.total_epochs,
        )
        return replace_statement(tree, anchors.log_call, [anchors.log_call, *event])


def _assigned_names(statements) -> List[str]:
    names = []
    for stmt in statements:
        small = single_small_statement(stmt)
        if isinstance(small, (cst.Assign, cst.AnnAssign)):
            targets = small.targets if isinstance(small, cst.Assign) else [small]
            names.extend(t.target.value for t in targets if isinstance(t.target, cst.Name))
    return names
