"""P009 imports: the runtime's names are imported; imports the port orphaned go.

`from runtime import Dataset, RecipeBase, run_recipe` (templates/runtime_import.py.j2,
the module is a setting) goes among the file's third-party `from` imports, in sorted
position, where the file's own grouping puts it. Imports that the source used and the
port left unused (`sys` of the `__main__` block, `FTRecipeInterface`) are removed once
the ported module is checked, by `remove_imports`.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from typing import Collection, List, Optional

import libcst as cst

from porter import snippets
from porter.rules.base import PortingRule
from porter.syntax import dotted_name, replace_statement
from porter.verify import check_names

RUNTIME_NAMES = ("Dataset", "RecipeBase", "run_recipe")


@dataclass
class Anchors:
    after: Optional[cst.SimpleStatementLine]  # insert after this import ...
    before: Optional[cst.SimpleStatementLine]  # ... or before this one


class Imports(PortingRule):
    RULE_ID = "P009"
    NAME = "imports"
    DESCRIPTION = (
        "Import Dataset, RecipeBase and run_recipe from the runtime; remove imports "
        "the port left unused."
    )

    def find(self, tree: cst.Module) -> Optional[Anchors]:
        imports = [stmt for stmt in tree.body if _import(stmt) is not None]
        if any(_from_module(stmt) == self.settings.runtime_module for stmt in imports):
            return None
        third_party = [
            stmt
            for stmt in imports
            if _from_module(stmt) is not None and not _is_stdlib(_from_module(stmt))
        ]
        key = self.settings.runtime_module.lower()
        earlier = [stmt for stmt in third_party if _from_module(stmt).lower() < key]
        if earlier:
            return Anchors(after=earlier[-1], before=None)
        if third_party:
            return Anchors(after=None, before=third_party[0])
        return Anchors(after=imports[-1] if imports else None, before=None)

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        (runtime_import,) = snippets.statements(
            "runtime_import.py.j2", depth=0, runtime_module=self.settings.runtime_module
        )
        if anchors.after is not None:
            return replace_statement(tree, anchors.after, [anchors.after, runtime_import])
        if anchors.before is not None:
            first = anchors.before
            return replace_statement(
                tree,
                first,
                [
                    runtime_import.with_changes(leading_lines=first.leading_lines),
                    first.with_changes(leading_lines=()),
                ],
            )
        return tree.with_changes(body=[runtime_import, *tree.body])

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        before = check_names(ast.parse(tree.code))
        tree = super().transform_module_impl(tree)
        orphaned = check_names(ast.parse(tree.code)).newly(before).unused_imports
        # Run alone, nothing uses the runtime's names yet: they stay for the other rules.
        return remove_imports(tree, set(orphaned) - set(RUNTIME_NAMES))


def remove_imports(tree: cst.Module, names: Collection[str]) -> cst.Module:
    """`tree` without the module-level imports that bind `names`."""
    if not names:
        return tree
    body: List[cst.BaseStatement] = []
    orphaned_lines: List[cst.EmptyLine] = []
    for stmt in tree.body:
        node = _import(stmt)
        if node is None:
            body.append(_prepend_lines(stmt, orphaned_lines))
            orphaned_lines = []
            continue
        kept = [alias for alias in node.names if _local_name(alias) not in names]
        if len(kept) == len(node.names):
            body.append(_prepend_lines(stmt, orphaned_lines))
            orphaned_lines = []
        elif not kept:
            # Keep the blank lines that separated this import's group from the last.
            orphaned_lines = orphaned_lines or [
                line for line in stmt.leading_lines if line.comment is None
            ]
        else:
            kept[-1] = kept[-1].with_changes(comma=node.names[-1].comma)
            body.append(
                _prepend_lines(
                    stmt.with_changes(body=[node.with_changes(names=kept)]), orphaned_lines
                )
            )
            orphaned_lines = []
    return tree.with_changes(body=body)


def _prepend_lines(stmt: cst.BaseStatement, lines: List[cst.EmptyLine]) -> cst.BaseStatement:
    if not lines or stmt.leading_lines:
        return stmt
    return stmt.with_changes(leading_lines=lines)


def _import(stmt: cst.BaseStatement):
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        node = stmt.body[0]
        if isinstance(node, cst.Import) or (
            isinstance(node, cst.ImportFrom) and not isinstance(node.names, cst.ImportStar)
        ):
            return node
    return None


def _from_module(stmt: cst.BaseStatement) -> Optional[str]:
    node = _import(stmt)
    if isinstance(node, cst.ImportFrom) and not node.relative and node.module is not None:
        return dotted_name(node.module)
    return None


def _is_stdlib(module: str) -> bool:
    return module.split(".")[0] in sys.stdlib_module_names


def _local_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None:
        return alias.asname.name.value
    return dotted_name(alias.name).split(".")[0]
