"""P006 step-event: every logged training step becomes a `step` job event.

SFT loops: right after the metric logger's call in the step-logging block (`if
self.global_step % self._log_every_n_steps == 0:`), where, on the rank that logs, the
metric dict and the step's time exist. The event reads the keys the dict has (`loss`,
or `train/loss` in a fork that renamed it) and the step time computed from the step
clock (`time_per_step`, or whatever the fork names it). A recipe that logs a dict
literal (torchtune 0.1) gets it named `log_dict` first; one with no step clock gets one
at the top of the loop that logs.

RL loops (PPO, GRPO) log `...Stats` through `self.log_metrics(...)`: the event, on rank
0, takes the mean loss of those stats, the optimizer's learning rate and a step clock
porter starts at the top of the loop over the dataloader.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import libcst as cst

from porter.edits import Edits
from porter.errors import PortError
from porter.imports import Needed
from porter.outcomes import CHANGED, Note
from porter.rules.base import PortingRule
from porter.shape import EPOCH_LOOP, RecipeShape, STEP_LOGGING, StepLogging
from porter.syntax import block_statements, expression_of, iter_statements, METHOD_BODY_DEPTH, node_code
from porter.verify import called_once

MEMORY_KEYS = ("peak_memory_active", "peak_memory_alloc", "peak_memory_reserved")
THROUGHPUT_KEY = "tokens_per_second_per_gpu"  # upstream's
# What forks call their throughput instead (the last part of the key).
THROUGHPUT_SPELLINGS = ("tokens_per_second", "tokens_per_sec", "tokens_per_s", "tokens_per_second_per_device")
THROUGHPUT_FIELD = "step_tokens_per_s"
STEP_CLOCK = "t_step_start"
NAMED_METRICS = "log_dict"


@dataclass
class Anchors:
    logging: StepLogging
    depth: int  # of the log call
    metrics: str = NAMED_METRICS
    loss_key: str = "loss"
    lr_key: str = "lr"
    lr_optional: bool = False  # the dict merges another that may hold `lr`: read with .get()
    memory_keys: Tuple[str, str, str] = MEMORY_KEYS
    throughput_key: str = THROUGHPUT_KEY
    throughput: str = "upstream"  # "upstream", "renamed" (read from the fork's key), "absent" (null)
    step_time: Optional[str] = None  # None: porter starts a step clock
    clock_before: Optional[cst.BaseStatement] = None  # where porter's step clock starts
    clock_depth: int = 0


class StepEvent(PortingRule):
    RULE_ID = "P006"
    NAME = "step-event"
    DESCRIPTION = "Log a `step` job event after the recipe logs a training step."
    NEEDS = (EPOCH_LOOP, STEP_LOGGING)
    TEMPLATE = "step_event.py.j2"

    def find(self, shape: RecipeShape) -> Anchors:
        logging = shape.logging
        if logging.epoch_variable is None:
            raise PortError(
                self.RULE_ID,
                f"the step-logging block is in `{logging.method.name.value}`, which is not passed the epoch; the step event needs it",
                logging.block,
            )
        anchors = Anchors(logging, depth=_depth(logging))
        if logging.kind == "rl":
            if logging.stats is None:
                raise PortError(
                    self.RULE_ID,
                    "expected `self.log_metrics(...)` to get one `...Stats(...)` argument",
                    logging.log_call,
                )
        else:
            self._find_metrics(shape, logging, anchors)
            anchors.step_time = logging.step_time
        if anchors.step_time is None:
            if logging.step_loop is None:
                raise PortError(
                    self.RULE_ID, "the step-logging block has no step clock and is in no loop to time", logging.block
                )
            if STEP_CLOCK in shape.names_in(logging.method):
                raise PortError(
                    self.RULE_ID, f"`{logging.method.name.value}` already has a `{STEP_CLOCK}`", logging.method
                )
            anchors.clock_before = block_statements(logging.step_loop)[0]
            anchors.clock_depth = anchors.depth - _levels_between(logging)
        return anchors

    def _find_metrics(self, shape: RecipeShape, logging: StepLogging, anchors: Anchors) -> None:
        keys = logging.metric_keys
        where = f"`{logging.metric_dict}`" if logging.metric_dict else "the dict it logs"
        if keys is None:
            raise PortError(
                self.RULE_ID,
                f"porter cannot tell the keys of {where}: it is not built from dict literals; the step event needs its loss and lr",
                logging.log_call,
            )
        anchors.loss_key = _key(keys, ("loss",), where, self.RULE_ID, logging.log_call)
        if logging.merged_metrics and not any(_last_part(key) in ("lr", "learning_rate") for key in keys):
            anchors.lr_optional = True  # from the merged dict, if it has it
        else:
            anchors.lr_key = _key(keys, ("lr", "learning_rate"), where, self.RULE_ID, logging.log_call)
        anchors.memory_keys = tuple(
            next((key for key in keys if _last_part(key) == memory), memory) for memory in MEMORY_KEYS
        )
        if THROUGHPUT_FIELD in self.contract.log_step:
            self._find_throughput(keys, logging, anchors)
        if logging.inline_metrics is not None:
            if NAMED_METRICS in shape.names_in(logging.method):
                raise PortError(
                    self.RULE_ID, f"`{logging.method.name.value}` already has a `{NAMED_METRICS}`", logging.log_call
                )
        else:
            anchors.metrics = logging.metric_dict

    def _find_throughput(self, keys: Tuple[str, ...], logging: StepLogging, anchors: Anchors) -> None:
        """The key the fork logs its throughput under: upstream's, or one of its usual
        other spellings (read from there, noted); none (null, noted)."""
        upstream = [key for key in keys if _last_part(key) == THROUGHPUT_KEY]
        if upstream:
            anchors.throughput_key = upstream[0]
            return
        renamed = [key for key in keys if _last_part(key) in THROUGHPUT_SPELLINGS]
        if len(renamed) == 1:
            anchors.throughput_key, anchors.throughput = renamed[0], "renamed"
        elif len(renamed) > 1:
            raise PortError(
                self.RULE_ID,
                f"the dict it logs has several throughput keys ({', '.join(renamed)}); the step event needs one",
                logging.log_call,
            )
        elif not logging.merged_metrics:  # a merge may hold upstream's key: read it with .get, as always
            anchors.throughput = "absent"

    def edit(self, shape: RecipeShape, anchors: Anchors, edits: Edits) -> None:
        logging = anchors.logging
        where = dict(step=logging.step_counter, epoch=logging.epoch_variable, epoch_len=shape.epoch.total_epochs)
        if logging.kind == "rl":
            # Recipes that can step the optimizer in the backward pass keep it in a wrapper.
            optimizer = "self._optimizer" + (
                " or self._optim_ckpt_wrapper" if "_optim_ckpt_wrapper" in (shape.attributes or ()) else ""
            )
            event = self.snippet(
                "rl_event",
                depth=anchors.depth,
                fields=self.contract.log_step,
                stats=logging.stats,
                optimizer=optimizer,
                **where,
            )
        else:
            event = self.snippet(
                "sft_event",
                depth=anchors.depth,
                fields=self.contract.log_step,
                metrics=anchors.metrics,
                loss_key=anchors.loss_key,
                lr_key=anchors.lr_key,
                lr_optional=anchors.lr_optional,
                memory_keys=anchors.memory_keys,
                throughput_key=anchors.throughput_key,
                step_time=anchors.step_time or f"time.perf_counter() - {STEP_CLOCK}",
                **where,
            )
        if logging.inline_metrics is not None:
            (named,) = self.snippet(
                "named_metrics", depth=anchors.depth, variable=NAMED_METRICS, literal=node_code(logging.inline_metrics)
            )
            call = expression_of(logging.log_call)
            logged = call.with_changes(args=[call.args[0].with_changes(value=cst.Name(NAMED_METRICS)), *call.args[1:]])
            edits.replace(
                logging.log_call,
                [named, logging.log_call.with_changes(body=[cst.Expr(logged)], leading_lines=())],
                made=False,
            )
        edits.insert_after(logging.log_call, event)
        if anchors.clock_before is not None:
            edits.insert_before(anchors.clock_before, self.snippet("step_clock", depth=anchors.clock_depth))

    def imports(self, anchors: Anchors) -> List[Needed]:
        needed = [Needed("time")] if anchors.step_time is None else []
        if anchors.logging.kind == "rl":
            needed.append(Needed("torchtune", "training"))
        return needed

    def notes(self, shape: RecipeShape, anchors: Anchors) -> List[Note]:
        line = shape.index.line
        logged = line(anchors.logging.log_call)
        if anchors.logging.kind == "rl":
            return [
                self.note(
                    logged,
                    CHANGED,
                    "RL loop: the step event reports the mean loss of the stats it logs, the optimizer's learning "
                    f"rate, and a step clock started at the top of the loop at line {line(anchors.logging.step_loop)}; "
                    "no peak memory",
                )
            ]
        notes = []
        if anchors.lr_optional:
            notes.append(
                self.note(
                    logged,
                    CHANGED,
                    f"`{anchors.metrics}` merges another dict (`**...`) porter cannot read: the step event reads the "
                    f'learning rate as `{anchors.metrics}.get("lr")`, null where the merge has no `lr`',
                )
            )
        if anchors.throughput == "renamed":
            notes.append(
                self.note(
                    logged,
                    CHANGED,
                    f"the recipe logs its throughput as `{anchors.throughput_key}`: the step event's "
                    f"`{THROUGHPUT_FIELD}` reads it from there (upstream's key is `{THROUGHPUT_KEY}`; check it is per "
                    "process, as upstream's is)",
                )
            )
        elif anchors.throughput == "absent":
            notes.append(
                self.note(
                    logged,
                    CHANGED,
                    f"`{anchors.metrics}` has no throughput key (`{THROUGHPUT_KEY}` or "
                    f"{', '.join(f'`{k}`' for k in THROUGHPUT_SPELLINGS)}): the step event's `{THROUGHPUT_FIELD}` is null",
                )
            )
        if anchors.step_time is None:
            notes.append(
                self.note(
                    line(anchors.logging.block),
                    CHANGED,
                    "the recipe has no step clock: the step event times the iteration of the loop at line "
                    f"{line(anchors.logging.step_loop)} that logs",
                )
            )
        return notes

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Anchors) -> List[str]:
        return called_once(ported, shape, anchors.logging.method, "self.job_logger.log_step")


def _last_part(key: str) -> str:
    return re.split(r"[/.]", key)[-1]


def _key(keys, names, where: str, rule_id: str, node) -> str:
    """The key of `keys` that is one of `names`, or ends in one (`train/loss`)."""
    exact = [key for key in keys if key in names]
    if exact:
        return exact[0]
    found = [key for key in keys if _last_part(key) in names]
    if len(found) != 1:
        raise PortError(
            rule_id,
            f"{where} has {'no' if not found else 'more than one'} `{names[0]}` key ({', '.join(keys) or 'no keys'}); "
            "the step event needs one",
            node,
        )
    return found[0]


def _depth(logging: StepLogging) -> int:
    for stmt, ancestors in iter_statements(logging.method):
        if stmt is logging.log_call:
            return METHOD_BODY_DEPTH + len(ancestors)
    raise LookupError("the log call is not in its method")


def _levels_between(logging: StepLogging) -> int:
    """How many compound statements sit between the step loop's body and the log call."""
    for stmt, ancestors in iter_statements(logging.step_loop):
        if stmt is logging.log_call:
            return len(ancestors)
    raise LookupError("the log call is not in the step loop")
