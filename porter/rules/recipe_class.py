"""P001 recipe-class: the recipe inherits RecipeBase and hides the interface methods.

`class R(FTRecipeInterface)` becomes `class R(RecipeBase)`; `__init__` becomes `_init`
and `load_checkpoint`, `setup`, `train`, `save_checkpoint` and `cleanup` get a `_`
prefix, so RecipeBase's public methods wrap them. Calls on `self` are renamed with
them; calls on anything else (`self._model.train()`) are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional

import libcst as cst

from porter.errors import PortError
from porter.recipe import (
    base_name,
    base_names,
    INTERFACE_METHODS,
    PORTED_BASE,
    recipe_class,
    UPSTREAM_BASE,
)
from porter.rules.base import PortingRule
from porter.syntax import block_statements, replace_statement


@dataclass
class Anchors:
    cls: cst.ClassDef
    renames: Dict[str, str]
    call_sites: List[cst.BaseStatement]


class _RenameSelfAttributes(cst.CSTTransformer):
    def __init__(self, renames: Dict[str, str]) -> None:
        super().__init__()
        self.renames = renames

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.Attribute:
        if (
            isinstance(updated_node.value, cst.Name)
            and updated_node.value.value == "self"
            and updated_node.attr.value in self.renames
        ):
            return updated_node.with_changes(
                attr=cst.Name(self.renames[updated_node.attr.value])
            )
        return updated_node


class RecipeClass(PortingRule):
    RULE_ID = "P001"
    NAME = "recipe-class"
    DESCRIPTION = (
        "Inherit RecipeBase instead of FTRecipeInterface; rename __init__ to _init "
        "and the interface methods (and their calls on self) to _-prefixed names."
    )

    def find(self, tree: cst.Module) -> Optional[Anchors]:
        cls = recipe_class(tree, self.RULE_ID)
        methods = {
            stmt.name.value: stmt
            for stmt in block_statements(cls)
            if isinstance(stmt, cst.FunctionDef)
        }
        renames = {"__init__": "_init"} if "__init__" in methods else {}
        renames.update(
            {name: f"_{name}" for name in INTERFACE_METHODS if name in methods}
        )
        for old, new in renames.items():
            if new in methods:
                raise PortError(
                    self.RULE_ID,
                    f"class {cls.name.value} defines both `{old}` and `{new}`; "
                    f"renaming `{old}` would replace `{new}`",
                    methods[new],
                )
        if UPSTREAM_BASE not in base_names(cls) and not renames:
            return None
        call_sites = [
            stmt
            for stmt in self.index(tree).statements_using_self(cls, renames)
            if not isinstance(stmt, cst.FunctionDef)
        ]
        return Anchors(cls=cls, renames=renames, call_sites=call_sites)

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        cls = anchors.cls
        calls = {name: new for name, new in anchors.renames.items() if name != "__init__"}
        for stmt in anchors.call_sites:
            cls = replace_statement(cls, stmt, [stmt.visit(_RenameSelfAttributes(calls))])
        body = [
            stmt.with_changes(name=cst.Name(anchors.renames[stmt.name.value]))
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value in anchors.renames
            else stmt
            for stmt in block_statements(cls)
        ]
        bases = [
            arg.with_changes(value=cst.Name(PORTED_BASE))
            if base_name(arg) == UPSTREAM_BASE
            else arg
            for arg in cls.bases
        ]
        new_cls = cls.with_changes(
            bases=bases, body=cls.body.with_changes(body=body)
        )
        return replace_statement(tree, anchors.cls, [new_cls])
