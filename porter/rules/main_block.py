"""P003 main-block: the `if __name__ == "__main__":` block goes.

The job system imports the recipe and calls `recipe_main`; the script entry point, and
the `sys.exit` it needs, have no place in a generated module.
"""

from __future__ import annotations

from typing import List, Optional

import libcst as cst
import libcst.matchers as m

from porter.errors import PortError
from porter.rules.base import PortingRule
from porter.syntax import replace_statement

_MAIN_TEST = m.Comparison(
    left=m.Name("__name__"),
    comparisons=[
        m.ComparisonTarget(
            operator=m.Equal(), comparator=m.SimpleString(m.MatchIfTrue(lambda v: v[1:-1] == "__main__"))
        )
    ],
)


class MainBlock(PortingRule):
    RULE_ID = "P003"
    NAME = "main-block"
    DESCRIPTION = 'Remove the `if __name__ == "__main__":` block.'

    def find(self, tree: cst.Module) -> Optional[cst.If]:
        blocks: List[cst.If] = [
            stmt
            for stmt in tree.body
            if isinstance(stmt, cst.If) and m.matches(stmt.test, _MAIN_TEST)
        ]
        if len(blocks) > 1:
            raise PortError(
                self.RULE_ID, "found more than one `__main__` block", blocks[1]
            )
        return blocks[0] if blocks else None

    def apply(self, tree: cst.Module, anchors: cst.If) -> cst.Module:
        return replace_statement(tree, anchors, [])
