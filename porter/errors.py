"""Errors the converter reports instead of guessing."""

from __future__ import annotations

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
