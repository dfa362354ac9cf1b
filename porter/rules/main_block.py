"""P003 main-block: the `if __name__ == "__main__":` block goes.

The job system imports the recipe and calls `recipe_main`; the script entry point, and
the `sys.exit` it needs, have no place in a generated module. A block that does more
than call `recipe_main` is noted: the job system will not do that work.
"""

from __future__ import annotations

import ast
from typing import List, Optional

import libcst as cst
import libcst.matchers as m

from porter.edits import Edits
from porter.errors import PortError
from porter.rules.base import PortingRule
from porter.shape import RecipeShape
from porter.syntax import block_statements, node_code

_MAIN_TEST = m.Comparison(
    left=m.Name("__name__"),
    comparisons=[
        m.ComparisonTarget(
            operator=m.Equal(), comparator=m.SimpleString(m.MatchIfTrue(lambda v: v[1:-1] == "__main__"))
        )
    ],
)
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


class MainBlock(PortingRule):
    RULE_ID = "P003"
    NAME = "main-block"
    DESCRIPTION = 'Remove the `if __name__ == "__main__":` block.'

    def find(self, shape: RecipeShape) -> Optional[cst.If]:
        blocks = [stmt for stmt in shape.module.body if isinstance(stmt, cst.If) and m.matches(stmt.test, _MAIN_TEST)]
        if len(blocks) > 1:
            raise PortError(self.RULE_ID, "found more than one `__main__` block", blocks[1])
        return blocks[0] if blocks else None

    def edit(self, shape: RecipeShape, anchors: cst.If, edits: Edits) -> None:
        edits.remove(anchors)

    def notes(self, shape: RecipeShape, anchors: cst.If) -> List[str]:
        extra = [stmt for stmt in block_statements(anchors) if not m.matches(stmt, _RUNS_ENTRY_POINT)]
        if anchors.orelse is None and not extra:
            return []
        what = node_code(extra[0]).strip().splitlines()[0] if extra else "its `else` branch"
        return [f"line {shape.index.line(anchors)}: the `__main__` block also ran `{what}`; the job system does not"]

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: cst.If) -> List[str]:
        if any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in ported.body):
            return ["`__main__` block left"]
        return []
