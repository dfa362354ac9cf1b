"""What every porting rule is: it reads the recipe's shape, records edits, checks its work.

A rule owns everything about its porting step:
- NEEDS: the parts of the RecipeShape it reads (a missing part fails the rule, once);
- `find(shape)`: its anchors, or PortError when the shape is one it cannot port safely;
- `edit(shape, anchors, edits)`: its edits, rendered from its own template (TEMPLATE);
- `imports(anchors)`: the imports its code needs;
- `notes(shape, anchors)`: what a reviewer must check, for every edit that moves or
  drops behaviour;
- `check(ported, shape, anchors)`: its post-condition on the ported module.

The pipeline (porter/pipeline.py) runs `find` of every rule before any edit, so a file
fails with all its problems and nothing half-ported. Each rule also runs alone as a
libcst codemod (README, "Command line").
"""

from __future__ import annotations

import argparse
import ast
from typing import Any, ClassVar, List, Optional, Tuple, Union

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext, SkipFile

from porter.edits import Edits
from porter.errors import HoleSite
from porter.imports import Needed
from porter.settings import DEFAULT_RUNTIME_MODULE
from porter.shape import RecipeShape
from runtime.contract import load as load_contract, PORTER, RuntimeContract


class PortingRule(CodemodCommand):
    RULE_ID: ClassVar[str]
    NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    NEEDS: ClassVar[Tuple[str, ...]] = ()
    TEMPLATE: ClassVar[Optional[str]] = None

    def __init__(
        self,
        context: CodemodContext,
        contract: Union[RuntimeContract, str] = PORTER,
        runtime_module: str = DEFAULT_RUNTIME_MODULE,
    ) -> None:
        super().__init__(context)
        declared = contract if isinstance(contract, RuntimeContract) else load_contract(contract, where="--contract")
        self.contract = declared.with_runtime_module(runtime_module)

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        arg_parser.add_argument(
            "--contract",
            dest="contract",
            default=PORTER.name,
            help="the runtime contract the output targets: porter, guide, or a TOML file",
        )
        arg_parser.add_argument(
            "--runtime-module",
            dest="runtime_module",
            default=DEFAULT_RUNTIME_MODULE,
            help="module the contract's imports from porter's `runtime` come from instead",
        )

    @property
    def label(self) -> str:
        return f"{self.RULE_ID} {self.NAME}"

    def find(self, shape: RecipeShape) -> Any:
        """The rule's anchors, or None when the recipe needs nothing of it."""
        raise NotImplementedError

    def edit(self, shape: RecipeShape, anchors: Any, edits: Edits) -> None:
        raise NotImplementedError

    def imports(self, anchors: Any) -> List[Needed]:
        return []

    def notes(self, shape: RecipeShape, anchors: Any) -> List[str]:
        return []

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Any) -> List[str]:
        """What is wrong with the ported module, as far as this rule's step goes."""
        return []

    def hole(self, shape: RecipeShape) -> Optional[HoleSite]:
        """Where this rule's step is left as a hole when it cannot be ported safely (an
        assisted port); None: the file is refused instead."""
        return None

    def snippet(self, name: str, depth: int, **arguments: object) -> List[cst.BaseStatement]:
        from porter import snippets

        return snippets.statements(self.TEMPLATE, name, depth, **arguments)

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        from porter.pipeline import port_with

        result = port_with([self], tree.code)
        if result.code is None:
            raise SkipFile(result.reason)
        return cst.parse_module(result.code)
