"""Each porting rule as a libcst codemod, on its own: `python -m libcst.tool codemod
main_block.MainBlock FILE` (.libcst.codemod.yaml lists this package). A codemod runs the
pipeline with its one rule, so a refusal is a skipped file and the rule's post-conditions
still hold.
"""

from __future__ import annotations

import argparse
from abc import abstractmethod
from typing import Type

import libcst as cst
from libcst.codemod import CodemodCommand, CodemodContext, SkipFile

from porter.pipeline import port_with
from porter.rules.base import PortingRule
from runtime.contract import PORTER, PORTER_RUNTIME_MODULE


class RuleCodemod(CodemodCommand):
    @property
    @abstractmethod
    def RULE(self) -> Type[PortingRule]:  # noqa: N802 - each codemod sets it as a class attribute
        """The rule this codemod runs (abstract here, so `libcst.tool list` lists only rules)."""

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls.DESCRIPTION = cls.RULE.DESCRIPTION

    def __init__(
        self, context: CodemodContext, contract: str = PORTER.name, runtime_module: str = PORTER_RUNTIME_MODULE
    ) -> None:
        super().__init__(context)
        self.rule = self.RULE(contract, runtime_module)

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
            default=PORTER_RUNTIME_MODULE,
            help="module the contract's imports from porter's `runtime` come from instead",
        )

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        result = port_with([self.rule], tree.code)
        if result.code is None:
            raise SkipFile(result.reason)
        return cst.parse_module(result.code)
