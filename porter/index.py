"""Line numbers, names and `self.<name>` uses of a source module, read from the stdlib ast.

libcst can compute positions, but that costs more than parsing the module twice over.
The stdlib ast has line numbers for free and the same statement structure, so porter
walks both trees in step once and keeps, for each libcst statement of the source, its
ast statement; and one scan of the ast records, for each statement, the `self.<name>`s
its own code reads and calls, and for the module, every name it uses. Rules then ask
where a node is, or which statements mention `self.<method>`, without another pass.
"""

from __future__ import annotations

import ast
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import libcst as cst

from porter.syntax import block_statements

_COMPOUND_BLOCKS = {
    # libcst node: its statement blocks, paired with the ast fields holding the same ones
    cst.ClassDef: (("body", "body"),),
    cst.FunctionDef: (("body", "body"),),
    cst.For: (("body", "body"), ("orelse", "orelse")),
    cst.While: (("body", "body"), ("orelse", "orelse")),
    cst.With: (("body", "body"),),
    cst.Try: (("body", "body"), ("orelse", "orelse"), ("finalbody", "finalbody")),
    cst.TryStar: (("body", "body"), ("orelse", "orelse"), ("finalbody", "finalbody")),
}


class SourceIndex:
    """Maps the statements of one parsed source (libcst) to its stdlib ast."""

    def __init__(self, module: cst.Module, tree: ast.Module) -> None:
        self._ast_of: Dict[int, ast.stmt] = {}
        # libcst nodes are kept alive by `module`, so their ids stay unique.
        self._module = module
        self._pair_block(module.body, tree.body)
        self._under: Dict[int, List[Tuple[cst.BaseStatement, ast.stmt]]] = {}
        self._scan(tree)

    def _scan(self, tree: ast.Module) -> None:
        """One walk of the ast: each statement's own `self.<name>` reads and calls (its
        header's, for a compound statement), and the module's names."""
        self.names: Set[str] = set()  # every variable the module reads or binds
        self.attributes: Set[str] = set()  # every attribute name it reads or sets
        self.self_stores: Set[str] = set()  # every `self.<name>` it assigns
        self._self_reads: Dict[int, Set[str]] = {}
        self._calls: Dict[int, List[ast.Call]] = {}  # `self.<name>(...)` calls, by statement
        stack: List[Tuple[ast.AST, Optional[ast.stmt]]] = [(tree, None)]
        while stack:
            node, owner = stack.pop()
            if isinstance(node, ast.stmt):
                owner = node
                self._self_reads[id(node)] = set()
            elif isinstance(node, ast.Name):
                self.names.add(node.id)
            elif isinstance(node, ast.Attribute):
                self.attributes.add(node.attr)
                if isinstance(node.value, ast.Name) and node.value.id == "self" and owner is not None:
                    self._self_reads[id(owner)].add(node.attr)
                    if isinstance(node.ctx, ast.Store):
                        self.self_stores.add(node.attr)
            elif isinstance(node, ast.Call) and owner is not None:
                func = node.func
                if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
                    self._calls.setdefault(id(owner), []).append(node)
            stack.extend((child, owner) for child in ast.iter_child_nodes(node))

    # -- building -------------------------------------------------------------------

    def _pair_block(self, statements: Sequence[cst.BaseStatement], nodes: Sequence[ast.stmt]) -> None:
        position = 0
        for stmt in statements:
            if position >= len(nodes):
                return
            self._ast_of[id(stmt)] = nodes[position]
            if isinstance(stmt, cst.SimpleStatementLine):
                position += len(stmt.body)
                continue
            self._pair_compound(stmt, nodes[position])
            position += 1

    def _pair_suite(self, suite: cst.CSTNode, nodes: Sequence[ast.stmt]) -> None:
        if isinstance(suite, cst.IndentedBlock):
            self._pair_block(suite.body, nodes)

    def _pair_compound(self, stmt: cst.BaseStatement, node: ast.stmt) -> None:
        if isinstance(stmt, cst.If) and isinstance(node, ast.If):
            self._pair_suite(stmt.body, node.body)
            if isinstance(stmt.orelse, cst.If) and node.orelse:
                self._ast_of[id(stmt.orelse)] = node.orelse[0]
                self._pair_compound(stmt.orelse, node.orelse[0])
            elif isinstance(stmt.orelse, cst.Else):
                self._pair_suite(stmt.orelse.body, node.orelse)
            return
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            for handler, ast_handler in zip(stmt.handlers, node.handlers, strict=True):
                self._pair_suite(handler.body, ast_handler.body)
        if isinstance(stmt, cst.Match) and isinstance(node, ast.Match):
            for case, ast_case in zip(stmt.cases, node.cases, strict=True):
                self._pair_suite(case.body, ast_case.body)
            return
        for cst_field, ast_field in _COMPOUND_BLOCKS.get(type(stmt), ()):
            child = getattr(stmt, cst_field)
            if child is None:
                continue
            self._pair_suite(
                child.body if not isinstance(child, cst.BaseSuite) else child,
                getattr(node, ast_field, []),
            )

    # -- queries --------------------------------------------------------------------

    def line(self, stmt: Optional[cst.CSTNode]) -> Optional[int]:
        """The source line of a statement of the indexed module, if it is one."""
        node = self._ast_of.get(id(stmt)) if stmt is not None else None
        return node.lineno if node is not None else None

    def ast_node(self, stmt: cst.CSTNode) -> Optional[ast.stmt]:
        """The stdlib ast of a statement of the indexed module."""
        return self._ast_of.get(id(stmt))

    def self_calls(self, stmt: cst.CSTNode, name: str) -> List[ast.Call]:
        """The calls `self.<name>(...)` in a statement's own code."""
        node = self._ast_of.get(id(stmt))
        return [call for call in self._calls.get(id(node), ()) if call.func.attr == name] if node is not None else []

    def statements_using_self(self, root: cst.CSTNode, attributes: Iterable[str]) -> List[cst.BaseStatement]:
        """The statements under `root` whose own code reads `self.<attr>`, for one of
        `attributes`. A compound statement counts for its header (an `if` test, a `for`
        iterable), never for its body, so each use is reported once, where it is."""
        wanted = set(attributes)
        return [stmt for stmt, node in self._statements(root) if self._reads(node) & wanted]

    def statements_using_name(self, root: cst.CSTNode, name: str) -> List[cst.BaseStatement]:
        """The statements under `root` whose own code reads or binds the name `name`."""
        return [
            stmt
            for stmt, node in self._statements(root)
            if any(
                isinstance(inner, ast.Name) and inner.id == name
                for expr in own_expressions(node)
                for inner in ast.walk(expr)
            )
        ]

    def _statements(self, root: cst.CSTNode) -> List[Tuple[cst.BaseStatement, ast.stmt]]:
        """Every indexed statement under `root` with its ast, in order; kept per root,
        since rules and the shape ask about the same methods many times."""
        found = self._under.get(id(root))
        if found is None:
            found = []
            for stmt in _child_statements(root):
                node = self._ast_of.get(id(stmt))
                if node is not None:
                    found.append((stmt, node))
                found.extend(self._statements(stmt))
            self._under[id(root)] = found
        return found

    def _reads(self, node: ast.stmt) -> Set[str]:
        return self._self_reads.get(id(node), set())


def _child_statements(node: cst.CSTNode) -> List[cst.BaseStatement]:
    children = list(block_statements(node))
    orelse = getattr(node, "orelse", None)
    if isinstance(orelse, cst.If):
        children.append(orelse)
    elif isinstance(orelse, cst.Else):
        children.extend(block_statements(orelse))
    for field in ("handlers", "cases"):
        for part in getattr(node, field, ()) or ():
            children.extend(block_statements(part))
    finalbody = getattr(node, "finalbody", None)
    if finalbody is not None:
        children.extend(block_statements(finalbody))
    return children


def own_expressions(node: ast.stmt) -> List[ast.AST]:
    """The parts of a statement that are not nested statements."""
    if not any(
        isinstance(value, list) and value and isinstance(value[0], ast.stmt) for _, value in ast.iter_fields(node)
    ):
        return [node]
    parts: List[ast.AST] = []
    for _, value in ast.iter_fields(node):
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, ast.AST) and not isinstance(item, (ast.stmt, ast.excepthandler, ast.match_case)):
                parts.append(item)
    return parts
