"""Statement-level navigation and editing of libcst trees.

Rules find their anchors by walking statements only (never every expression node) and
edit by rebuilding the path from the root to the edited statement. Both are cheap, which
keeps a conversion within twice the cost of parsing and printing the module.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Tuple

import libcst as cst

# Fields of compound nodes that hold statements, directly or through a suite.
_BLOCK_FIELDS = {
    cst.ClassDef: ("body",),
    cst.FunctionDef: ("body",),
    cst.If: ("body", "orelse"),
    cst.Else: ("body",),
    cst.For: ("body", "orelse"),
    cst.While: ("body", "orelse"),
    cst.With: ("body",),
    cst.Try: ("body", "handlers", "orelse", "finalbody"),
    cst.TryStar: ("body", "handlers", "orelse", "finalbody"),
    cst.ExceptHandler: ("body",),
    cst.ExceptStarHandler: ("body",),
    cst.Finally: ("body",),
    cst.Match: ("cases",),
    cst.MatchCase: ("body",),
}

Ancestors = Tuple[cst.CSTNode, ...]


def _children(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    for field in _BLOCK_FIELDS.get(type(node), ()):
        child = getattr(node, field)
        if child is None:
            continue
        if isinstance(child, (list, tuple)):
            yield from child
        else:
            yield child


def block_statements(node: cst.CSTNode) -> Sequence[cst.BaseStatement]:
    """The statements directly inside a module, suite or compound statement's body."""
    if isinstance(node, (cst.Module, cst.IndentedBlock)):
        return node.body
    if isinstance(node, cst.SimpleStatementSuite):
        return ()
    body = getattr(node, "body", None)
    return block_statements(body) if body is not None else ()


def iter_statements(
    root: cst.CSTNode, ancestors: Ancestors = ()
) -> Iterator[Tuple[cst.BaseStatement, Ancestors]]:
    """Every statement under `root`, depth first, with the compound nodes above it."""
    if isinstance(root, (cst.Module, cst.IndentedBlock)):
        for stmt in root.body:
            yield stmt, ancestors
            yield from iter_statements(stmt, ancestors + (stmt,))
        return
    for child in _children(root):
        yield from iter_statements(child, ancestors)


# Blocks between a module and a method's body: the class body, then the method body.
METHOD_BODY_DEPTH = 2


def nesting(root: cst.CSTNode, target: cst.BaseStatement) -> int:
    """How many compound statements under `root` enclose `target`."""
    for stmt, ancestors in iter_statements(root):
        if stmt is target:
            return len(ancestors)
    raise LookupError("statement is not under the given root")


def _replace(
    node: cst.CSTNode, target: cst.CSTNode, replacement: Tuple[cst.BaseStatement, ...]
) -> cst.CSTNode:
    if isinstance(node, (cst.Module, cst.IndentedBlock)):
        out, changed = [], False
        for stmt in node.body:
            if stmt is target:
                out.extend(replacement)
                changed = True
                continue
            new = _replace(stmt, target, replacement)
            changed = changed or new is not stmt
            out.append(new)
        return node.with_changes(body=out) if changed else node
    for field in _BLOCK_FIELDS.get(type(node), ()):
        child = getattr(node, field)
        if child is None:
            continue
        if isinstance(child, (list, tuple)):
            items = [_replace(item, target, replacement) for item in child]
            if any(new is not old for new, old in zip(items, child)):
                return node.with_changes(**{field: items})
            continue
        if child is target and isinstance(child, cst.BaseStatement):
            # An `elif` is an If held in its parent's orelse: replace it in place.
            (single,) = replacement
            return node.with_changes(**{field: single})
        new = _replace(child, target, replacement)
        if new is not child:
            return node.with_changes(**{field: new})
    return node


def replace_statement(
    root: cst.CSTNode,
    target: cst.BaseStatement,
    replacement: Sequence[cst.BaseStatement],
) -> cst.CSTNode:
    """`root` with the statement `target` (found by identity) replaced by `replacement`."""
    new = _replace(root, target, tuple(replacement))
    if new is root:
        raise LookupError("statement to replace is not under the given root")
    return new


def leading_blank_lines(
    stmt: cst.BaseStatement,
) -> Tuple[Sequence[cst.EmptyLine], Sequence[cst.EmptyLine]]:
    """Split a statement's leading lines into the blank ones before its first comment
    and the rest (its comment block), so code can be inserted between the two."""
    lines = list(stmt.leading_lines)
    split = 0
    while split < len(lines) and lines[split].comment is None:
        split += 1
    return lines[:split], lines[split:]


def with_leading_lines(
    stmt: cst.BaseStatement, lines: Sequence[cst.EmptyLine]
) -> cst.BaseStatement:
    return stmt.with_changes(leading_lines=list(lines))


def single_small_statement(stmt: cst.CSTNode) -> Optional[cst.BaseSmallStatement]:
    """The one small statement of a simple statement line, else None."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def expression_of(stmt: cst.CSTNode) -> Optional[cst.BaseExpression]:
    """The expression of an expression statement line, else None."""
    small = single_small_statement(stmt)
    return small.value if isinstance(small, cst.Expr) else None


def dotted_name(node: cst.CSTNode) -> Optional[str]:
    """`a.b.c` for a Name/Attribute chain, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr.value}" if base is not None else None
    return None


def called_name(stmt: cst.CSTNode) -> Optional[str]:
    """The dotted name called by an expression statement such as `self.x.y(...)`."""
    expr = expression_of(stmt)
    if isinstance(expr, cst.Call):
        return dotted_name(expr.func)
    return None


def method(cls: cst.ClassDef, name: str) -> Optional[cst.FunctionDef]:
    for stmt in block_statements(cls):
        if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
            return stmt
    return None


def module_code(module: cst.Module, statement_code: Callable[[cst.BaseStatement], str]) -> str:
    """`module.code`, with each top-level statement's code from `statement_code`.

    Lets a caller that changes a few statements of printed module reprint only those;
    assembled exactly as libcst's Module prints itself.
    """
    parts = [module.code_for_node(line) for line in module.header]
    parts += [statement_code(stmt) for stmt in module.body]
    parts += [module.code_for_node(line) for line in module.footer]
    code = "".join(parts)
    newline = module.default_newline
    if module.has_trailing_newline:
        return code or newline
    return code[: -len(newline)] if code.endswith(newline) else code
