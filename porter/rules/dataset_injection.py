"""P008 dataset-injection: `_setup_data` uses the job's dataset when one is given.

The `if isinstance(cfg_dataset, ListConfig):` branch of `_setup_data` becomes the
`elif` of a new first branch that takes the dataset the runtime injected
(`self.dataset`) and reads `packed` from the dataset config where the recipe uses
`packed`. Older recipes (torchtune 0.1) have no ListConfig branch: their one
`ds = config.instantiate(cfg_dataset, ...)` becomes the `else` of that branch. Recipes
that also build a validation set with `_setup_data` (torchtune main) take the job's
dataset only for the training set's config: the one the runtime says it replaced
(`self.job_dataset_config`), or, under a contract without it, `self.cfg.dataset`.

A recipe that mixes datasets (dev/lora_finetune_distributed_multi_dataset) loops over
its dataset configs, filling a `datasets` and a `weights` dict. Right above that loop
the job's dataset becomes the only entry, and the loop is given no configs.
"""

from __future__ import annotations

import ast
from typing import List

import libcst as cst

import libcst.matchers as m

from porter.edits import Edits
from porter.errors import PortError
from porter.rules.base import PortingRule
from porter.shape import DatasetSetup, RecipeShape, SETUP_DATA
from porter.syntax import METHOD_BODY_DEPTH
from porter.verify import ported_method


class DatasetInjection(PortingRule):
    RULE_ID = "P008"
    NAME = "dataset-injection"
    DESCRIPTION = "In _setup_data, use the injected dataset first; the config's branch becomes its elif."
    NEEDS = (SETUP_DATA,)
    TEMPLATE = "dataset_injection.py.j2"

    def find(self, shape: RecipeShape) -> DatasetSetup:
        anchors = shape.dataset
        if anchors.kind != "mix" and anchors.several_setups and self._training_config(shape) is None:
            raise PortError(
                self.RULE_ID,
                f"`_setup_data` builds several sets; porter tells the training set by the config node the runtime "
                f"replaced, which the runtime contract `{self.contract.name}` gives neither as `self.job_dataset_config` "
                "nor as `self.cfg.dataset` (with a `_setup_data(cfg.dataset, ...)` call)",
                anchors.method,
            )
        return anchors

    def _training_config(self, shape: RecipeShape):
        """The expression of the config node the job's dataset replaced, as this
        contract gives it; None when it gives none."""
        if self.contract.provides("job_dataset_config"):
            return "self.job_dataset_config"
        calls = shape.index.statements_using_self(shape.cls, ["_setup_data"])
        if self.contract.provides("cfg") and any(m.findall(call, m.Attribute(value=m.Name("cfg"), attr=m.Name("dataset"))) for call in calls):
            return "self.cfg.dataset"
        return None

    def edit(self, shape: RecipeShape, anchors: DatasetSetup, edits: Edits) -> None:
        if anchors.kind == "mix":
            edits.insert_before(
                anchors.anchor,
                self.snippet("mix_branch", depth=METHOD_BODY_DEPTH, cfg_datasets=anchors.cfg_dataset, **anchors.mix),
            )
            return
        (injected,) = self.snippet(
            "branch",
            depth=METHOD_BODY_DEPTH,
            cfg_dataset=anchors.cfg_dataset,
            variable=anchors.dataset_variable,
            assigns_packed=anchors.assigns_packed,
            training_config=self._training_config(shape) if anchors.several_setups else None,
        )

        def inject(node: cst.BaseStatement) -> cst.If:
            original = node.with_changes(leading_lines=())
            # The ListConfig branch becomes an `elif`; an older recipe's one statement, the `else`.
            orelse = original if anchors.kind == "list-config" else cst.Else(body=cst.IndentedBlock(body=[original]))
            return injected.with_changes(leading_lines=node.leading_lines, orelse=orelse)

        edits.change(anchors.anchor, inject)

    def notes(self, shape: RecipeShape, anchors: DatasetSetup) -> List[str]:
        line = shape.index.line(anchors.anchor)
        if anchors.kind == "mix":
            return [f"line {line}: the job's dataset replaces every dataset of the mix"]
        if anchors.several_setups:
            return [
                f"line {line}: `_setup_data` also builds another set (validation): the job's dataset replaces the "
                f"training set only, the set whose config is `{self._training_config(shape)}`"
            ]
        return []

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: DatasetSetup) -> List[str]:
        method = ported_method(ported, shape, anchors.method)
        if method is not None and any(
            isinstance(node, ast.Attribute) and node.attr == "dataset" and isinstance(node.value, ast.Name) and node.value.id == "self"
            for node in ast.walk(method)
        ):
            return []
        return [f"`{anchors.method.name.value}` does not take the job's dataset"]
