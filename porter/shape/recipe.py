"""The recipe class and its lifecycle methods: which class is the recipe, its methods and
the attributes it sets, its `train`, and how its methods call one another on `self`."""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from typing import Collection, Dict, FrozenSet, List, Mapping, Optional, Tuple

import libcst as cst

from porter.index import SourceIndex
from porter.shape.parts import Missing, Problem
from porter.syntax import block_statements, dotted_name

UPSTREAM_BASE = "FTRecipeInterface"
# The method that builds the training data: torchtune's name, and forks' public one.
SETUP_DATA_METHODS = ("_setup_data", "setup_data")
PORTED_BASE = "RecipeBase"
INTERFACE_METHODS = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup")
# Other recipe interfaces of torchtune: files built on them are not training recipes.
OTHER_INTERFACES = {
    "EvalRecipeInterface": "an evaluation recipe",
    "OrchestrationRecipeInterface": "an orchestration recipe (it starts and drives other processes)",
}
SAVE_METHODS = ("save_checkpoint", "_save_checkpoint")


@dataclass(frozen=True)
class RecipeClass:
    cls: cst.ClassDef
    methods: Mapping[str, cst.FunctionDef]
    # `self.<name>` the class assigns or defines; None: unknown (a mixin may set more)
    attributes: Optional[FrozenSet[str]]


@dataclass(frozen=True, eq=False)
class MethodCalls:
    """How the recipe's methods call one another on `self`."""

    methods: Mapping[str, cst.FunctionDef]
    index: SourceIndex

    def self_calls(self, root: cst.CSTNode) -> List[Tuple[cst.BaseStatement, str]]:
        """(statement, method) for each method of the recipe a statement under `root` calls on `self`."""
        names = [name for name in self.methods if name not in ("__init__", "setup", "load_checkpoint", "cleanup")]
        return [
            (stmt, name)
            for stmt in self.index.statements_using_self(root, names)
            for name in names
            if self.index.self_calls(stmt, name)
        ]

    def reachable(self, start: cst.FunctionDef) -> Dict[str, List[cst.FunctionDef]]:
        """Each method `start` reaches through calls on `self`, with the path to it;
        save methods are never walked into (their saves are sites of their callers)."""
        paths = {start.name.value: [start]}
        queue = deque([start])
        while queue:
            method = queue.popleft()
            for _, name in self.self_calls(method):
                if name not in paths and name not in SAVE_METHODS:
                    paths[name] = paths[method.name.value] + [self.methods[name]]
                    queue.append(self.methods[name])
        return paths


def read_recipe(module: cst.Module, index: SourceIndex) -> RecipeClass:
    classes = recipe_classes(module)
    if len(classes) != 1:
        names = ", ".join(c.name.value for c in classes) or "none"
        raise Missing(
            Problem(
                f"expected one {UPSTREAM_BASE} subclass, found {len(classes)} ({names})",
                classes[1] if classes else None,
            )
        )
    (cls,) = classes
    for other in module.body:
        if isinstance(other, cst.ClassDef) and cls.name.value in base_names(other):
            raise Missing(
                Problem(
                    f"class {other.name.value} subclasses the recipe class {cls.name.value}: porter would rename "
                    "the methods it overrides; make it one class, or port the base recipe alone",
                    other,
                )
            )
    methods = {stmt.name.value: stmt for stmt in block_statements(cls) if isinstance(stmt, cst.FunctionDef)}
    # Attributes set in other base classes (mixins) are out of sight: unknown then.
    others = [name for name in base_names(cls) if name not in (UPSTREAM_BASE, "object")]
    return RecipeClass(cls, methods, None if others else frozenset(set(methods) | index.self_stores))


def read_train(recipe: RecipeClass) -> cst.FunctionDef:
    train = recipe.methods.get("train")
    if train is None:
        raise Missing(Problem(f"class {recipe.cls.name.value} has no `train` method", recipe.cls))
    return train


# -- recognising classes ---------------------------------------------------------------------


def base_name(arg: cst.Arg) -> Optional[str]:
    """The last component of a base class expression: `a.B` gives `B`."""
    name = dotted_name(arg.value)
    return name.rsplit(".", 1)[-1] if name is not None else None


def base_names(cls: cst.ClassDef) -> List[str]:
    return [name for name in map(base_name, cls.bases) if name is not None]


def recipe_classes(module: cst.Module) -> List[cst.ClassDef]:
    """Module-level classes that subclass FTRecipeInterface."""
    return [s for s in module.body if isinstance(s, cst.ClassDef) and UPSTREAM_BASE in base_names(s)]


def not_a_training_recipe(tree: ast.Module, ported_base_modules: Collection[str]) -> Optional[str]:
    """Why a module is skipped, in words that say what it is; None for a training
    recipe. A recipe is already ported when it inherits the RecipeBase of one of
    `ported_base_modules` (porter's runtime, the contract's); a class of that name from
    anywhere else is someone else's. Read from the stdlib ast: skipped files are never
    parsed with libcst."""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    bases = {cls.name: [_ast_name(base) for base in cls.bases] for cls in classes}
    if any(UPSTREAM_BASE in names for names in bases.values()):
        return None
    imported = {
        alias.asname or alias.name: node.module or ""
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    heirs = [cls.name for cls in classes if PORTED_BASE in bases[cls.name]]
    if heirs:
        origin = imported.get(PORTED_BASE)
        if origin in ported_base_modules:
            return f"already ported ({heirs[0]} inherits {PORTED_BASE} from {origin})"
        return (
            f"not a training recipe: {heirs[0]} inherits a {PORTED_BASE} from {origin or 'this module'}, which is not the "
            f"runtime's ({' or '.join(sorted(ported_base_modules))}), and no class subclasses {UPSTREAM_BASE}"
        )
    for cls in classes:
        for base in bases[cls.name]:
            if base in OTHER_INTERFACES:
                return f"{OTHER_INTERFACES[base]}: {cls.name} subclasses {base}; porter ports training recipes ({UPSTREAM_BASE} subclasses)"
            origin = imported.get(base, "")
            if "Recipe" in base or "recipes" in origin.split("."):
                where = f" (from {origin})" if origin else ""
                return f"subclass of {base}{where}: port that recipe; porter ports {UPSTREAM_BASE} subclasses"
    found = ", ".join(f"{cls.name}({', '.join(bases[cls.name])})" for cls in classes)
    return f"not a training recipe: no {UPSTREAM_BASE} subclass" + (f" (classes: {found})" if found else "")


def _ast_name(node: ast.expr) -> str:
    """The last component of a base class expression: `a.B` gives `B`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)
