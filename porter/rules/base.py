"""What every porting rule is: it reads the recipe's shape, records edits, checks its work.

A rule owns everything about its porting step:
- NEEDS: the parts of the RecipeShape it reads (a missing part fails the rule, once);
- `find(shape)`: its anchors, or PortError when the shape is one it cannot port safely;
- `edit(shape, anchors, edits)`: its edits, rendered from its own template (TEMPLATE);
- `imports(anchors)`: the imports its code needs;
- `notes(shape, anchors)`: what a reviewer must check, for every edit that moves or
  drops behaviour;
- `check(ported, shape, anchors)`: its post-condition on the ported module.

The pipeline (porter/pipeline.py) runs `find` of every rule before any edit, so a file
fails with all its problems and nothing half-ported. Each rule also runs alone as a
libcst codemod: its codemod face is in porter/codemods/, which calls the pipeline.
"""

from __future__ import annotations

import ast
from typing import Any, ClassVar, List, Optional, Tuple, Union

import libcst as cst

from porter.edits import Edits
from porter.errors import HoleSite
from porter.imports import Needed
from porter.outcomes import Note
from porter.shape import RecipeShape
from runtime.contract import load as load_contract, PORTER, PORTER_RUNTIME_MODULE, RuntimeContract


class PortingRule:
    RULE_ID: ClassVar[str]
    NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]
    NEEDS: ClassVar[Tuple[str, ...]] = ()
    TEMPLATE: ClassVar[Optional[str]] = None

    def __init__(
        self, contract: Union[RuntimeContract, str] = PORTER, runtime_module: str = PORTER_RUNTIME_MODULE
    ) -> None:
        declared = contract if isinstance(contract, RuntimeContract) else load_contract(contract, where="--contract")
        self.contract = declared.with_runtime_module(runtime_module)

    @property
    def label(self) -> str:
        return f"{self.RULE_ID} {self.NAME}"

    def find(self, shape: RecipeShape) -> Any:
        """The rule's anchors, or None when the recipe needs nothing of it."""
        raise NotImplementedError

    def edit(self, shape: RecipeShape, anchors: Any, edits: Edits) -> None:
        raise NotImplementedError

    def imports(self, anchors: Any) -> List[Needed]:
        return []

    def notes(self, shape: RecipeShape, anchors: Any) -> List[Note]:
        """A note for every edit that moves, drops, keeps or changes behaviour (porter/outcomes.py, Note)."""
        return []

    def note(self, line: Optional[int], kind: str, message: str) -> Note:
        return Note(self.RULE_ID, line, kind, message)

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Any) -> List[str]:
        """What is wrong with the ported module, as far as this rule's step goes."""
        return []

    def hole(self, shape: RecipeShape) -> Optional[HoleSite]:
        """Where this rule's step is left as a hole when it cannot be ported safely (an
        assisted port); None: the file is refused instead."""
        return None

    def snippet(self, name: str, depth: int, **arguments: object) -> List[cst.BaseStatement]:
        from porter import snippets

        return snippets.statements(self.TEMPLATE, name, depth, **arguments)
