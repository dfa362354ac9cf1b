"""P002 recipe-main: the entry point takes the job and hands the recipe to run_recipe.

`@config.parse` goes, the signature becomes the one in templates/recipe_main.py.j2, and
the statements that build and drive the recipe (`recipe = R(cfg=cfg)`, `recipe.setup`,
`recipe.train`, `recipe.cleanup`) become one `run_recipe(...)` call where the last of
them was. Everything else in the body (the distributed check, the process-group init,
thread setup, `config.log_config`) stays, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import recipe_class
from porter.rules.base import PortingRule
from porter.syntax import (
    block_statements,
    called_name,
    replace_statement,
    single_small_statement,
)

ENTRY_POINT = "recipe_main"
_CONFIG_PARSE = m.Decorator(decorator=m.Attribute(value=m.Name("config"), attr=m.Name("parse")))
_DRIVER_METHODS = ("setup", "train", "cleanup")


@dataclass
class Anchors:
    function: cst.FunctionDef
    recipe_class: str
    recipe_statements: List[cst.BaseStatement]


class RecipeMain(PortingRule):
    RULE_ID = "P002"
    NAME = "recipe-main"
    DESCRIPTION = (
        "Drop @config.parse from recipe_main, give it the job signature and replace "
        "the recipe's construction and setup/train/cleanup calls with run_recipe()."
    )

    def find(self, tree: cst.Module) -> Optional[Anchors]:
        class_name = recipe_class(tree, self.RULE_ID).name.value
        functions = [
            stmt
            for stmt in tree.body
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == ENTRY_POINT
        ]
        if len(functions) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected one module-level `{ENTRY_POINT}`, found {len(functions)}",
                functions[1] if functions else None,
            )
        function = functions[0]
        body = block_statements(function)
        constructions = [
            stmt for stmt in body if _constructed_class(stmt) == class_name
        ]
        if len(constructions) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected `{ENTRY_POINT}` to build {class_name} once, "
                f"found {len(constructions)} constructions",
                constructions[1] if constructions else function,
            )
        construction = constructions[0]
        variable = _assigned_name(construction)
        calls = {
            method: [
                stmt for stmt in body if called_name(stmt) == f"{variable}.{method}"
            ]
            for method in _DRIVER_METHODS
        }
        for method, found in calls.items():
            if len(found) != 1:
                raise PortError(
                    self.RULE_ID,
                    f"expected one `{variable}.{method}(...)` call in `{ENTRY_POINT}`, "
                    f"found {len(found)}",
                    found[1] if found else function,
                )
        driving = {id(construction)} | {id(found[0]) for found in calls.values()}
        recipe_statements = [stmt for stmt in body if id(stmt) in driving]
        if len(recipe_statements) != len(driving):
            raise PortError(
                self.RULE_ID,
                f"the recipe's construction and calls must sit directly in `{ENTRY_POINT}`",
                function,
            )
        return Anchors(function, class_name, recipe_statements)

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        (template,) = snippets.statements(
            "recipe_main.py.j2", depth=0, recipe_class=anchors.recipe_class
        )
        (run_recipe_call,) = block_statements(template)
        last = anchors.recipe_statements[-1]
        body = []
        for stmt in block_statements(anchors.function):
            if stmt is last:
                body.append(run_recipe_call.with_changes(leading_lines=stmt.leading_lines))
            elif all(stmt is not removed for removed in anchors.recipe_statements):
                body.append(stmt)
        function = anchors.function.with_changes(
            decorators=[
                decorator
                for decorator in anchors.function.decorators
                if not m.matches(decorator, _CONFIG_PARSE)
            ],
            params=template.params,
            returns=template.returns,
            body=anchors.function.body.with_changes(body=body),
        )
        return replace_statement(tree, anchors.function, [function])


def _assigned_name(stmt: cst.BaseStatement) -> Optional[str]:
    small = single_small_statement(stmt)
    if (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and isinstance(small.targets[0].target, cst.Name)
    ):
        return small.targets[0].target.value
    return None


def _constructed_class(stmt: cst.BaseStatement) -> Optional[str]:
    """`R` for a statement `name = R(...)`."""
    small = single_small_statement(stmt)
    if (
        _assigned_name(stmt) is not None
        and isinstance(small.value, cst.Call)
        and isinstance(small.value.func, cst.Name)
    ):
        return small.value.func.value
    return None
