"""What `porter run` needs before the runtime takes over: the recipe file and the config."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Sequence

from omegaconf import DictConfig, OmegaConf

from porter.outcomes import CONVERTED, UNCHANGED
from porter.settings import Settings
from porter.sources import find_recipe, installed_recipes_dir, recipe_name
from runtime.job import JobError


def resolve_recipe(recipe: str, recipes_dir: Path, settings: Settings) -> Path:
    """A generated recipe's file: a path as given, or `<recipes_dir>/<name>.py`, which is
    converted with `settings` from the installed torchtune's recipe of that name when
    missing."""
    path = Path(recipe)
    if path.is_file():
        return path
    if recipe.endswith(".py"):
        raise JobError(f"{recipe}: no such recipe file")
    generated = recipes_dir / f"{recipe_name(recipe)}.py"
    if generated.is_file():
        return generated
    try:
        sources = find_recipe(recipe)
    except FileNotFoundError as error:
        raise JobError(
            f"{recipe}: no generated recipe in {recipes_dir} and no installed torchtune recipe of that name"
        ) from error
    from porter.convert import convert, OutputFolderError  # the converter loads only when it is needed

    try:
        report = convert(sources, recipes_dir, settings=settings)[0]
    except OutputFolderError as error:
        raise JobError(f"--recipes-dir: {error}") from error
    if report.status not in (CONVERTED, UNCHANGED):
        raise JobError(f"{recipe}: cannot be converted: {report.reason}")
    return generated


def load_config(config: str, overrides: Sequence[str]) -> DictConfig:
    """A config file, or an installed torchtune config by name (`llama3_2/1B_full`),
    with `key=value` overrides applied as `tune run` applies them."""
    from torchtune.config._utils import _merge_yaml_and_cli_args

    path = Path(config)
    if not path.is_file():
        path = installed_recipes_dir() / "configs" / f"{config.removesuffix('.yaml')}.yaml"
        if not path.is_file():
            raise JobError(f"{config}: no such config file, nor an installed torchtune config of that name")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:
        raise JobError(f"{path}: not a YAML config: {error}".splitlines()[0]) from error
    if not isinstance(loaded, DictConfig):
        raise JobError(f"{path}: a config must be a mapping at the top level")
    try:
        return _merge_yaml_and_cli_args(
            Namespace(**OmegaConf.to_container(loaded)), [_added(loaded, o) for o in overrides]
        )
    except ValueError as error:
        raise JobError(f"override: {error}") from error


def _added(config: DictConfig, override: str) -> str:
    """`+key=value` as Hydra reads it: add a key the config lacks. torchtune has no `+`
    and would keep a key named "+key" that nothing reads."""
    if not override.startswith("+"):
        return override
    key = override[1:].split("=", 1)[0]
    if OmegaConf.select(config, key, default=None) is not None:
        raise JobError(f"override {override}: {key} is already in the config; override it without '+'")
    return override[1:]
