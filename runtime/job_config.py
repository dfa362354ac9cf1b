"""A job's config: checked against the recipe before any model is built, then pointed
into the job folder.

- `check_config`: every key the recipe reads is there (`required_keys`, read from the
  recipe's code), and the config's loss is for the recipe's family (runtime/families.py).
- `check_dataset_kind`: the job's dataset is of a kind the recipe trains on.
- `job_config`: every output inside the job folder, the job's dataset in place of the
  config's, and, when resuming, the checkpointer pointed at the last save.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from runtime.checkpoints import resume_config
from runtime.datasets import Dataset
from runtime.families import code_names, FAMILY_KINDS, FAMILY_NAMES, loss_family, recipe_family
from runtime.job import JobError, JobPaths


def check_config(recipe: Path, cfg: DictConfig) -> None:
    """Refuse a config that lacks a key the recipe needs (`required_keys`), or that is
    for another family of recipes than this one (its loss says which: a DPO loss for an
    SFT recipe, say)."""
    tree = ast.parse(recipe.read_text(encoding="utf-8"))
    missing = sorted(required_keys(tree) - set(cfg.keys()))
    if missing:
        raise JobError(f"config: missing {', '.join(missing)}, which {recipe.stem} reads")
    family = recipe_family(code_names(tree))
    component = _loss_component(cfg)
    if loss_family(component) != family:
        raise JobError(
            f"config: its loss {component.rsplit('.', 1)[-1] or '(none)'} is for "
            f"{FAMILY_NAMES[loss_family(component)]} recipes, not {FAMILY_NAMES[family]} ones like {recipe.stem}"
        )


def check_dataset_kind(cfg: DictConfig, dataset: Dataset, recipe: str) -> None:
    """Refuse data of another kind than the recipe trains on (its config's loss says)."""
    dataset.check_kind(FAMILY_KINDS[loss_family(_loss_component(cfg))], recipe)


def _loss_component(cfg: DictConfig) -> str:
    loss = cfg.get("loss")
    return str(loss.get("_component_", "")) if isinstance(loss, DictConfig) else ""


def required_keys(tree: ast.AST) -> set:
    """The keys a recipe reads as `cfg.<key>` outside a guard on that key: a read under
    `if cfg.get("key") ...` or `if "key" in cfg` (or after `and` in such a test) is
    optional, as torchtune main reads `cfg.dataset_val`."""
    methods = set(dir(DictConfig))
    required = set()
    for node, guards in _walk_with_guards(tree, frozenset()):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "cfg":
            if node.attr not in methods and node.attr not in guards:
                required.add(node.attr)
    return required


def _walk_with_guards(node: ast.AST, guards: frozenset):
    """Every node, with the config keys the tests of the `if`s (and `and`s) around it check."""
    yield node, guards
    if isinstance(node, (ast.If, ast.IfExp, ast.While)):
        yield from _walk_with_guards(node.test, guards)
        inner = guards | _checked_keys(node.test)
        for child in node.body if isinstance(node.body, list) else [node.body]:
            yield from _walk_with_guards(child, inner)
        for child in node.orelse if isinstance(node.orelse, list) else [node.orelse]:
            yield from _walk_with_guards(child, guards)
        return
    if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.And):
        checked = guards
        for value in node.values:
            yield from _walk_with_guards(value, checked)
            checked = checked | _checked_keys(value)
        return
    for child in ast.iter_child_nodes(node):
        yield from _walk_with_guards(child, guards)


def _checked_keys(test: ast.AST) -> frozenset:
    """Keys a test checks: `cfg.get("key")` (compared or not) and `"key" in cfg`."""
    keys = set()
    for node in ast.walk(test):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "cfg"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            keys.add(node.args[0].value)
        elif (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Constant)
            and isinstance(node.ops[0], ast.In)
            and isinstance(node.comparators[0], ast.Name)
            and node.comparators[0].id == "cfg"
        ):
            keys.add(node.left.value)
    return frozenset(keys)


# Config keys that name where a recipe writes, by section.
_OUTPUT_KEYS = {"metric_logger": "log_dir", "profiler": "output_dir"}


def job_config(
    cfg: DictConfig,
    paths: JobPaths,
    dataset: Optional[Dataset],
    history: Optional[List[dict]],
    recipe: str = "the recipe",
) -> DictConfig:
    """`cfg` with every output inside the job folder, the job's dataset in place of the
    config's, and, when resuming, the checkpointer pointed at the last save."""
    cfg = copy.deepcopy(cfg)
    cfg.output_dir = str(paths.checkpoints)
    for key in list(cfg.keys()):
        section = cfg.get(key)
        if not isinstance(section, DictConfig):
            continue
        if key.endswith("checkpointer") and "output_dir" in section:
            raw = OmegaConf.to_container(section, resolve=False)["output_dir"]
            if not (isinstance(raw, str) and "${output_dir}" in raw):
                section.output_dir = str(paths.checkpoints if key == "checkpointer" else paths.checkpoints / key)
        elif key in _OUTPUT_KEYS and _OUTPUT_KEYS[key] in section:
            section[_OUTPUT_KEYS[key]] = str(paths.logs if key == "metric_logger" else paths.logs / "profiling")
    if dataset is not None:
        check_dataset_kind(cfg, dataset, recipe)
        inject_dataset(cfg, dataset, paths)
    if history is not None:
        cfg = resume_config(cfg, paths, history)
    return cfg


def inject_dataset(cfg: DictConfig, dataset: Dataset, paths: JobPaths) -> None:
    """Put the job's dataset where the config names its training data: `dataset`, or
    `datasets` in recipes that mix datasets. The config then says what the job ran."""
    if isinstance(cfg.get("dataset"), (DictConfig, ListConfig)):
        options = cfg.dataset
        if isinstance(options, ListConfig):
            options = {"packed": any(d.get("packed", False) for d in options)}
        cfg.dataset = {**dataset.builder_config(dict(options)), "cache_dir": str(paths.cache / "datasets")}
    elif isinstance(cfg.get("datasets"), ListConfig):
        options = cfg.get("dataloader") or {}
        cfg.datasets = [{**dataset.mix_entry(dict(options)), "cache_dir": str(paths.cache / "datasets")}]
    else:
        raise JobError("dataset: the config has no `dataset` or `datasets` section for the job's dataset to replace")


def job_dataset_config(cfg: DictConfig) -> DictConfig:
    """The config node of the injected dataset, as the recipe will be given it."""
    return cfg.dataset if "dataset" in cfg else cfg.datasets[0]
