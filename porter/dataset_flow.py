"""Where `_setup_data`'s training set comes from, read by what the code does.

The set that reaches the data loader (or its sampler) is followed back to the statements
that make it: the last statement of `_setup_data` that binds it, and the statements
right above that only feed it. Whatever their shape (an `if` on anything, a
comprehension and a `ConcatDataset`, a helper's result, a config model's `model_dump`),
those are what the job's dataset replaces (porter/rules/dataset_injection.py).

Names are read from the stdlib ast of each statement (porter/index.py pairs them), so
one walk of a statement answers both what it binds and what it reads.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterable, List, Optional, Set, Tuple

import libcst as cst

from porter.index import SourceIndex
from porter.syntax import block_statements


@dataclass(frozen=True)
class DatasetFlow:
    variable: str  # the name the loader receives
    replaced: Tuple[cst.BaseStatement, ...]  # the statements that make it, in order; the last binds it
    loader: cst.BaseStatement  # the statement that hands it to the loader or sampler


def dataset_flow(setup_data: cst.FunctionDef, index: SourceIndex) -> Optional[DatasetFlow]:
    body = list(block_statements(setup_data))
    for position, stmt in enumerate(body):
        node = index.ast_node(stmt)
        variable = _loaded_set(node) if node is not None else None
        if variable is None:
            continue
        binders = [i for i in range(position) if variable in bound_names([index.ast_node(body[i])])]
        if not binders:
            return None
        last = binders[-1]
        replaced = [body[last]]
        needed = read_names([index.ast_node(body[last])])
        later = [index.ast_node(s) for s in body[last + 1 :]]
        for earlier in reversed(body[:last]):
            earlier_node = index.ast_node(earlier)
            binds = bound_names([earlier_node])
            if isinstance(earlier_node, (ast.FunctionDef, ast.Import, ast.ImportFrom)) or _is_docstring(earlier_node):
                continue  # definitions: they stay where they are, and run the same either way
            if not binds & needed or binds & read_names(later) or binds & {variable}:
                break
            replaced.insert(0, earlier)
            needed |= read_names([earlier_node])
        return DatasetFlow(variable, tuple(replaced), stmt)
    return None


def _loaded_set(node: ast.stmt) -> Optional[str]:
    """The name a statement hands a data loader or sampler as its dataset."""
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        callee = ast.unparse(call.func).rsplit(".", 1)[-1]
        if not (callee.endswith("DataLoader") or callee.endswith("Sampler")):
            continue
        given = [k.value for k in call.keywords if k.arg == "dataset"] or call.args[:1]
        if given and isinstance(given[0], ast.Name):
            return given[0].id
    return None


def _is_docstring(node: Optional[ast.stmt]) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


def bound_names(nodes: Iterable[Optional[ast.AST]]) -> Set[str]:
    """The names these statements bind in their function (not in their comprehensions)."""
    found: Set[str] = set()
    for node in nodes:
        for inner in _own_nodes(node):
            if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Store):
                found.add(inner.id)
            elif isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found.add(inner.name)
            elif isinstance(inner, (ast.Import, ast.ImportFrom)):
                found |= {(alias.asname or alias.name).split(".")[0] for alias in inner.names}
    return found


def read_names(nodes: Iterable[Optional[ast.AST]]) -> Set[str]:
    found: Set[str] = set()
    for node in nodes:
        for inner in ast.walk(node) if node is not None else ():
            if isinstance(inner, ast.Name) and isinstance(inner.ctx, ast.Load):
                found.add(inner.id)
    return found


def _own_nodes(node: Optional[ast.AST]) -> List[ast.AST]:
    """`node` and what is under it, but not inside comprehensions or nested functions,
    whose names are their own."""
    found: List[ast.AST] = []
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        found.append(current)
        if isinstance(current, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp, ast.Lambda)):
            continue
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # its name is bound; its body's names are its own
        stack.extend(ast.iter_child_nodes(current))
    return found
