"""What every porting rule is: a libcst codemod that first finds, then transforms.

`find` locates the rule's anchors and raises PortError when one is missing, repeated or
misplaced; it never changes the tree. `apply` edits the tree at those anchors. The
converter runs every rule's `find` on the source before any `apply`, so a file fails
with all its problems listed and nothing half-ported. Each rule is also a libcst
codemod command of its own (see README, "Running one rule").
"""

from __future__ import annotations

import argparse
import ast
from typing import Any, ClassVar, List, Optional

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext, SkipFile

from porter.errors import PortError
from porter.index import SourceIndex
from porter.settings import DEFAULT_RUNTIME_MODULE, Settings


class PortingRule(CodemodCommand):
    RULE_ID: ClassVar[str]
    NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]

    def __init__(
        self,
        context: CodemodContext,
        runtime_module: str = DEFAULT_RUNTIME_MODULE,
        index: Optional[SourceIndex] = None,
    ) -> None:
        super().__init__(context)
        self.settings = Settings(runtime_module=runtime_module)
        self._index = index

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        arg_parser.add_argument(
            "--runtime-module",
            dest="runtime_module",
            default=DEFAULT_RUNTIME_MODULE,
            help="module the generated code imports RecipeBase, run_recipe and Dataset from",
        )

    def index(self, tree: cst.Module) -> SourceIndex:
        """The source index; built from `tree` when the rule runs on its own."""
        if self._index is None:
            self._index = SourceIndex(tree, ast.parse(tree.code))
        return self._index

    def find(self, tree: cst.Module) -> Any:
        """The rule's anchors in `tree`, or None when the rule has nothing to do."""
        raise NotImplementedError

    def apply(self, tree: cst.Module, anchors: Any) -> cst.Module:
        raise NotImplementedError

    def notes(self, anchors: Any, index: SourceIndex) -> List[str]:
        """What a reviewer of this port should look at, found with the source's anchors:
        decisions the rule made that the upstream code did not spell out."""
        return []

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        try:
            anchors = self.find(tree)
        except PortError as error:
            raise SkipFile(f"{error.rule_id}: {error.message}") from error
        return tree if anchors is None else self.apply(tree, anchors)
