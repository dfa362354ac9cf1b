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
class Insertion:
    template: str
    after: Optional[cst.SimpleStatementLine]  # insert after this import ...
    before: Optional[cst.SimpleStatementLine]  # ... or before this one


class Imports(PortingRule):
    RULE_ID = "P009"
    NAME = "imports"
    DESCRIPTION = (
        "Import Dataset, RecipeBase and run_recipe from the runtime (and time, which "
        "the inserted clocks read); remove imports the port left unused."
    )

    def find(self, tree: cst.Module) -> Optional[List[Insertion]]:
        imports = [stmt for stmt in tree.body if _import(stmt) is not None]
        insertions = []
        if not any(_from_module(stmt) == self.settings.runtime_module for stmt in imports):
            third_party = [s for s in imports if _from_module(s) and not _is_stdlib(_from_module(s))]
            insertions.append(
                _placed("runtime_import.py.j2", third_party, _from_module, self.settings.runtime_module, imports)
            )
        if "time" not in {_plain_module(stmt) for stmt in imports}:
            stdlib = [s for s in imports if _plain_module(s) and _is_stdlib(_plain_module(s))]
            insertions.append(_placed("time_import.py.j2", stdlib, _plain_module, "time", imports))
        return insertions or None

    def apply(self, tree: cst.Module, anchors: List[Insertion]) -> cst.Module:
        for insertion in anchors:
            (statement,) = snippets.statements(
                insertion.template, depth=0, runtime_module=self.settings.runtime_module
            )
            if insertion.after is not None:
                tree = replace_statement(tree, insertion.after, [insertion.after, statement])
            elif insertion.before is not None:
                first = insertion.before
                tree = replace_statement(
                    tree,
                    first,
                    [statement.with_changes(leading_lines=first.leading_lines), first.with_changes(leading_lines=())],
                )
            else:
                tree = tree.with_changes(body=[statement, *tree.body])
        return tree

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        before = check_names(ast.parse(tree.code))
        tree = super().transform_module_impl(tree)
        orphaned = check_names(ast.parse(tree.code)).newly(before).unused_imports
        # Run alone, nothing uses the runtime's names yet: they stay for the other rules.
        return remove_imports(tree, set(orphaned) - set(RUNTIME_NAMES) - {"time"})


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


def _placed(template: str, group: List[cst.SimpleStatementLine], module_of, module: str, imports) -> Insertion:
    """Where an import of `module` goes: after the last import of `group` that sorts
    before it, else before the group's first, else after the file's last import."""
    earlier = [stmt for stmt in group if module_of(stmt).lower() < module.lower()]
    if earlier:
        return Insertion(template, after=earlier[-1], before=None)
    if group:
        return Insertion(template, after=None, before=group[0])
    return Insertion(template, after=imports[-1] if imports else None, before=None)


def _plain_module(stmt: cst.BaseStatement) -> Optional[str]:
    """`x` for `import x`, the first module of the statement."""
    node = _import(stmt)
    if isinstance(node, cst.Import):
        return dotted_name(node.names[0].name)
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
