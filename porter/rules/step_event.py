"""P006 step-event: every logged training step becomes a `step` job event.

SFT loops: the anchor is the metric-logger call (`self._metric_logger.log_dict(...)`)
in the `if` that tests `self.global_step % self._log_every_n_steps == 0`: only there,
and only on the rank that logs, do `log_dict` and `time_per_step` exist.

RL loops (PPO, GRPO) count `self._steps_run` and log through `self.log_metrics(...)`;
they have no `log_dict` and no step clock. porter starts one at the top of the loop
over the dataloader (templates/step_timer.py.j2) and logs, on rank 0, the mean loss of
the stats the recipe logs, its optimizer's learning rate and the step's time.

Both shapes are in templates/step_event.py.j2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import libcst as cst

from porter import snippets
from porter.errors import PortError
from porter.recipe import (
    epoch_attribute,
    epoch_loop,
    recipe_class,
    required_method,
    step_logging_block,
    step_loop,
)
from porter.rules.base import PortingRule
from porter.syntax import (
    block_statements,
    called_name,
    expression_of,
    leading_blank_lines,
    METHOD_BODY_DEPTH,
    nesting,
    replace_statement,
    single_small_statement,
)

METRIC_LOGGER_CALL = "self._metric_logger.log_dict"
RL_LOG_CALL = "self.log_metrics"
# Names the SFT step event reads; the logging block must assign them.
_STEP_VALUES = ("log_dict", "time_per_step")


@dataclass
class Anchors:
    log_call: cst.BaseStatement
    depth: int
    epoch_variable: str
    total_epochs: str
    stats: Optional[str] = None  # RL loops: the stats expression the recipe logs
    step_loop_first: Optional[cst.BaseStatement] = None  # RL loops: where the step clock starts
    step_loop_depth: int = 0


class StepEvent(PortingRule):
    RULE_ID = "P006"
    NAME = "step-event"
    DESCRIPTION = "Log a `step` job event after the recipe logs a training step."

    def find(self, tree: cst.Module) -> Anchors:
        train = required_method(recipe_class(tree, self.RULE_ID), "train", self.RULE_ID)
        loop = epoch_loop(train, self.RULE_ID)
        block, kind = step_logging_block(loop, self.RULE_ID)
        call = RL_LOG_CALL if kind == "rl" else METRIC_LOGGER_CALL
        calls = [stmt for stmt in block_statements(block) if called_name(stmt) == call]
        if len(calls) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected one `{call}(...)` call directly in the step-logging block, found {len(calls)}",
                calls[1] if calls else block,
            )
        anchors = Anchors(
            log_call=calls[0],
            depth=METHOD_BODY_DEPTH + nesting(train, calls[0]),
            epoch_variable=loop.target.value,
            total_epochs=epoch_attribute(loop, 1),
        )
        if kind == "sft":
            missing = [name for name in _STEP_VALUES if name not in _assigned_names(block_statements(block))]
            if missing:
                raise PortError(
                    self.RULE_ID, f"the step-logging block does not assign {', '.join(missing)}", block
                )
            return anchors
        anchors.stats = _logged_stats(calls[0], self.RULE_ID)
        first = block_statements(step_loop(loop, self.RULE_ID))[0]
        anchors.step_loop_first = first
        anchors.step_loop_depth = METHOD_BODY_DEPTH + nesting(train, first)
        return anchors

    def notes(self, anchors: Anchors, index) -> List[str]:
        if anchors.stats is None:
            return []
        return [
            f"line {index.line(anchors.log_call)}: RL loop: the step event reports the mean loss "
            "of the stats it logs, the optimizer's learning rate, and a step clock started at "
            f"line {index.line(anchors.step_loop_first)}; no peak memory"
        ]

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        context = dict(epoch=anchors.epoch_variable, epoch_len=anchors.total_epochs)
        if anchors.stats is not None:
            context["stats"] = anchors.stats
            (timer,) = snippets.statements("step_timer.py.j2", depth=anchors.step_loop_depth)
            blank, comments = leading_blank_lines(anchors.step_loop_first)
            tree = replace_statement(
                tree,
                anchors.step_loop_first,
                [timer.with_changes(leading_lines=blank), anchors.step_loop_first.with_changes(leading_lines=comments)],
            )
        event = snippets.statements("step_event.py.j2", depth=anchors.depth, **context)
        return replace_statement(tree, anchors.log_call, [anchors.log_call, *event])


def _logged_stats(log_call: cst.BaseStatement, rule_id: str) -> str:
    """The code of the `...Stats(...)` argument an RL recipe passes to log_metrics."""
    call = expression_of(log_call)
    stats = [
        arg.value
        for arg in call.args
        if isinstance(arg.value, cst.Call)
        and isinstance(arg.value.func, cst.Name)
        and arg.value.func.value.endswith("Stats")
    ]
    if len(stats) != 1:
        raise PortError(
            rule_id,
            f"expected `{RL_LOG_CALL}(...)` to get one `...Stats(...)` argument, found {len(stats)}",
            log_call,
        )
    return cst.Module(body=[]).code_for_node(stats[0])


def _assigned_names(statements) -> List[str]:
    names = []
    for stmt in statements:
        small = single_small_statement(stmt)
        if isinstance(small, (cst.Assign, cst.AnnAssign)):
            targets = small.targets if isinstance(small, cst.Assign) else [small]
            names.extend(t.target.value for t in targets if isinstance(t.target, cst.Name))
    return names
