"""run_recipe: runs a ported recipe as a job.

Builds the job logger, points every output of the config into the job folder, builds
the recipe, runs setup, train, the checkpoint policy and cleanup, and ends the event log
with `job_completed`, `job_failed` or `job_cancelled` (the error's type, message and a
traceback file in the job folder), re-raising so the process exits non-zero. Under
`porter run` (`porter.supervised`), the supervisor writes the start and end events.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import os
from pathlib import Path
from typing import List, Optional, Type

from omegaconf import DictConfig, ListConfig, OmegaConf

from runtime.checkpoints import CheckpointPolicy, resume_config
from runtime.datasets import Dataset, expected_kinds
from runtime.errors import terminal_operation, write_error_report
from runtime.job import JobError, JobLock, JobPaths, private_files
from runtime.job_logger import JobLogger, logged_keys, read_events
from runtime.recipe_base import JobContext, RecipeBase
from runtime.secrets import redact_url, secret_values
from runtime.settings import RuntimeSettings
from runtime.sinks import ConsoleSink, Sink, WebhookSink
from runtime.system import package_version, process_rank_and_world


def run_recipe(
    recipe_class: Type[RecipeBase],
    job_id: str,
    user_id: str,
    cfg: DictConfig,
    dataset: Optional[Dataset] = None,
) -> None:
    settings = RuntimeSettings.from_config(cfg)
    file_mode, dir_mode = settings.modes
    secrets = secret_values(cfg)
    paths = JobPaths.for_job(Path(settings.output_root), user_id, job_id).create(dir_mode)
    rank, world_size = process_rank_and_world()
    resuming = bool(cfg.get("resume_from_checkpoint", False))
    owns_lifecycle = not settings.supervised
    with contextlib.ExitStack() as stack:
        if owns_lifecycle:  # under `porter run`, the supervisor owns the folder's modes
            stack.enter_context(private_files(file_mode, dir_mode, paths.root))
        if owns_lifecycle and rank == 0:
            stack.enter_context(JobLock(paths))
        history = read_events(paths.events)
        if owns_lifecycle and rank == 0:
            refuse_rerun(paths, history, resuming)
        logger = JobLogger(
            job_id=job_id,
            user_id=user_id,
            workflow=workflow_name(recipe_class),
            events_path=paths.events,
            rank=rank,
            sinks=build_sinks(settings, rank),
            already_logged=logged_keys(history) if resuming else (),
            drops_file=paths.sink_drops / f"rank-{rank}-{os.getpid()}.json" if not owns_lifecycle else None,
            secrets=secrets,
            file_mode=file_mode,
        )
        try:
            if owns_lifecycle and rank == 0:
                logger.log(
                    "job_started",
                    started_data(
                        recipe_class.__name__,
                        world_size,
                        dataset.source if dataset is not None else None,
                        resuming,
                    ),
                )
            job_cfg = job_config(
                cfg, paths, dataset, history if resuming else None, workflow_name(recipe_class)
            )
            job = JobContext(
                paths=paths,
                logger=logger,
                checkpoints=CheckpointPolicy(settings.save_every_n_epochs, settings.save_every_n_steps),
                dataset_config=job_dataset_config(job_cfg) if dataset is not None else None,
            )
            if rank == 0:
                logger.start_heartbeat(settings.heartbeat_s)
            recipe = recipe_class(job_id, user_id, job_cfg, dataset, job=job)
            recipe.setup(job_cfg)
            recipe.train()
            recipe.save_final_checkpoint_if_missing()
            recipe.cleanup()
        except BaseException as error:
            data = write_error_report(paths, rank, error, secrets)
            logger.close(terminal_operation(error) if owns_lifecycle else None, data)
            raise
        logger.close("job_completed" if owns_lifecycle and rank == 0 else None, {})


def workflow_name(recipe_class: type) -> str:
    """The recipe's file name without .py: `lora_finetune_single_device`."""
    try:
        return Path(inspect.getfile(recipe_class)).stem
    except (TypeError, OSError):
        return recipe_class.__name__


def started_data(recipe: str, world_size: int, dataset: Optional[str], resuming: bool) -> dict:
    return {
        "recipe": recipe,
        "world_size": world_size,
        "dataset": redact_url(dataset) if dataset is not None else None,
        "resumed": resuming,
        "porter_version": package_version("porter"),
    }


def refuse_rerun(paths: JobPaths, history: List[dict], resuming: bool) -> None:
    """A job id runs again only to resume, or when its last attempt left nothing."""
    operations = {event.get("operation") for event in history}
    if "job_completed" in operations:
        raise JobError(f"job {paths.root} already completed: use a new job id")
    if "weights" in operations and not resuming:
        raise JobError(
            f"job {paths.root} has checkpoints: resume_from_checkpoint=True continues it, "
            "or use a new job id"
        )


def build_sinks(settings: RuntimeSettings, rank: int) -> List[Sink]:
    """The non-file sinks of a process: the console on rank 0 only (one line per
    event, not one per rank), the webhook and custom sinks on every rank."""
    from torchtune import config

    sinks: List[Sink] = []
    if settings.console and rank == 0:
        sinks.append(ConsoleSink())
    if settings.webhook is not None:
        options = dict(settings.webhook)
        options.pop("max_queue", None)
        sinks.append(WebhookSink(**options))
    for spec in settings.sinks:
        sinks.append(config.instantiate(OmegaConf.create(spec)))
    return sinks


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
