"""The dataset `_setup_data` builds: upstream's ListConfig branch, an older recipe's single
`config.instantiate`, a mix of configs, or, for any other shape, the statements that make
the set the data loader receives (porter/dataset_flow.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import libcst as cst
import libcst.matchers as m

from porter.dataset_flow import dataset_flow
from porter.index import SourceIndex
from porter.shape.parts import Missing, Problem
from porter.shape.recipe import RecipeClass, SETUP_DATA_METHODS
from porter.syntax import block_statements, dotted_name, single_small_statement

_LIST_CONFIG_TEST = m.Call(func=m.Name("isinstance"), args=[m.Arg(value=m.Name()), m.Arg(value=m.Name("ListConfig"))])


@dataclass(frozen=True)
class DatasetSetup:
    method: cst.FunctionDef
    kind: str  # "list-config", "single" (older recipes), "mix", or "flow" (porter/dataset_flow.py)
    anchor: cst.BaseStatement  # the ListConfig branch, the instantiating statement, the loop of a mix, or flow's first
    cfg_dataset: str  # the dataset config's name (the configs' in a mix)
    dataset_variable: str = "ds"
    assigns_packed: bool = False  # the recipe reads `packed` the branch sets
    several_setups: bool = False  # `_setup_data` also builds a validation set
    mix: Optional[Dict[str, str]] = None  # the names of a mix's datasets and weights dicts
    # What the job's dataset replaces, in order (the anchor alone but in a flow).
    replaced: Tuple[cst.BaseStatement, ...] = ()
    loader: Optional[cst.BaseStatement] = None  # flow: the statement that hands the set to the loader

    def __post_init__(self) -> None:
        if not self.replaced:
            object.__setattr__(self, "replaced", (self.anchor,))

    @property
    def becomes_elif(self) -> bool:
        """The replaced `if` chain becomes the `elif` of the job's dataset (else: the `else`)."""
        return self.kind == "list-config" or (
            self.kind == "flow" and len(self.replaced) == 1 and isinstance(self.anchor, cst.If)
        )


def read_dataset_setup(recipe: RecipeClass, index: SourceIndex) -> DatasetSetup:
    names = [name for name in SETUP_DATA_METHODS if name in recipe.methods]
    if not names:
        raise Missing(
            Problem(f"class {recipe.cls.name.value} has no `_setup_data` (or `setup_data`) method", recipe.cls)
        )
    setup_data = recipe.methods[names[0]]
    several = len(index.statements_using_self(recipe.cls, [names[0]])) > 1
    body = list(block_statements(setup_data))
    branches = [s for s in body if isinstance(s, cst.If) and m.matches(s.test, _LIST_CONFIG_TEST)]
    if len(branches) == 1:
        (branch,) = branches
        variable = _dataset_variable(branch)
        if variable is None:
            raise Missing(Problem("the ListConfig branch and its `else` assign no common dataset variable", branch))
        return DatasetSetup(
            setup_data,
            "list-config",
            branch,
            branch.test.args[0].value.value,
            dataset_variable=variable,
            assigns_packed=any(
                m.findall(stmt, m.AssignTarget(target=m.Name("packed"))) for stmt in block_statements(branch)
            ),
            several_setups=several,
        )
    if not branches:
        params = [p.name.value for p in setup_data.params.params]
        mix = _dataset_mix(setup_data, params)
        if mix is not None:
            return mix
        singles = [s for s in body if _instantiated_config(s, params) is not None]
        if len(singles) == 1:
            variable, cfg = _instantiated_config(singles[0], params)
            return DatasetSetup(
                setup_data, "single", singles[0], cfg, dataset_variable=variable, several_setups=several
            )
    flow = dataset_flow(setup_data, index)
    config = _config_parameter(setup_data)
    if flow is not None and config is not None:
        return DatasetSetup(
            setup_data,
            "flow",
            flow.replaced[0],
            config,
            dataset_variable=flow.variable,
            assigns_packed=any(m.findall(stmt, m.AssignTarget(target=m.Name("packed"))) for stmt in flow.replaced),
            several_setups=several,
            replaced=flow.replaced,
            loader=flow.loader,
        )
    raise Missing(
        Problem(
            "expected, directly in `"
            + setup_data.name.value
            + "`, one `if isinstance(<dataset config>, ListConfig):`, or "
            "one `ds = config.instantiate(<dataset config>, ...)`, or a loop over the dataset configs filling a "
            "`datasets` and a `weights` dict (a mix), or a set handed to a data loader or sampler that a statement "
            f"of it binds, found {len(branches)} ListConfig branches",
            branches[1] if len(branches) > 1 else setup_data,
        )
    )


def _dataset_variable(branch: cst.If) -> Optional[str]:
    """The name both the ListConfig branch and its `else` assign."""
    if not isinstance(branch.orelse, cst.Else):
        return None

    def assigned(block) -> List[str]:
        names = []
        for stmt in block_statements(block):
            small = single_small_statement(stmt)
            if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call):
                names += [t.target.value for t in small.targets if isinstance(t.target, cst.Name)]
        return names

    common = [name for name in assigned(branch.orelse) if name in assigned(branch)]
    return "ds" if "ds" in common else (common[0] if common else None)


def _instantiated_config(stmt: cst.BaseStatement, params: Sequence[str]) -> Optional[Tuple[str, str]]:
    """(variable, config) for a statement `variable = config.instantiate(config, ...)` whose
    config is a parameter of `_setup_data`."""
    small = single_small_statement(stmt)
    if not (
        isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name)
    ):
        return None
    value = small.value
    if not (isinstance(value, cst.Call) and dotted_name(value.func) == "config.instantiate" and value.args):
        return None
    first = value.args[0].value
    if isinstance(first, cst.Name) and first.value in params:
        return small.targets[0].target.value, first.value
    return None


def _config_parameter(setup_data: cst.FunctionDef) -> Optional[str]:
    """The parameter `_setup_data` is given the dataset config in: the first after `self`."""
    params = [p.name.value for p in setup_data.params.params]
    return params[1] if len(params) > 1 else None


def _dataset_mix(setup_data: cst.FunctionDef, params: Sequence[str]) -> Optional[DatasetSetup]:
    """The loop `for ... in enumerate(<param>)` over dataset configs that fills two
    dicts, `<datasets>[key] = load_hf_dataset(...)` and `<weights>[key] = ...`."""
    for stmt in block_statements(setup_data):
        if not (isinstance(stmt, cst.For) and m.matches(stmt.iter, m.Call(func=m.Name("enumerate")))):
            continue
        iterated = stmt.iter.args[0].value
        if not (isinstance(iterated, cst.Name) and iterated.value in params):
            continue
        filled: Dict[str, str] = {}
        for assign in m.findall(stmt.body, m.Assign(targets=[m.AssignTarget(target=m.Subscript(value=m.Name()))])):
            role = "datasets" if m.matches(assign.value, m.Call(func=m.Name("load_hf_dataset"))) else "weights"
            filled.setdefault(role, assign.targets[0].target.value.value)
        if set(filled) == {"datasets", "weights"}:
            return DatasetSetup(setup_data, "mix", stmt, iterated.value, mix=filled)
    return None
