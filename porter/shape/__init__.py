"""RecipeShape: what porter recognised in one recipe, read once; every rule reads it.

A recipe is read part by part, each part by one reader, a function from the parsed
source (and the parts it builds on) to an immutable part:

  recipe.py        the recipe class, its methods and attributes, `train`, and how the
                   methods call one another on `self`
  loops.py         the epoch loop (in `train` or a method it calls) and the epoch count
  step_logging.py  the step-logging block, its metric dict and keys, the step clock
  saves.py         every checkpoint save of the training loop's methods, and where it is
  dataset.py       the set `_setup_data` builds (porter/dataset_flow.py follows any shape)

Each part is either found or has exactly one problem with its node; a part that cannot be
read because another part is missing names that part instead. Rules declare the parts
they need, so a missing anchor is reported once, naming every rule that needed it.
"""

from __future__ import annotations

import ast
from typing import Callable, Dict, Iterator, Optional, Set, Tuple, TypeVar

import libcst as cst

from porter.index import SourceIndex
from porter.shape.dataset import DatasetSetup, read_dataset_setup
from porter.shape.loops import EpochLoop, read_epoch_count, read_epoch_loop
from porter.shape.parts import (
    EPOCH_COUNT,
    EPOCH_LOOP,
    Missing,
    Problem,
    RECIPE,
    SAVES,
    SETUP_DATA,
    STEP_LOGGING,
    TRAIN,
)
from porter.shape.recipe import (
    base_name,
    base_names,
    INTERFACE_METHODS,
    MethodCalls,
    not_a_training_recipe,
    OTHER_INTERFACES,
    PORTED_BASE,
    read_recipe,
    read_train,
    recipe_classes,
    SAVE_METHODS,
    SETUP_DATA_METHODS,
    UPSTREAM_BASE,
)
from porter.shape.saves import is_log_call, kept_by_rotation, LOG_METHODS, read_saves, SaveSite
from porter.shape.step_logging import conjuncts, METRIC_LOGGER_CALL, read_step_logging, RL_LOG_CALL, StepLogging
from porter.syntax import block_statements
from runtime.families import recipe_family

__all__ = [
    "base_name",
    "base_names",
    "conjuncts",
    "DatasetSetup",
    "EPOCH_COUNT",
    "EPOCH_LOOP",
    "EpochLoop",
    "INTERFACE_METHODS",
    "is_log_call",
    "kept_by_rotation",
    "LOG_METHODS",
    "METRIC_LOGGER_CALL",
    "not_a_training_recipe",
    "OTHER_INTERFACES",
    "PORTED_BASE",
    "Problem",
    "RECIPE",
    "recipe_classes",
    "RecipeShape",
    "RL_LOG_CALL",
    "SAVE_METHODS",
    "SAVES",
    "SaveSite",
    "SETUP_DATA",
    "SETUP_DATA_METHODS",
    "STEP_LOGGING",
    "StepLogging",
    "TRAIN",
    "UPSTREAM_BASE",
]

Part = TypeVar("Part")


class RecipeShape:
    """The parts of one recipe, each read by its reader in order; `problems` and `causes`
    say why a part is missing."""

    def __init__(self, module: cst.Module, index: SourceIndex) -> None:
        self.module = module
        self.index = index
        self.problems: Dict[str, Problem] = {}
        self.causes: Dict[str, str] = {}  # part -> the missing part it could not be read without
        self.source_names = index.names  # the variables the source reads or binds
        self.family = recipe_family(index.names | index.attributes)
        self._method_names: Dict[int, Set[str]] = {}

        recipe = self._read(RECIPE, (), lambda: read_recipe(module, index))
        self.cls: Optional[cst.ClassDef] = recipe.cls if recipe else None
        self.methods: Dict[str, cst.FunctionDef] = dict(recipe.methods) if recipe else {}
        # `self.<name>` the class assigns or defines; None: unknown
        self.attributes = recipe.attributes if recipe else frozenset()
        calls = MethodCalls(self.methods, index)
        self.train: Optional[cst.FunctionDef] = self._read(TRAIN, (RECIPE,), lambda: read_train(recipe))
        self.epoch: Optional[EpochLoop] = self._read(EPOCH_LOOP, (TRAIN,), lambda: read_epoch_loop(self.train, calls))
        self.epoch_count: Optional[cst.BaseStatement] = self._read(
            EPOCH_COUNT, (EPOCH_LOOP,), lambda: read_epoch_count(self.epoch)
        )
        self.logging: Optional[StepLogging] = self._read(
            STEP_LOGGING, (EPOCH_LOOP,), lambda: read_step_logging(self.epoch, calls, index)
        )
        self.saves: Tuple[SaveSite, ...] = (
            self._read(SAVES, (EPOCH_LOOP,), lambda: read_saves(self.train, self.epoch, self.logging, calls, index))
            or ()
        )
        self.dataset: Optional[DatasetSetup] = self._read(
            SETUP_DATA, (RECIPE,), lambda: read_dataset_setup(recipe, index)
        )

    def _read(self, part: str, needs: Tuple[str, ...], reader: Callable[[], Part]) -> Optional[Part]:
        """The part its reader reads, or None with its problem (or the missing part it needs) noted."""
        for needed in needs:
            if self.missing(needed):
                self.causes[part] = self.cause(needed)
                return None
        try:
            return reader()
        except Missing as missing:
            self.problems[part] = missing.problem
            return None

    def names_in(self, method: cst.FunctionDef) -> Set[str]:
        """The variable names a method of the source uses."""
        if id(method) not in self._method_names:
            self._method_names[id(method)] = {node.id for node in _walk_names(self.index.ast_node(method))}
        return self._method_names[id(method)]

    def cause(self, part: str) -> str:
        """The part whose own problem explains why `part` is missing."""
        return self.causes.get(part, part)

    def missing(self, part: str) -> bool:
        return part in self.problems or part in self.causes

    @property
    def step_counter(self) -> Optional[str]:
        """`self.global_step`: what the step-logging block counts, else the usual counter."""
        if self.logging is not None:
            return self.logging.step_counter
        return "self.global_step" if "global_step" in self.index.self_stores else None

    @property
    def epoch_end(self) -> Optional[cst.BaseStatement]:
        """Where an epoch ends: after its count and after the epoch's own save, when the
        save comes after the count, so the epoch's time includes its save."""
        if self.epoch_count is None:
            return None
        body = list(block_statements(self.epoch.loop))
        start = body.index(self.epoch_count)
        saving = {
            id((site.ancestors + (site.statement,))[site.ancestors.index(self.epoch.loop) + 1])
            for site in self.saves
            if site.place == "epoch" and site.method is self.epoch.method
        }
        later = [stmt for stmt in body[start + 1 :] if id(stmt) in saving]
        return later[-1] if later else self.epoch_count


def _walk_names(tree: ast.AST) -> Iterator[ast.Name]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Name))
