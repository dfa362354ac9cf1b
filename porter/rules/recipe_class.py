"""P001 recipe-class: the recipe inherits RecipeBase and hides the interface methods.

`class R(FTRecipeInterface)` becomes `class R(RecipeBase)`; `__init__` becomes `_init`
and `load_checkpoint`, `setup`, `train`, `save_checkpoint` and `cleanup` get a `_`
prefix, so RecipeBase's public methods wrap them. Calls on `self` are renamed with
them, except those the runtime contract's public wrapper hands the same values on
(porter/wrapper_calls.py): they stay, so the runtime's wrapper code runs as it would in
a port by hand (noted). Calls on anything else (`self._model.train()`) are left alone.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Dict, List, Set, Tuple

import libcst as cst

from porter.edits import Edits
from porter.errors import PortError
from porter.imports import Needed
from porter.outcomes import CHANGED, Note
from porter.rules.base import PortingRule
from porter.shape import base_name, INTERFACE_METHODS, PORTED_BASE, RECIPE, RecipeShape, UPSTREAM_BASE
from porter.wrapper_calls import wrapper_call


# What the runtime passes the methods it calls (after `self`).
RUNTIME_CALLS = {"__init__": ("cfg",), "setup": ("cfg",), "train": (), "cleanup": ()}


@dataclass
class Anchors:
    cls: cst.ClassDef
    renames: Dict[str, str]
    call_sites: List[cst.BaseStatement]
    # By call site (id): the methods its calls keep calling through the runtime's wrappers.
    through_wrappers: Dict[int, Set[str]]
    # (line, method, why) of the calls that could not go through the runtime's wrapper.
    past_wrappers: List[Tuple[int, str, str]]
    extra_parameters: Dict[str, List[str]]  # method -> parameters the runtime never passes (they have defaults)


RENAMED = {"__init__": "_init"}


def _self_references(node: ast.stmt, name: str) -> int:
    return sum(
        1
        for inner in ast.walk(node)
        if isinstance(inner, ast.Attribute)
        and inner.attr == name
        and isinstance(inner.value, ast.Name)
        and inner.value.id == "self"
    )


class _RenameSelfAttributes(cst.CSTTransformer):
    def __init__(self, renames: Dict[str, str]) -> None:
        super().__init__()
        self.renames = renames

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.Attribute:
        if (
            isinstance(updated_node.value, cst.Name)
            and updated_node.value.value == "self"
            and updated_node.attr.value in self.renames
        ):
            return updated_node.with_changes(attr=cst.Name(self.renames[updated_node.attr.value]))
        return updated_node


class RecipeClass(PortingRule):
    RULE_ID = "P001"
    NAME = "recipe-class"
    DESCRIPTION = (
        "Inherit RecipeBase instead of FTRecipeInterface; rename __init__ to _init "
        "and the interface methods (and their calls on self) to _-prefixed names."
    )
    NEEDS = (RECIPE,)

    def find(self, shape: RecipeShape) -> Anchors:
        renames = dict(RENAMED) if "__init__" in shape.methods else {}
        renames.update({name: f"_{name}" for name in INTERFACE_METHODS if name in shape.methods})
        for old, new in renames.items():
            if new in shape.methods:
                raise PortError(
                    self.RULE_ID,
                    f"class {shape.cls.name.value} defines both `{old}` and `{new}`; renaming `{old}` would replace `{new}`",
                    shape.methods[new],
                )
        called = [name for name in renames if name != "__init__"]
        call_sites = [
            stmt
            for stmt in shape.index.statements_using_self(shape.cls, called)
            if not isinstance(stmt, cst.FunctionDef)
        ]
        through, past = self._wrapper_calls(shape, called, {id(stmt) for stmt in call_sites})
        extra = {name: self._extra_parameters(shape.methods[name]) for name in RUNTIME_CALLS if name in shape.methods}
        return Anchors(
            cls=shape.cls,
            renames=renames,
            call_sites=call_sites,
            through_wrappers=through,
            past_wrappers=past,
            extra_parameters={k: v for k, v in extra.items() if v},
        )

    def _wrapper_calls(
        self, shape: RecipeShape, called: List[str], sites: Set[int]
    ) -> Tuple[Dict[int, Set[str]], List[Tuple[int, str, str]]]:
        """Which call sites keep calling which methods through the contract's wrappers
        (every use of the method in the statement is a call that may), and why the
        others cannot."""
        through: Dict[int, Set[str]] = {}
        past: List[Tuple[int, str, str]] = []
        wrapped = [name for name in called if self.contract.wrapper(name) is not None]
        for method in shape.methods.values():
            method_ast = shape.index.ast_node(method)
            for stmt in shape.index.statements_using_self(method, wrapped):
                node = shape.index.ast_node(stmt)
                if id(stmt) not in sites or node is None:
                    continue
                for name in wrapped:
                    calls = shape.index.self_calls(stmt, name)
                    if not calls:
                        continue
                    answers = [wrapper_call(self.contract, name, call, node, method_ast) for call in calls]
                    why = next((answer.why for answer in answers if not answer.through), "")
                    if not why and len(calls) != _self_references(node, name):
                        why = f"the statement also uses `self.{name}` other than by calling it"
                    if why:
                        past.append((shape.index.line(stmt), name, why))
                    else:
                        through.setdefault(id(stmt), set()).add(name)
        return through, past

    def _extra_parameters(self, method: cst.FunctionDef) -> List[str]:
        """The parameters of `method` the runtime's call does not pass; refused when one
        has no default, for then the call would fail."""
        name = method.name.value
        params = method.params
        passed = RUNTIME_CALLS[name]
        extra = []
        for param in (*params.posonly_params, *params.params[1:], *params.kwonly_params):
            if param.name.value in passed:
                continue
            if param.default is None:
                raise PortError(
                    self.RULE_ID,
                    f"`{name}` requires `{param.name.value}`, which the runtime does not pass: it calls "
                    f"`{RENAMED.get(name, '_' + name)}({', '.join(passed)})`",
                    method,
                )
            extra.append(param.name.value)
        return extra

    def edit(self, shape: RecipeShape, anchors: Anchors, edits: Edits) -> None:
        for stmt in anchors.call_sites:
            kept = anchors.through_wrappers.get(id(stmt), set())
            calls = _RenameSelfAttributes(
                {old: new for old, new in anchors.renames.items() if old != "__init__" and old not in kept}
            )
            edits.change(stmt, lambda node, calls=calls: node.visit(calls))
        for old, new in anchors.renames.items():
            edits.change(shape.methods[old], lambda node, new=new: node.with_changes(name=cst.Name(new)))
        edits.change(
            anchors.cls,
            lambda cls: cls.with_changes(
                bases=[
                    arg.with_changes(value=cst.Name(PORTED_BASE)) if base_name(arg) == UPSTREAM_BASE else arg
                    for arg in cls.bases
                ]
            ),
        )

    def notes(self, shape: RecipeShape, anchors: Anchors) -> List[Note]:
        notes = [
            self.note(
                shape.index.line(shape.methods[name]),
                CHANGED,
                f"`{name}` takes {', '.join(f'`{p}`' for p in extra)} beyond what "
                f"the runtime passes (`{RENAMED.get(name, '_' + name)}({', '.join(RUNTIME_CALLS[name])})`): "
                f"{'they keep' if len(extra) > 1 else 'it keeps'} {'their defaults' if len(extra) > 1 else 'its default'}, "
                "and a caller that passed another value no longer does",
            )
            for name, extra in anchors.extra_parameters.items()
        ]
        calls = [
            self.note(
                shape.index.line(stmt),
                CHANGED,
                f"`self.{name}(...)` goes through the runtime's public wrapper "
                f"(contract `{self.contract.name}`: {self.contract.wrapper(name).describe(name)}), so the "
                "wrapper's own work runs there too",
            )
            for stmt in anchors.call_sites
            for name in sorted(anchors.through_wrappers.get(id(stmt), ()))
        ]
        calls += [
            self.note(
                line,
                CHANGED,
                f"`self.{name}(...)` calls the renamed `_{name}` directly, not the runtime's public "
                f"wrapper (contract `{self.contract.name}`), whose own work does not run there: {why}",
            )
            for line, name, why in anchors.past_wrappers
        ]
        return notes + sorted(calls, key=lambda note: note.line)

    def imports(self, anchors: Anchors) -> List[Needed]:
        return [Needed(self.contract.module_of(PORTED_BASE), PORTED_BASE)]

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Anchors) -> List[str]:
        classes = [
            node
            for node in ported.body
            if isinstance(node, ast.ClassDef) and any(_last_name(base) == PORTED_BASE for base in node.bases)
        ]
        if len(classes) != 1:
            return [f"expected one {PORTED_BASE} subclass, found {len(classes)}"]
        methods = {node.name for node in classes[0].body if isinstance(node, ast.FunctionDef)}
        return [f"public method `{name}` left" for name in ("__init__", *INTERFACE_METHODS) if name in methods]


def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""
