"""Errors the converter reports instead of guessing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import libcst as cst


class PortError(Exception):
    """A porting rule could not apply: an anchor is missing, repeated or misplaced.

    `node` locates the problem in the tree the rule analysed; the line is computed only
    when the error is reported, since positions cost a full pass over the module.
    """

    def __init__(self, rule_id: str, message: str, node: Optional[cst.CSTNode] = None) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.node = node


@dataclass(frozen=True)
class HoleSite:
    """Where an assisted port leaves a hole, and the path it affects: porter inserts a
    `# TODO(porter <rule>)` and a guard raising on that path (`condition`) before `before`."""

    before: cst.BaseStatement  # the statement the guard goes above
    depth: int  # its block depth
    condition: str  # the path the hole affects: `self.dataset` (only jobs that inject one)
    todo: str  # what to do by hand


@dataclass(frozen=True)
class Hole:
    """A step porter could not port safely, left for a person: the rule, the source line,
    why, and what to do."""

    rule: str  # its id: P008
    line: Optional[int]
    message: str
    todo: str
