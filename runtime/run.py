"""run_recipe: runs a ported recipe as a job.

Points every output of the config into the job folder, builds the recipe, runs setup,
train, the checkpoint policy and cleanup, inside the job's lifecycle
(runtime/lifecycle.py): under `porter run` (`porter.supervised`) the supervisor owns
it, otherwise rank 0 does. A failure leaves its report in the job folder and is
re-raised, so the process exits non-zero.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import os
from pathlib import Path
from typing import List, Optional, Type

from omegaconf import DictConfig, ListConfig, OmegaConf

from runtime.checkpoints import CheckpointPolicy, resume_config
from runtime.cluster import NodePlace, scheduler_job
from runtime.datasets import Dataset, expected_kinds
from runtime.job import JobError, JobPaths, private_files
from runtime.lifecycle import Lifecycle
from runtime.recipe_base import JobContext, RecipeBase
from runtime.secrets import redact_url, secret_values
from runtime.settings import RuntimeSettings
from runtime.storage import job_folder
from runtime.sinks import Sink, WebhookSink
from runtime.system import package_version, process_rank_and_world
from runtime.trackers import name_runs


def run_recipe(
    recipe_class: Type[RecipeBase],
    job_id: str,
    user_id: str,
    cfg: DictConfig,
    dataset: Optional[Dataset] = None,
) -> None:
    settings = RuntimeSettings.from_config(cfg)
    file_mode, dir_mode = settings.modes
    paths, mirror = job_folder(settings.output_root, settings.staging_dir, user_id, job_id)
    paths.create(dir_mode)
    rank, world_size = process_rank_and_world()
    resuming = bool(cfg.get("resume_from_checkpoint", False))
    # Under `porter run` its node's rank; under another launcher, torchrun's for its node.
    node_rank = settings.node_rank if settings.supervised else int(os.environ.get("GROUP_RANK", "0"))
    lifecycle = Lifecycle(
        paths=paths,
        job_id=job_id,
        user_id=user_id,
        workflow=workflow_name(recipe_class),
        node=NodePlace(node_rank, int(os.environ.get("GROUP_WORLD_SIZE", "1"))),
        rank=rank,
        owner=not settings.supervised and rank == 0,
        resuming=resuming,
        secrets=secret_values(cfg),
        file_mode=file_mode,
        sinks=build_sinks(settings, rank),
        mirror=mirror,
        report=settings.report,
    )
    started = started_data(
        recipe_class.__name__,
        world_size,
        dataset.source if dataset is not None else None,
        resuming,
        heartbeat_s=settings.heartbeat_s,
    )
    with contextlib.ExitStack() as stack:
        if not settings.supervised:  # under `porter run`, the supervisor owns the folder's modes
            stack.enter_context(private_files(file_mode, dir_mode, paths.root))
        logger = stack.enter_context(lifecycle.running(started))
        job_cfg = job_config(cfg, paths, dataset, lifecycle.history if resuming else None, workflow_name(recipe_class))
        if isinstance(job_cfg.get("metric_logger"), DictConfig):
            name_runs(job_cfg.metric_logger, job_id, user_id)  # the recipe's own tracker run
        job = JobContext(
            paths=paths,
            logger=logger,
            checkpoints=CheckpointPolicy(
                settings.save_every_n_epochs, settings.save_every_n_steps, settings.keep_last_n_checkpoints
            ),
            dataset_config=job_dataset_config(job_cfg) if dataset is not None else None,
            mirror=mirror,
        )
        if rank == 0:
            logger.start_heartbeat(settings.heartbeat_s)
        recipe = recipe_class(job_id, user_id, job_cfg, dataset, job=job)
        recipe.setup(job_cfg)
        recipe.train()
        recipe.save_final_checkpoint_if_missing()
        recipe.cleanup()
    if lifecycle.upload_error is not None:
        raise lifecycle.upload_error
    if mirror is not None and lifecycle.owner:
        mirror.remove_staging()


def workflow_name(recipe_class: type) -> str:
    """The recipe's file name without .py: `lora_finetune_single_device`."""
    try:
        return Path(inspect.getfile(recipe_class)).stem
    except (TypeError, OSError):
        return recipe_class.__name__


def started_data(
    recipe: str,
    world_size: int,
    dataset: Optional[str],
    resuming: bool,
    nnodes: int = 1,
    heartbeat_s: Optional[float] = None,
) -> dict:
    scheduled = scheduler_job()
    return {
        "recipe": recipe,
        "world_size": world_size,
        "dataset": redact_url(dataset) if dataset is not None else None,
        "resumed": resuming,
        "porter_version": package_version("porter"),
        "nnodes": nnodes,
        "heartbeat_s": heartbeat_s,
        "scheduler_job": dataclasses.asdict(scheduled) if scheduled is not None else None,
    }


def build_sinks(settings: RuntimeSettings, rank: Optional[int]) -> List[Sink]:
    """The sinks a process's job logger feeds, besides its event file: the webhook and
    custom sinks on every rank. The console and the sinks that follow the log
    (trackers: one run per job) are rank 0's in a job started without `porter run`;
    under it, node 0's `porter run` feeds them from the log (`followed_sinks`)."""
    from runtime.console import ConsoleSink

    sinks: List[Sink] = []
    if settings.console and rank == 0 and not settings.supervised:
        sinks.append(ConsoleSink())
    if settings.webhook is not None:
        sinks.append(WebhookSink(**settings.webhook))
    for spec in settings.sinks:
        if _follows_log(spec) and (settings.supervised or rank != 0):
            continue
        sinks.append(_instantiate(spec))
    return sinks


def followed_sinks(settings: RuntimeSettings) -> List[Sink]:
    """The sinks node 0's `porter run` feeds from the job's log."""
    return [_instantiate(spec) for spec in settings.sinks if _follows_log(spec)]


def _follows_log(spec: dict) -> bool:
    from torchtune.config._utils import _get_component_from_path

    try:
        component = _get_component_from_path(spec["_component_"])
    except Exception as error:  # torchtune's InstantiationError, or what importing raised
        raise JobError(
            f"porter.sinks: {spec['_component_']}: cannot be imported: {str(error).splitlines()[0]}"
        ) from error
    return bool(getattr(component, "follows_log", False))


def _instantiate(spec: dict) -> Sink:
    from torchtune import config

    try:
        return config.instantiate(OmegaConf.create(spec))
    except Exception as error:
        raise JobError(f"porter.sinks: {spec['_component_']}: cannot be built: {str(error).splitlines()[0]}") from error


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


def check_dataset_kind(cfg: DictConfig, dataset: Dataset, recipe: str) -> None:
    """Refuse data of another kind than the recipe trains on (its config's loss says)."""
    loss = cfg.get("loss")
    component = loss.get("_component_") if isinstance(loss, DictConfig) else None
    dataset.check_kind(expected_kinds(component), recipe)


def job_dataset_config(cfg: DictConfig) -> DictConfig:
    """The config node of the injected dataset, as the recipe will be given it."""
    return cfg.dataset if "dataset" in cfg else cfg.datasets[0]
