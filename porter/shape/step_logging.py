"""The step-logging block: `if self.global_step % self._log_every_n_steps == 0:` (or a
metric-logger call that logs every step) in the epoch loop or a method it calls, with its
metric dict and its keys, or the RL stats it logs, and the step clock."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterator, List, Optional, Tuple

import libcst as cst
import libcst.matchers as m

from porter.index import SourceIndex
from porter.shape.loops import EpochLoop, parameter_receiving
from porter.shape.parts import Missing, Problem
from porter.shape.recipe import MethodCalls, SAVE_METHODS
from porter.syntax import (
    Ancestors,
    called_name,
    expression_of,
    iter_statements,
    node_code,
    single_small_statement,
)

METRIC_LOGGER_CALL = "self._metric_logger.log_dict"
RL_LOG_CALL = "self.log_metrics"

_LOGGING_TEST = m.Comparison(
    left=m.BinaryOperation(
        left=m.Attribute(value=m.Name("self"), attr=m.Name()),
        operator=m.Modulo(),
        right=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?log_every_n_steps"))),
    ),
    comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Integer("0"))],
)
_STEP_TIME = m.BinaryOperation(
    left=m.Call(func=m.Attribute(value=m.Name("time"), attr=m.Name("perf_counter"))),
    operator=m.Subtract(),
    right=m.Name(),
)
_MEMORY_STATS = m.Call(func=m.Attribute(attr=m.Name("get_memory_stats")))


@dataclass(frozen=True)
class StepLogging:
    """The `if <step counter> % self._log_every_n_steps == 0:` block and what it logs."""

    block: cst.CSTNode  # the `if`; the step loop, where every step logs
    method: cst.FunctionDef  # where the block is
    epoch_variable: Optional[str]  # the epoch's name in that method, if it has it
    kind: str  # "sft" (logs a metric dict) or "rl" (logs ...Stats through log_metrics)
    log_call: cst.BaseStatement  # the statement that logs
    step_counter: str  # `self.global_step`
    step_loop: Optional[cst.BaseStatement]  # the innermost loop holding the block
    metric_dict: Optional[str] = None  # sft: the dict logged, by name
    inline_metrics: Optional[cst.Dict] = None  # sft: the dict logged, as a literal in the call
    metric_keys: Optional[Tuple[str, ...]] = None  # sft: its keys; None when porter cannot tell
    step_time: Optional[str] = None  # sft: `time_per_step`, computed from the step clock
    step_clock: Optional[str] = None  # sft: the step clock it is computed from, `t0`
    stats: Optional[str] = None  # rl: the `...Stats(...)` expression logged
    every_step: bool = False  # the call is right in the step loop, with no block around it
    merged_metrics: bool = False  # sft: the dict merges others (`**lr_log`) whose keys porter cannot read


def read_step_logging(epoch: EpochLoop, calls: MethodCalls, index: SourceIndex) -> StepLogging:
    found = []
    unguarded = []  # early-2024 loops log every step, with no block around the call
    for method, root, epoch_variable, ancestors in _loop_scopes(epoch, calls, index):
        for stmt, inner in iter_statements(root, ancestors):
            if isinstance(stmt, cst.If) and _logging_counter(stmt.test) is not None:
                found.append((stmt, method, epoch_variable, inner))
            elif called_name(stmt) == METRIC_LOGGER_CALL and not any(
                _logging_counter(a.test) for a in inner if isinstance(a, cst.If)
            ):
                unguarded.append((stmt, method, epoch_variable, inner))
    if not found and len(unguarded) == 1:
        return _unguarded_logging(epoch, *unguarded[0])
    if len(found) != 1:
        raise Missing(
            Problem(
                "expected one step-logging block `if self.global_step % self._log_every_n_steps == 0:` (or one "
                f"`{METRIC_LOGGER_CALL}(..., step=self.<counter>)` in the step loop, logging every step) in the epoch "
                f"loop or the methods it calls, found {len(found)} blocks and {len(unguarded)} calls outside one",
                found[1][0] if len(found) > 1 else epoch.loop,
            )
        )
    ((block, method, epoch_variable, ancestors),) = found
    logged = [
        (stmt, name)
        for stmt, _ in iter_statements(block)
        for name in (called_name(stmt),)
        if name in (METRIC_LOGGER_CALL, RL_LOG_CALL)
    ]
    if len(logged) != 1:
        raise Missing(
            Problem(
                f"expected one `{METRIC_LOGGER_CALL}(...)` or `{RL_LOG_CALL}(...)` call in the step-logging block, "
                f"found {len(logged)}",
                logged[1][0] if len(logged) > 1 else block,
            )
        )
    ((log_call, name),) = logged
    loops = [a for a in ancestors if isinstance(a, (cst.For, cst.While)) and a is not epoch.loop]
    logging = StepLogging(
        block=block,
        method=method,
        epoch_variable=epoch_variable,
        kind="rl" if name == RL_LOG_CALL else "sft",
        log_call=log_call,
        step_counter=node_code(_logging_counter(block.test)),
        step_loop=loops[-1] if loops else None,
    )
    if logging.kind == "rl":
        return replace(logging, stats=_logged_stats(expression_of(log_call)))
    return replace(logging, **_metrics(log_call, block))


def _unguarded_logging(epoch: EpochLoop, log_call, method, epoch_variable, ancestors) -> StepLogging:
    """A metric-logger call right in the step loop: every step logs, the loop is its block."""
    loops = [a for a in ancestors if isinstance(a, (cst.For, cst.While)) and a is not epoch.loop]
    step = next(
        (arg.value for arg in expression_of(log_call).args if arg.keyword is not None and arg.keyword.value == "step"),
        None,
    )
    if not loops or not m.matches(step, m.Attribute(value=m.Name("self"), attr=m.Name())):
        raise Missing(
            Problem(
                f"`{METRIC_LOGGER_CALL}(...)` logs outside a step-logging block: porter reads such a call only in a "
                "step loop, with `step=self.<counter>`",
                log_call,
            )
        )
    return StepLogging(
        block=loops[-1],
        method=method,
        epoch_variable=epoch_variable,
        kind="sft",
        log_call=log_call,
        step_counter=node_code(step),
        step_loop=loops[-1],
        every_step=True,
        **_metrics(log_call, loops[-1]),
    )


def _loop_scopes(
    epoch: EpochLoop, calls: MethodCalls, index: SourceIndex
) -> Iterator[Tuple[cst.FunctionDef, cst.CSTNode, Optional[str], Ancestors]]:
    """(method, root, the epoch's name there, ancestors) for the epoch loop and for
    each method called from inside it, transitively, with how the epoch reaches it."""
    yield epoch.method, epoch.loop, epoch.variable, (epoch.loop,)
    seen = {epoch.method.name.value}
    queue = deque([(epoch.loop, epoch.variable)])
    while queue:
        root, epoch_variable = queue.popleft()
        for stmt, name in calls.self_calls(root):
            if name in seen or name in SAVE_METHODS:
                continue
            seen.add(name)
            method = calls.methods[name]
            inner = parameter_receiving(index, method, stmt, epoch_variable)
            yield method, method, inner, ()
            queue.append((method, inner))


def conjuncts(test: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    """`a`, `b` and `c` of a test `a and (b and c)`; the test itself otherwise."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        yield from conjuncts(test.left)
        yield from conjuncts(test.right)
    else:
        yield test


def _logging_counter(test: cst.BaseExpression) -> Optional[cst.Attribute]:
    """`self.<counter>` of a test with a `self.<counter> % self._log_every_n_steps == 0` conjunct."""
    for part in conjuncts(test):
        if m.matches(part, _LOGGING_TEST):
            return part.left.left
    return None


def _logged_stats(call: cst.Call) -> Optional[str]:
    stats = [
        arg.value
        for arg in call.args
        if isinstance(arg.value, cst.Call)
        and isinstance(arg.value.func, cst.Name)
        and arg.value.func.value.endswith("Stats")
    ]
    return node_code(stats[0]) if len(stats) == 1 else None


def _metrics(log_call: cst.BaseStatement, block: cst.CSTNode) -> Dict[str, Any]:
    """The SFT block's metric dict: its name or literal, its keys, the step time."""
    call = expression_of(log_call)
    logged = call.args[0].value if call.args else None
    fields: Dict[str, Any] = {}
    merged: List[bool] = []  # a `**` merge seen in a literal
    keys: Optional[List[str]] = []
    if isinstance(logged, cst.Dict):
        fields["inline_metrics"] = logged
        keys = _literal_keys(logged, merged)
    elif isinstance(logged, cst.Name):
        fields["metric_dict"] = name = logged.value
        assigned = False
        for stmt, _ in iter_statements(block):
            small = single_small_statement(stmt)
            if isinstance(small, cst.Assign) and any(m.matches(t.target, m.Name(name)) for t in small.targets):
                assigned = True
                found = _literal_keys(small.value, merged) if isinstance(small.value, cst.Dict) else None
                keys = None if found is None or keys is None else keys + found
            elif isinstance(small, cst.Assign) and any(
                m.matches(t.target, m.Subscript(value=m.Name(name))) for t in small.targets
            ):
                index = small.targets[0].target.slice[0].slice
                key = index.value if isinstance(index, cst.Index) else None
                if keys is not None:
                    keys = keys + [key.evaluated_value] if isinstance(key, cst.SimpleString) else None
            expr = expression_of(stmt)
            if isinstance(expr, cst.Call) and m.matches(
                expr.func, m.Attribute(value=m.Name(name), attr=m.Name("update"))
            ):
                argument = expr.args[0].value if expr.args else None
                if isinstance(argument, cst.Dict):
                    found = _literal_keys(argument, merged)
                    keys = keys + found if found is not None and keys is not None else None
                elif not (argument is not None and m.matches(argument, _MEMORY_STATS)):
                    keys = None  # updated from something porter cannot read
                # torchtune's memory stats add keys the step event reads with .get()
        if not assigned:
            keys = None
    else:
        keys = None
    fields["metric_keys"] = tuple(keys) if keys is not None else None
    fields["merged_metrics"] = bool(merged)
    for stmt, _ in iter_statements(block):
        small = single_small_statement(stmt)
        if (
            isinstance(small, cst.Assign)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
            and m.matches(small.value, _STEP_TIME)
        ):
            fields["step_time"] = small.targets[0].target.value
            fields["step_clock"] = small.value.right.value
            break
    return fields


def _literal_keys(value: cst.Dict, merged: List[bool]) -> Optional[List[str]]:
    """The string keys of a dict literal; None if it has another kind of key. A `**`
    merge adds keys porter cannot read: it is put in `merged`."""
    keys = []
    for element in value.elements:
        if isinstance(element, cst.StarredDictElement):
            merged.append(True)
            continue
        if not isinstance(element, cst.DictElement) or not isinstance(element.key, cst.SimpleString):
            return None
        keys.append(element.key.evaluated_value)
    return keys
