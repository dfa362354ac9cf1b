"""P008 dataset-injection: `_setup_data` uses the job's dataset when one is given.

The `if isinstance(cfg_dataset, ListConfig):` branch of `_setup_data` becomes the
`elif` of a new first branch, templates/dataset_branch.py.j2, that takes the dataset
the runtime injected (`self.dataset`) and reads `packed` from the dataset config.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import recipe_class
from porter.rules.base import PortingRule
from porter.syntax import block_statements, method, METHOD_BODY_DEPTH, replace_statement

SETUP_DATA = "_setup_data"
LIST_CONFIG_TEST = m.Call(
    func=m.Name("isinstance"), args=[m.Arg(value=m.Name()), m.Arg(value=m.Name("ListConfig"))]
)


@dataclass
class Anchors:
    branch: cst.If
    cfg_dataset: str
    assigns_packed: bool  # the recipe reads `packed`, so the new branch sets it too


class DatasetInjection(PortingRule):
    RULE_ID = "P008"
    NAME = "dataset-injection"
    DESCRIPTION = (
        "In _setup_data, use the injected dataset first; the ListConfig branch "
        "becomes its elif."
    )

    def find(self, tree: cst.Module) -> Anchors:
        cls = recipe_class(tree, self.RULE_ID)
        setup_data = method(cls, SETUP_DATA)
        if setup_data is None:
            raise PortError(
                self.RULE_ID, f"class {cls.name.value} has no `{SETUP_DATA}` method", cls
            )
        branches = [
            stmt
            for stmt in block_statements(setup_data)
            if isinstance(stmt, cst.If) and m.matches(stmt.test, LIST_CONFIG_TEST)
        ]
        if len(branches) != 1:
            raise PortError(
                self.RULE_ID,
                "expected one `if isinstance(<dataset config>, ListConfig):` directly "
                f"in `{SETUP_DATA}`, found {len(branches)}",
                branches[1] if branches else setup_data,
            )
        branch = branches[0]
        assigns_packed = any(
            m.findall(stmt, m.AssignTarget(target=m.Name("packed")))
            for stmt in block_statements(branch)
        )
        return Anchors(branch, branch.test.args[0].value.value, assigns_packed)

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        (injected,) = snippets.statements(
            "dataset_branch.py.j2",
            depth=METHOD_BODY_DEPTH,
            cfg_dataset=anchors.cfg_dataset,
            assigns_packed=anchors.assigns_packed,
        )
        injected = injected.with_changes(
            leading_lines=anchors.branch.leading_lines,
            orelse=anchors.branch.with_changes(leading_lines=()),
        )
        return replace_statement(tree, anchors.branch, [injected])
