"""The parts of a recipe's shape, in reading order, and how a reader says a part is missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import libcst as cst

# A rule's NEEDS names some of them.
RECIPE, TRAIN, EPOCH_LOOP, EPOCH_COUNT, STEP_LOGGING, SAVES, SETUP_DATA = (
    "recipe class",
    "train method",
    "epoch loop",
    "epoch count",
    "step logging",
    "save sites",
    "dataset setup",
)


@dataclass(frozen=True)
class Problem:
    message: str
    node: Optional[cst.CSTNode]


class Missing(Exception):
    """A reader cannot read its part: `problem` says why, on the node it is about."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem
