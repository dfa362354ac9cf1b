"""Statement-level navigation and editing of libcst trees.

Rules find their anchors by walking statements only (never every expression node) and
edit by rebuilding the path from the root to the edited statement. Both are cheap, which
keeps a conversion within twice the cost of parsing and printing the module.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence, Tuple

import libcst as cst

# Fields of compound nodes that hold statements, directly or through a suite.
BLOCK_FIELDS = {
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
    for field in BLOCK_FIELDS.get(type(node), ()):
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


def iter_statements(root: cst.CSTNode, ancestors: Ancestors = ()) -> Iterator[Tuple[cst.BaseStatement, Ancestors]]:
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


def containing_block(owner: cst.CSTNode, stmt: cst.BaseStatement) -> Sequence[cst.BaseStatement]:
    """The statement list under `owner` (a compound statement or a method) that holds
    `stmt`: a body, an `else`, an `except`, a `finally` or an `elif` body."""
    for field in BLOCK_FIELDS.get(type(owner), ("body",)):
        child = getattr(owner, field, None)
        for part in child if isinstance(child, (list, tuple)) else [child]:
            if part is None:
                continue
            if isinstance(part, cst.If):  # an `elif`
                found = containing_block(part, stmt)
            else:
                found = block_statements(part)
            if any(s is stmt for s in found):
                return found
    raise LookupError("statement is not directly under the given node")


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


def single_small_statement(stmt: cst.CSTNode) -> Optional[cst.BaseSmallStatement]:
    """The one small statement of a simple statement line, else None."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        return stmt.body[0]
    return None


def expression_of(stmt: cst.CSTNode) -> Optional[cst.BaseExpression]:
    """The expression of an expression statement line, else None."""
    small = single_small_statement(stmt)
    return small.value if isinstance(small, cst.Expr) else None


def is_docstring(stmt: cst.BaseStatement) -> bool:
    return isinstance(expression_of(stmt), (cst.SimpleString, cst.ConcatenatedString))


def dotted_name(node: cst.CSTNode) -> Optional[str]:
    """`a.b.c` for a Name/Attribute chain, else None."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr.value}" if base is not None else None
    return None


def node_code(node: cst.CSTNode) -> str:
    """The source code of one expression or statement node."""
    return _EMPTY_MODULE.code_for_node(node)


_EMPTY_MODULE = cst.Module(body=[])


def called_name(stmt: cst.CSTNode) -> Optional[str]:
    """The dotted name called by an expression statement such as `self.x.y(...)`."""
    expr = expression_of(stmt)
    if isinstance(expr, cst.Call):
        return dotted_name(expr.func)
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
