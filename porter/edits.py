"""Statement edits that several rules make to one source, applied in one pass.

Every rule reads the same RecipeShape, whose nodes are the source's own. So rules do
not transform the tree one after another (each would have to find its anchors again in
the last rule's output): they record edits keyed by the source's statements, and
`Edits.apply` rebuilds the module once, walking statements only, never expressions.

Edits to one statement compose in the order rules made them: a rename by one rule and
a replacement by a later one both apply, and statements two rules insert after the same
anchor come in rule order. porter keeps this helper rather than libcst's `deep_replace`
(a copy of the tree around each replaced node) or a transformer (a visit of every node
of the module): a port makes a dozen edits, and one walk of statements serves them all.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, DefaultDict, Dict, List, Sequence, Set, Tuple

import libcst as cst

from porter.syntax import BLOCK_FIELDS, iter_statements, leading_blank_lines

Statements = Sequence[cst.BaseStatement]
Change = Callable[[cst.CSTNode], Sequence[cst.CSTNode]]


class EmptyBlockError(Exception):
    """The edits would leave a block with no statement; a rule should have refused."""

    def __init__(self, node: cst.CSTNode) -> None:
        super().__init__("the edits would leave an empty block")
        self.node = node


class Edits:
    def __init__(self) -> None:
        self._changes: DefaultDict[int, List[Change]] = defaultdict(list)
        self._before: DefaultDict[int, List[cst.BaseStatement]] = defaultdict(list)
        self._after: DefaultDict[int, List[cst.BaseStatement]] = defaultdict(list)
        self._own_lines: Set[int] = set()
        # The statements porter's templates made, each with the source statement it went at.
        self.inserted: List[Tuple[cst.BaseStatement, cst.BaseStatement]] = []

    def change(self, stmt: cst.BaseStatement, change: Callable[[cst.BaseStatement], cst.BaseStatement]) -> None:
        """Rewrite `stmt` (after the edits inside it), keeping it one statement."""
        self._changes[id(stmt)].append(lambda node: [change(node)])

    def replace(self, stmt: cst.BaseStatement, replacement: Statements, made: bool = True) -> None:
        """Replace `stmt` by `replacement`, which may be empty. The statement's leading
        blank lines and comments go to the first replacement statement. `made`: the
        replacement is porter's code, not the recipe's own moved."""

        def replacing(node: cst.BaseStatement) -> Statements:
            if not replacement:
                return []
            first, *rest = replacement
            return [first.with_changes(leading_lines=node.leading_lines), *rest]

        if made:
            self.inserted.extend((new, stmt) for new in replacement)
        self._changes[id(stmt)].append(replacing)

    def remove(self, stmt: cst.BaseStatement) -> None:
        self.replace(stmt, [])

    def insert_before(
        self, stmt: cst.BaseStatement, statements: Statements, own_lines: bool = False, made: bool = True
    ) -> None:
        """Insert right above `stmt`, below its blank lines and above its comment block:
        the comments stay with the code they describe. `own_lines`: the inserted
        statements keep their leading lines, and `stmt` its own (methods between methods)."""
        self._before[id(stmt)].extend(statements)
        if made:
            self.inserted.extend((new, stmt) for new in statements)
        if own_lines:
            self._own_lines.add(id(stmt))

    def insert_after(self, stmt: cst.BaseStatement, statements: Statements) -> None:
        self._after[id(stmt)].extend(statements)
        self.inserted.extend((new, stmt) for new in statements)

    # -- applying --------------------------------------------------------------------

    def apply(self, module: cst.Module) -> cst.Module:
        edited = set(self._changes) | set(self._before) | set(self._after)
        if not edited:
            return module
        self._holding: Set[int] = set()  # compound statements with an edit inside
        for stmt, ancestors in iter_statements(module):
            if id(stmt) in edited:
                self._holding.update(id(ancestor) for ancestor in ancestors)
        return module.with_changes(body=self._block(module.body, module))

    def _block(self, statements: Statements, owner: cst.CSTNode) -> List[cst.BaseStatement]:
        out: List[cst.BaseStatement] = []
        for stmt in statements:
            before = self._before.get(id(stmt), ())
            rebuilt = self._statement(stmt)
            if before and id(stmt) in self._own_lines:
                out.extend(before)
            elif before:
                # Blank lines stay above the inserted code, comments with their statement.
                head = rebuilt[0] if rebuilt else stmt
                blank, comments = leading_blank_lines(head)
                out.append(before[0].with_changes(leading_lines=blank))
                out.extend(before[1:])
                if rebuilt:
                    rebuilt = [rebuilt[0].with_changes(leading_lines=comments), *rebuilt[1:]]
            out.extend(rebuilt)
            out.extend(self._after.get(id(stmt), ()))
        if not out and statements:
            raise EmptyBlockError(owner)
        return out

    def _statement(self, stmt: cst.BaseStatement, rebuild: bool = False) -> List[cst.BaseStatement]:
        node = self._children(stmt) if rebuild or id(stmt) in self._holding else stmt
        results = [node]
        for change in self._changes.get(id(stmt), ()):
            results = [new for old in results for new in change(old)]
        return results

    def _children(self, node: cst.CSTNode) -> cst.CSTNode:
        """`node` with every statement block under it rebuilt."""
        if isinstance(node, (cst.IndentedBlock, cst.Module)):
            return node.with_changes(body=self._block(node.body, node))
        changes: Dict[str, object] = {}
        for field in BLOCK_FIELDS.get(type(node), ()):
            child = getattr(node, field)
            if child is None:
                continue
            if isinstance(child, (list, tuple)):
                changes[field] = [self._children(item) for item in child]
            elif isinstance(child, cst.If):  # an `elif`: the walk of statements passes it by
                (changes[field],) = self._statement(child, rebuild=True)
            elif isinstance(child, cst.BaseSuite):
                changes[field] = self._children(child) if isinstance(child, cst.IndentedBlock) else child
            else:
                changes[field] = self._children(child)
        return node.with_changes(**changes) if changes else node
