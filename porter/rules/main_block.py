"""P003 main-block: every `if __name__ == "__main__":` block of the module goes.

The job system imports the recipe and calls `recipe_main`; the script entry point, and
the `sys.exit` it needs, have no place in a generated module. Blocks are found at any
depth outside functions and classes (inside a `try:` or an `if`, either side of `==`);
a block that does more than call `recipe_main`, or one nested in another statement
(which stays, without it), is noted: the job system will not do that work.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

import libcst as cst
import libcst.matchers as m

from porter.edits import Edits
from porter.outcomes import CHANGED, DROPPED, Note
from porter.rules.base import PortingRule
from porter.shape import RecipeShape
from porter.syntax import block_statements, node_code

_MAIN = m.SimpleString(m.MatchIfTrue(lambda v: v.strip("'\"") == "__main__"))
_MAIN_TEST = m.Comparison(
    left=m.Name("__name__"), comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=_MAIN)]
) | m.Comparison(left=_MAIN, comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Name("__name__"))])
# Statements whose blocks still run at import, where a `__main__` block may hide.
_MODULE_LEVEL = (cst.If, cst.Try, cst.TryStar, cst.With, cst.For, cst.While)
# What a plain entry point does: `recipe_main()` or `sys.exit(recipe_main())`.
_RUNS_ENTRY_POINT = m.SimpleStatementLine(
    body=[
        m.Expr(
            value=m.Call(func=m.Name("recipe_main"))
            | m.Call(
                func=m.Attribute(value=m.Name("sys"), attr=m.Name("exit")),
                args=[m.Arg(value=m.Call(func=m.Name("recipe_main")))],
            )
        )
    ]
)


@dataclass(frozen=True)
class Block:
    block: cst.If
    parent: Optional[cst.BaseStatement]  # the statement it is nested in; None at the top
    alone: bool  # the only statement of its block


class MainBlock(PortingRule):
    RULE_ID = "P003"
    NAME = "main-block"
    DESCRIPTION = 'Remove every `if __name__ == "__main__":` block.'

    def find(self, shape: RecipeShape) -> List[Block]:
        return list(_main_blocks(shape.module.body, None))

    def edit(self, shape: RecipeShape, anchors: List[Block], edits: Edits) -> None:
        for found in anchors:
            if found.alone:
                # the only statement of its block: `pass` keeps the block a block
                edits.replace(found.block, [cst.SimpleStatementLine([cst.Pass()])])
            else:
                edits.remove(found.block)

    def notes(self, shape: RecipeShape, anchors: List[Block]) -> List[Note]:
        notes = []
        for found in anchors:
            line = shape.index.line(found.block)
            extra = [stmt for stmt in block_statements(found.block) if not m.matches(stmt, _RUNS_ENTRY_POINT)]
            if found.block.orelse is not None or extra:
                what = node_code(extra[0]).strip().splitlines()[0] if extra else "its `else` branch"
                notes.append(
                    self.note(line, DROPPED, f"the `__main__` block also ran `{what}`; the job system does not")
                )
            if found.parent is not None:
                header = node_code(found.parent).strip().splitlines()[0]
                notes.append(
                    self.note(
                        line,
                        CHANGED,
                        f"this `__main__` block sat inside `{header}` (line {shape.index.line(found.parent)}), "
                        "which stays without it and runs at import; check what it did around the entry point",
                    )
                )
        return notes

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: List[Block]) -> List[str]:
        left = [node for node in _module_level(ported.body) if isinstance(node, ast.If) and _is_main_test(node.test)]
        return [f"`__main__` block left at line {node.lineno} of the output" for node in left]


def _main_blocks(body: Sequence[cst.BaseStatement], parent: Optional[cst.BaseStatement]) -> Iterator[Block]:
    for stmt in body:
        if isinstance(stmt, cst.If) and m.matches(stmt.test, _MAIN_TEST):
            yield Block(stmt, parent, alone=parent is not None and len(body) == 1)
        elif isinstance(stmt, _MODULE_LEVEL):
            # an `elif` tested against `__main__` is not a statement to remove: check() refuses it
            blocks = [
                stmt,
                *getattr(stmt, "handlers", ()),
                getattr(stmt, "orelse", None),
                getattr(stmt, "finalbody", None),
            ]
            for part in blocks:
                if part is not None:
                    yield from _main_blocks(block_statements(part), stmt)


def _module_level(body: List[ast.stmt]):
    for node in body:
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                yield from _module_level([n for n in getattr(node, field, []) if isinstance(n, ast.AST)])


def _is_main_test(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and {ast.unparse(test.left), ast.unparse(test.comparators[0])} in ({"__name__", "'__main__'"},)
    )
