"""P007 epoch-end: at the end of each epoch the runtime saves and logs it.

Right after `self.epochs_run += 1` in the epoch loop go the runtime's checkpoint hook
(the runtime's policy decides whether this epoch saves, and always saves the last), the
`epoch` job event, and the reset of the epoch clock: templates/epoch_end.py.j2. Every
rank runs it, so each rank logs its epoch once and joins the save's collectives.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import epoch_attribute, epoch_loop, recipe_class, required_method
from porter.rules.base import PortingRule
from porter.syntax import (
    block_statements,
    METHOD_BODY_DEPTH,
    nesting,
    replace_statement,
)

EPOCH_COUNT = m.SimpleStatementLine(
    body=[
        m.AugAssign(
            target=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?epochs_run"))),
            operator=m.AddAssign(),
            value=m.Integer("1"),
        )
    ]
)


@dataclass
class Anchors:
    epoch_count: cst.BaseStatement
    depth: int
    epoch_variable: str
    total_epochs: str


class EpochEnd(PortingRule):
    RULE_ID = "P007"
    NAME = "epoch-end"
    DESCRIPTION = (
        "After `self.epochs_run += 1`: the runtime's checkpoint hook, an `epoch` job "
        "event and the reset of the epoch clock."
    )

    def find(self, tree: cst.Module) -> Anchors:
        train = required_method(recipe_class(tree, self.RULE_ID), "train", self.RULE_ID)
        loop = epoch_loop(train, self.RULE_ID)
        counts = [stmt for stmt in block_statements(loop) if m.matches(stmt, EPOCH_COUNT)]
        if len(counts) != 1:
            raise PortError(
                self.RULE_ID,
                "expected one `self.epochs_run += 1` directly in the epoch loop, "
                f"found {len(counts)}",
                counts[1] if counts else loop,
            )
        return Anchors(
            epoch_count=counts[0],
            depth=METHOD_BODY_DEPTH + nesting(train, counts[0]),
            epoch_variable=loop.target.value,
            total_epochs=epoch_attribute(loop, 1),
        )

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        epoch_end = snippets.statements(
            "epoch_end.py.j2",
            depth=anchors.depth,
            epoch=anchors.epoch_variable,
            epoch_len=anchors.total_epochs,
        )
        return replace_statement(
            tree, anchors.epoch_count, [anchors.epoch_count, *epoch_end]
        )
