"""Every checkpoint save of the training loop's methods: a save method called on `self`, a
save through a checkpointer attribute, or a helper that saves (with what else it does),
and where each sits relative to the epoch loop."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Set, Tuple

import libcst as cst
import libcst.matchers as m

from porter.index import SourceIndex
from porter.shape.loops import EpochLoop, parameter_receiving
from porter.shape.recipe import MethodCalls, SAVE_METHODS
from porter.shape.step_logging import StepLogging
from porter.syntax import (
    Ancestors,
    block_statements,
    called_name,
    dotted_name,
    is_docstring,
    iter_statements,
    single_small_statement,
)

LOG_METHODS = ("debug", "info", "warning", "error", "log_rank_zero")
_DELETES = ("rmtree", "remove", "unlink", "rm")


@dataclass(frozen=True)
class SaveSite:
    """A statement that saves a checkpoint from the training loop's methods."""

    statement: cst.BaseStatement
    method: cst.FunctionDef
    ancestors: Ancestors  # its compound statements within `method`
    call: cst.Call
    callee: str  # `self.save_checkpoint`, `self._checkpointer.save_checkpoint`, `self.save_best`
    kind: str  # "method", "inline" (through a checkpointer attribute) or "helper"
    place: str  # "step" (in a loop inside the epoch loop), "epoch", "after" or "before" the epoch loop
    epoch_variable: Optional[str]  # the epoch's name where the statement is
    helper: Optional[cst.FunctionDef] = None  # kind "helper": the method called
    helper_saves: List[cst.BaseStatement] = field(default_factory=list)  # its own save statements
    helper_other: Optional[cst.BaseStatement] = None  # a statement of it that is not about saving
    helper_rotation: Optional[cst.BaseStatement] = None  # its loop that deletes old checkpoints


def read_saves(
    train: cst.FunctionDef,
    epoch: EpochLoop,
    logging: Optional[StepLogging],
    calls: MethodCalls,
    index: SourceIndex,
) -> Tuple[SaveSite, ...]:
    return tuple(_TrainingLoop(train, epoch, logging, calls, index).saves())


@dataclass(frozen=True, eq=False)
class _TrainingLoop:
    """The methods `train` runs, read for the saves they make."""

    train: cst.FunctionDef
    epoch: EpochLoop
    logging: Optional[StepLogging]
    calls: MethodCalls
    index: SourceIndex

    def saves(self) -> Iterator[SaveSite]:
        loop_methods = {id(method) for method in self.epoch.path}
        if self.logging is not None:
            loop_methods |= {
                id(method) for method in self.calls.reachable(self.train).get(self.logging.method.name.value, [])
            }
        for method, in_epoch, in_step, epoch_variable in self._loop_methods(loop_methods):
            for stmt, ancestors in iter_statements(method):
                site = self._save_site(stmt, ancestors, method, loop_methods, (in_epoch, in_step, epoch_variable))
                if site is not None:
                    yield site

    def _loop_methods(self, loop_methods: Set[int]) -> Iterator[Tuple[cst.FunctionDef, bool, bool, Optional[str]]]:
        """Each method of the training loop, whether its calls come from inside the epoch
        loop and a step loop, and the epoch's name there."""
        visited: Set[int] = set()

        def visit(method, in_epoch, in_step, epoch_variable):
            if id(method) in visited:
                return
            visited.add(id(method))
            yield method, in_epoch, in_step, epoch_variable
            for stmt, name in self.calls.self_calls(method):
                callee = self.calls.methods[name]
                if id(callee) not in loop_methods:
                    continue
                ancestors = _ancestors_in(method, stmt)
                inside, step, variable = self._context(stmt, ancestors, method, in_epoch, in_step, epoch_variable)
                yield from visit(callee, inside, step, parameter_receiving(self.index, callee, stmt, variable))

        yield from visit(self.train, False, False, None)

    def _context(self, stmt, ancestors, method, in_epoch, in_step, epoch_variable):
        loop = self.epoch.loop
        if method is self.epoch.method and any(a is loop for a in ancestors):
            below = ancestors[ancestors.index(loop) + 1 :]
            return True, any(isinstance(a, (cst.For, cst.While)) for a in below), loop.target.value
        if in_epoch:
            return True, in_step or any(isinstance(a, (cst.For, cst.While)) for a in ancestors), epoch_variable
        return False, False, epoch_variable

    def _place(self, stmt, ancestors, method, in_epoch, in_step, epoch_variable) -> Tuple[str, Optional[str]]:
        inside, step, variable = self._context(stmt, ancestors, method, in_epoch, in_step, epoch_variable)
        if inside:
            return ("step" if step else "epoch"), variable
        runner = self._runner(method)
        if runner is None:
            return "after", variable
        order = {id(s): position for position, (s, _) in enumerate(iter_statements(method))}
        return ("after" if order[id(stmt)] > order[id(runner)] else "before"), variable

    def _runner(self, method: cst.FunctionDef) -> Optional[cst.BaseStatement]:
        """The statement of `method` that runs the epoch loop: the loop itself, or the
        call towards the method that holds it."""
        if method is self.epoch.method:
            return self.epoch.loop
        if method not in self.epoch.path:
            return None
        name = self.epoch.path[self.epoch.path.index(method) + 1].name.value
        return next((s for s, called in self.calls.self_calls(method) if called == name), None)

    def _save_site(self, stmt, ancestors, method, loop_methods, context) -> Optional[SaveSite]:
        expr = _statement_call(stmt)
        if expr is None:
            return None
        callee = dotted_name(expr.func)
        if callee is None or not callee.startswith("self."):
            return None
        parts = callee.split(".")
        if parts[-1] in SAVE_METHODS:
            kind, helper = ("method" if len(parts) == 2 else "inline"), None
        elif len(parts) != 2 or parts[1] not in self.calls.methods:
            return None
        else:
            kind, helper = "helper", self.calls.methods[parts[1]]
            if id(helper) in loop_methods:
                return None
        place, epoch_variable = self._place(stmt, ancestors, method, *context)
        site = SaveSite(stmt, method, ancestors, expr, callee, kind=kind, place=place, epoch_variable=epoch_variable)
        if helper is None:
            return site
        saves = self._saves_inside(helper, set())
        if not saves:
            return None
        rotation = next((stmt for stmt in block_statements(helper) if _deletes_checkpoints(stmt)), None)
        return SaveSite(
            stmt,
            method,
            ancestors,
            expr,
            callee,
            kind=kind,
            place=place,
            epoch_variable=epoch_variable,
            helper=helper,
            helper_saves=saves,
            helper_rotation=rotation,
            helper_other=_other_work(helper, saves, rotation),
        )

    def _saves_inside(self, method: cst.FunctionDef, seen: Set[int]) -> List[cst.BaseStatement]:
        """The save statements `method` runs, itself or through the methods it calls."""
        if id(method) in seen:
            return []
        seen.add(id(method))
        found = []
        for stmt, _ in iter_statements(method):
            expr = _statement_call(stmt)
            callee = dotted_name(expr.func) if expr is not None else None
            if callee and callee.startswith("self.") and callee.rsplit(".", 1)[-1] in SAVE_METHODS:
                found.append(stmt)
        for stmt, name in self.calls.self_calls(method):
            if name not in SAVE_METHODS and self._saves_inside(self.calls.methods[name], seen):
                found.append(stmt)
        return found


def _statement_call(stmt: cst.CSTNode) -> Optional[cst.Call]:
    """The call of an expression statement `f(...)`, or of `x = f(...)`."""
    small = single_small_statement(stmt)
    value = small.value if isinstance(small, (cst.Expr, cst.Assign, cst.AnnAssign)) else None
    return value if isinstance(value, cst.Call) else None


def _ancestors_in(method: cst.FunctionDef, target: cst.BaseStatement) -> Ancestors:
    for stmt, ancestors in iter_statements(method):
        if stmt is target:
            return ancestors
    return ()


def _other_work(
    helper: cst.FunctionDef, saves: List[cst.BaseStatement], rotation: Optional[cst.BaseStatement]
) -> Optional[cst.BaseStatement]:
    """A statement of `helper` that is neither a save, nor its timing and log lines, nor
    an `if` around them, nor its rotation of old checkpoints (which the runtime does with
    `porter.keep_last_n_checkpoints`): the work that makes it more than a save."""
    saving = {id(stmt) for stmt in saves} | ({id(rotation)} if rotation is not None else set())
    for stmt in block_statements(helper):
        if not _only_saving(stmt, saving):
            return stmt
    return None


def _only_saving(stmt: cst.BaseStatement, saving: Set[int]) -> bool:
    if id(stmt) in saving or is_log_call(stmt) or is_docstring(stmt) or _is_timer(stmt):
        return True
    if m.matches(stmt, m.SimpleStatementLine(body=[m.Pass() | m.Return(value=None)])):
        return True
    if isinstance(stmt, cst.If):
        blocks = [stmt.body] + ([stmt.orelse] if stmt.orelse is not None else [])
        return all(_only_saving(inner, saving) for block in blocks for inner in block_statements(block))
    return False


def _deletes_checkpoints(stmt: cst.BaseStatement) -> bool:
    """A `for` loop over old checkpoints whose body only deletes (and logs): a rotation."""
    if not isinstance(stmt, cst.For) or stmt.orelse is not None:
        return False
    body = list(block_statements(stmt))
    deletes = [inner for inner in body if (called_name(inner) or "").rsplit(".", 1)[-1] in _DELETES]
    return bool(deletes) and all(inner in deletes or is_log_call(inner) for inner in body)


def kept_by_rotation(stmt: cst.For) -> Optional[int]:
    """K of a rotation over `...[:-K]`: how many checkpoints it kept, when it says."""
    for part in m.findall(
        stmt.iter, m.Slice(lower=None, upper=m.UnaryOperation(operator=m.Minus(), expression=m.Integer()))
    ):
        return int(part.upper.expression.value)
    return None


def is_log_call(stmt: cst.BaseStatement) -> bool:
    name = called_name(stmt)
    return name is not None and name.rsplit(".", 1)[-1] in LOG_METHODS


def _is_timer(stmt: cst.BaseStatement) -> bool:
    small = single_small_statement(stmt)
    return isinstance(small, cst.Assign) and m.matches(
        small.value, m.Call(func=m.Attribute(value=m.Name("time"), attr=m.Name("perf_counter")))
    )
