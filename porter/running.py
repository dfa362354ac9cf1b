"""`porter run`, from what the command line asked to what the runtime launches: the
recipe file, the config with its `porter:` section, and the node's part of the job
(runtime/launch.py `supervise`). `porter run` and `porter demo` both come through
`run_job`; the CLI only parses what was asked and prints how it ended.
"""

from __future__ import annotations

from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from porter.outcomes import CONVERTED, UNCHANGED
from porter.settings import Settings
from porter.sources import find_recipe, installed_folders, installed_recipes_dir, installed_source
from runtime.job import JobError, JobPaths
from runtime.lifecycle import Outcome


@dataclass(frozen=True)
class RunRequest:
    """What `porter run` was asked to run."""

    recipe: str  # a generated recipe's name or path (runtime/launch.py loads it)
    config: str  # a config file, or an installed torchtune config's name
    job_id: str
    user_id: str
    recipes_dir: Path  # where generated recipes are, and go when converted on the fly
    # The flags' `porter:` settings (output_root always), and which of them the command
    # line gave: those beat the config's own `porter:` keys, the rest do not.
    flags: Dict[str, Any] = field(default_factory=dict)
    given: AbstractSet[str] = frozenset()
    arguments: Sequence[str] = ()  # torchrun's options and key=value overrides, as typed
    dataset: Optional[str] = None
    verbose: bool = False
    resume: Optional[str] = None  # auto, never, or None: auto when a scheduler restarted the job


def run_job(request: RunRequest, generation: Settings, warn: Callable[[str], None]) -> Outcome:
    """This node's part of the job, to its end. A JobError refuses it before it starts
    (on node 0 of several, the other nodes are told); a StorageError says the output
    root cannot be reached. `warn` says what may not work, once the inputs are read."""
    from runtime.cluster import NodePlace, TorchrunOptions
    from runtime.launch import cancel_on_signals, Launch, supervise
    from runtime.lifecycle import refuse_everywhere
    from runtime.system import torchao_extension_problem

    output_root = str(request.flags["output_root"])
    paths = JobPaths.for_job(Path(output_root), request.user_id, request.job_id)  # bad ids, before anything
    node = None
    try:
        torchrun, overrides = TorchrunOptions.split(request.arguments)
        node = NodePlace.of(torchrun)
        recipe = generated_recipe(request.recipe, request.recipes_dir, generation)
        cfg = load_config(request.config, overrides)
        cfg.porter = porter_section(request.flags, request.given, cfg.get("porter"))
        launch = Launch(
            recipe=recipe,
            job_id=request.job_id,
            user_id=request.user_id,
            config=cfg,
            dataset_source=request.dataset,
            torchrun=torchrun,
            node=node,
            verbose=request.verbose,
            resume_if_possible=request.resume == "auto" or (request.resume is None and _restarted_by_a_scheduler()),
        )
        problem = torchao_extension_problem()
        if problem is not None:
            warn(problem)
        cancel_on_signals()
        return supervise(launch)
    except JobError as error:
        if node is not None and node.owner and node.nnodes > 1 and "://" not in output_root:
            # Refused before the job started: the other nodes, waiting for it, stop too.
            refuse_everywhere(paths, str(error))
        raise


def generated_recipe(recipe: str, recipes_dir: Path, settings: Settings) -> Path:
    """A generated recipe's file: a path as given, or `<recipes_dir>/<name>.py`; an
    installed torchtune recipe (by name, when `recipes_dir` lacks it, or by path) is
    converted into `recipes_dir` with `settings` first."""
    try:
        path = find_recipe(recipe, {str(recipes_dir): recipes_dir, **installed_folders()})
    except FileNotFoundError as error:
        raise JobError(str(error)) from error
    if path.is_dir():
        raise JobError(f"{recipe}: a folder, not a recipe file")
    source = installed_source(path)
    if source is None:
        return path
    from porter.convert import convert, OutputFolderError  # the converter loads only when it is needed

    try:
        report = convert([source], recipes_dir, settings=settings)[0]
    except OutputFolderError as error:
        raise JobError(f"--recipes-dir: {error}") from error
    if report.status not in (CONVERTED, UNCHANGED):
        raise JobError(f"{recipe}: cannot be converted: {report.reason}")
    return recipes_dir / source.output_name


def porter_section(flags: dict, given: AbstractSet[str], config: object) -> dict:
    """The job's `porter:` section: the flags' defaults, then the config's own `porter:`
    keys, then the flags given on the command line, which win."""
    own = OmegaConf.to_container(config) if isinstance(config, DictConfig) else {}
    return {**flags, **own, **{name: flags[name] for name in given}}


def _restarted_by_a_scheduler() -> bool:
    from runtime.cluster import scheduler_job

    scheduled = scheduler_job()
    return scheduled is not None and scheduled.restart_count > 0


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
