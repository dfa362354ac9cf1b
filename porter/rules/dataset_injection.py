"""P008 dataset-injection: `_setup_data` uses the job's dataset when one is given.

The `if isinstance(cfg_dataset, ListConfig):` branch of `_setup_data` becomes the
`elif` of a new first branch, templates/dataset_branch.py.j2, that takes the dataset
the runtime injected (`self.dataset`) and reads `packed` from the dataset config where
the recipe uses `packed`. Recipes that also build a validation set with `_setup_data`
(torchtune main) take the job's dataset only for the training set's config.

A recipe that mixes datasets (dev/lora_finetune_distributed_multi_dataset) has no
ListConfig branch: it loops over its dataset configs, filling a `datasets` and a
`weights` dict. Right above that loop the job's dataset becomes the only entry, and
the loop is given no configs (templates/dataset_mix_branch.py.j2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import libcst as cst
import libcst.matchers as m

from porter import snippets
from porter.errors import PortError
from porter.recipe import recipe_class
from porter.rules.base import PortingRule
from porter.syntax import block_statements, leading_blank_lines, method, METHOD_BODY_DEPTH, replace_statement

SETUP_DATA = "_setup_data"
LIST_CONFIG_TEST = m.Call(
    func=m.Name("isinstance"), args=[m.Arg(value=m.Name()), m.Arg(value=m.Name("ListConfig"))]
)


@dataclass
class Anchors:
    anchor: cst.BaseStatement  # the ListConfig branch, or the loop over dataset configs
    cfg_dataset: str
    assigns_packed: bool = False  # the recipe reads `packed`, so the new branch sets it too
    several_setups: bool = False  # `_setup_data` also builds a validation set
    mix: Optional[dict] = None  # for a dataset mix: the names of the datasets and weights dicts


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
            raise PortError(self.RULE_ID, f"class {cls.name.value} has no `{SETUP_DATA}` method", cls)
        branches = [
            stmt
            for stmt in block_statements(setup_data)
            if isinstance(stmt, cst.If) and m.matches(stmt.test, LIST_CONFIG_TEST)
        ]
        if not branches:
            mix = _dataset_mix(setup_data)
            if mix is not None:
                return mix
        if len(branches) != 1:
            raise PortError(
                self.RULE_ID,
                "expected one `if isinstance(<dataset config>, ListConfig):` directly "
                f"in `{SETUP_DATA}`, found {len(branches)}",
                branches[1] if branches else setup_data,
            )
        branch = branches[0]
        callers = self.index(tree).statements_using_self(cls, [SETUP_DATA])
        return Anchors(
            anchor=branch,
            cfg_dataset=branch.test.args[0].value.value,
            assigns_packed=any(
                m.findall(stmt, m.AssignTarget(target=m.Name("packed"))) for stmt in block_statements(branch)
            ),
            several_setups=len(callers) > 1,
        )

    def notes(self, anchors: Anchors, index) -> List[str]:
        line = index.line(anchors.anchor)
        if anchors.mix is not None:
            return [f"line {line}: the job's dataset replaces every dataset of the mix"]
        if anchors.several_setups:
            return [f"line {line}: `_setup_data` also builds another set (validation): the job's dataset replaces the training set only"]
        return []

    def apply(self, tree: cst.Module, anchors: Anchors) -> cst.Module:
        if anchors.mix is not None:
            statements = snippets.statements(
                "dataset_mix_branch.py.j2", depth=METHOD_BODY_DEPTH, cfg_datasets=anchors.cfg_dataset, **anchors.mix
            )
            blank, comments = leading_blank_lines(anchors.anchor)
            statements[0] = statements[0].with_changes(leading_lines=blank)
            return replace_statement(
                tree, anchors.anchor, [*statements, anchors.anchor.with_changes(leading_lines=comments)]
            )
        (injected,) = snippets.statements(
            "dataset_branch.py.j2",
            depth=METHOD_BODY_DEPTH,
            cfg_dataset=anchors.cfg_dataset,
            assigns_packed=anchors.assigns_packed,
            several_setups=anchors.several_setups,
        )
        injected = injected.with_changes(
            leading_lines=anchors.anchor.leading_lines,
            orelse=anchors.anchor.with_changes(leading_lines=()),
        )
        return replace_statement(tree, anchors.anchor, [injected])


def _dataset_mix(setup_data: cst.FunctionDef) -> Optional[Anchors]:
    """The loop `for ... in enumerate(<param>)` over dataset configs that fills two
    dicts, `<datasets>[key] = load_hf_dataset(...)` and `<weights>[key] = ...`."""
    params = {param.name.value for param in setup_data.params.params}
    for stmt in block_statements(setup_data):
        if not (isinstance(stmt, cst.For) and m.matches(stmt.iter, m.Call(func=m.Name("enumerate")))):
            continue
        iterated = stmt.iter.args[0].value
        if not (isinstance(iterated, cst.Name) and iterated.value in params):
            continue
        filled = {}
        for assign in m.findall(stmt.body, m.Assign(targets=[m.AssignTarget(target=m.Subscript(value=m.Name()))])):
            value = assign.value
            role = "datasets" if m.matches(value, m.Call(func=m.Name("load_hf_dataset"))) else "weights"
            filled.setdefault(role, assign.targets[0].target.value.value)
        if set(filled) == {"datasets", "weights"}:
            return Anchors(anchor=stmt, cfg_dataset=iterated.value, mix=filled)
    return None
