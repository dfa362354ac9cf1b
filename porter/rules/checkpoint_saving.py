"""P004 checkpoint-saving: checkpoint saving leaves the training loop; the runtime owns it.

Every save in `train` goes as a unit with the timing and log lines that wrap it
(`start = time.perf_counter()`, `log.info(...)`, save, `log.info(... start ...)`), and
with an `if` that only guards it. A save inside the step loop (torchtune main saves
every N steps) becomes a call to the runtime's step hook, so step-based saving is a
runtime setting; the epoch-end hook itself is P007's. A recipe that saves inline
through a checkpoint client and has no save method gets one, holding the moved call,
so the runtime can still save: a port never leaves the weights unsaved.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Set, Tuple

import libcst as cst

from porter import snippets
from porter.errors import PortError
from porter.recipe import epoch_loop, interface_method, recipe_class, required_method
from porter.rules.base import PortingRule
from porter.syntax import (
    Ancestors,
    block_statements,
    called_name,
    dotted_name,
    expression_of,
    iter_statements,
    METHOD_BODY_DEPTH,
    nesting,
    replace_statement,
    single_small_statement,
)

_SAVE_METHODS = ("save_checkpoint", "_save_checkpoint")
_LOG_METHODS = ("debug", "info", "warning", "error", "log_rank_zero")


@dataclass
class SaveUnit:
    statements: List[cst.BaseStatement]
    in_step_loop: bool
    inline: bool  # saves through a checkpointer attribute, not the recipe's method
    after_loop: bool = False  # after (or before) the epoch loop, not in it


@dataclass
class Anchors:
    cls: cst.ClassDef
    train: cst.FunctionDef
    epoch_variable: str
    units: List[SaveUnit] = field(default_factory=list)
    move_into_method: Optional[cst.BaseStatement] = None


class CheckpointSaving(PortingRule):
    RULE_ID = "P004"
    NAME = "checkpoint-saving"
    DESCRIPTION = (
        "Remove checkpoint saving (with its timing and log lines) from the training "
        "loop; step-based saves become the runtime's step hook."
    )

    def find(self, tree: cst.Module) -> Optional[Anchors]:
        cls = recipe_class(tree, self.RULE_ID)
        train = required_method(cls, "train", self.RULE_ID)
        loop = epoch_loop(train, self.RULE_ID)
        anchors = Anchors(cls, train, loop.target.value)
        for stmt, ancestors in iter_statements(train):
            kind = _save_kind(stmt)
            if kind is None:
                continue
            statements, owner = _unit(stmt, ancestors, train)
            anchors.units.append(
                SaveUnit(
                    statements,
                    in_step_loop=any(a is loop for a in ancestors) and owner is not loop,
                    inline=kind == "inline",
                    after_loop=not any(a is loop for a in ancestors),
                )
            )
        other_uses = [
            stmt
            for stmt in self.index(tree).statements_using_self(train, _SAVE_METHODS)
            if _save_kind(stmt) is None
        ]
        if other_uses:
            raise PortError(
                self.RULE_ID,
                "`train` uses the save method other than as a plain call statement",
                other_uses[0],
            )
        has_method = interface_method(cls, "save_checkpoint") is not None
        inline = [unit for unit in anchors.units if unit.inline]
        if not has_method:
            if len(inline) != 1:
                raise PortError(
                    self.RULE_ID,
                    f"class {cls.name.value} has no `save_checkpoint` method and "
                    f"{len(inline)} inline checkpoint saves in `train`; porter needs "
                    "exactly one to move into `_save_checkpoint`",
                    inline[1].statements[0] if inline else train,
                )
            (anchors.move_into_method,) = [
                stmt for stmt in inline[0].statements if _save_kind(stmt) == "inline"
            ]
        return anchors if anchors.units else None

    def notes(self, anchors: Anchors, index) -> List[str]:
        notes = []
        for unit in anchors.units:
            line = index.line(unit.statements[0])
            if unit.in_step_loop:
                notes.append(
                    f"line {line}: the save every N steps is now the runtime's "
                    "(`porter.save_every_n_steps`); the config's own setting no longer applies"
                )
            elif not any(s is anchors.move_into_method for s in unit.statements) and unit.after_loop:
                notes.append(f"line {line}: the final save after the loop is the runtime's, at the last epoch's end")
        if anchors.move_into_method is not None:
            notes.append(
                f"line {index.line(anchors.move_into_method)}: the inline save moved into a new "
                "`_save_checkpoint(epoch)`; check it saves what the loop saved"
            )
        return notes

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        train = anchors.train
        for unit in anchors.units:
            replacement: Sequence[cst.BaseStatement] = ()
            if unit.in_step_loop:
                depth = METHOD_BODY_DEPTH + nesting(train, unit.statements[0])
                replacement = snippets.statements(
                    "step_checkpoint.py.j2",
                    depth=depth,
                    epoch=anchors.epoch_variable,
                    step="self.global_step",
                )
            for position, stmt in enumerate(unit.statements):
                train = replace_statement(train, stmt, replacement if position == 0 else ())
        cls = replace_statement(anchors.cls, anchors.train, [train])
        if anchors.move_into_method is not None:
            cls = _add_save_method(cls, anchors, train)
        return replace_statement(tree, anchors.cls, [cls])


def _save_kind(stmt: cst.BaseStatement) -> Optional[str]:
    """'method' for `self.save_checkpoint(...)`, 'inline' for `self.<x>.save_checkpoint(...)`."""
    name = called_name(stmt)
    if name is None:
        return None
    parts = name.split(".")
    if parts[0] != "self" or parts[-1] not in _SAVE_METHODS:
        return None
    if len(parts) == 2:
        return "method"
    return "inline" if len(parts) == 3 else None


def _unit(
    save: cst.BaseStatement, ancestors: Ancestors, train: cst.FunctionDef
) -> Tuple[List[cst.BaseStatement], cst.CSTNode]:
    """The statements to remove with `save`, and the node whose block holds them."""
    owner = ancestors[-1] if ancestors else train
    block = list(block_statements(owner))
    start = end = block.index(save)
    timers = _names_read_by_log_call(block, end + 1)
    if timers:
        begin = start
        while begin > 0 and _is_log_call(block[begin - 1]):
            begin -= 1
        if begin > 0 and _assigns_timer(block[begin - 1], timers):
            start, end = begin - 1, end + 1
    unit = block[start : end + 1]
    # An `if` that only guards the save goes with it.
    while isinstance(owner, cst.If) and owner.orelse is None and len(block) == len(unit):
        unit, ancestors = [owner], ancestors[:-1]
        owner = ancestors[-1] if ancestors else train
        block = list(block_statements(owner))
    return unit, owner


def _is_log_call(stmt: cst.BaseStatement) -> bool:
    name = called_name(stmt)
    return name is not None and name.rsplit(".", 1)[-1] in _LOG_METHODS


def _names_read_by_log_call(block: List[cst.BaseStatement], index: int) -> Set[str]:
    """The plain names a log call at `block[index]` reads; empty if it is no log call."""
    if index >= len(block) or not _is_log_call(block[index]):
        return set()
    collector = _NameCollector()
    expression_of(block[index]).visit(collector)
    return collector.names


def _assigns_timer(stmt: cst.BaseStatement, names: Set[str]) -> bool:
    """`<one of names> = time.perf_counter()`."""
    small = single_small_statement(stmt)
    return (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and dotted_name(small.targets[0].target) in names
        and isinstance(small.value, cst.Call)
        and dotted_name(small.value.func) == "time.perf_counter"
    )


class _NameCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.names: Set[str] = set()

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)  # `a.b` reads `a`, never `b`
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


class _RenameName(cst.CSTTransformer):
    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old, self.new = old, new

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        return updated_node.with_changes(value=self.new) if updated_node.value == self.old else updated_node


def _add_save_method(
    cls: cst.ClassDef, anchors: Anchors, train: cst.FunctionDef
) -> cst.ClassDef:
    moved = anchors.move_into_method.visit(_RenameName(anchors.epoch_variable, "epoch"))
    (method,) = snippets.statements(
        "save_checkpoint_method.py.j2",
        depth=1,
        body=cst.Module(body=[moved.with_changes(leading_lines=())]).code,
    )
    return replace_statement(
        cls, train, [method.with_changes(leading_lines=train.leading_lines), train]
    )
