"""run_recipe: runs a ported recipe as a job, in each training process.

The job is set up (runtime/job_setup.py), its config pointed into the job folder
(runtime/job_config.py), and the recipe built and run: setup, train, the checkpoint
policy and cleanup, inside the job's lifecycle (runtime/lifecycle.py). Under `porter
run` (`porter.supervised`) the supervisor owns the lifecycle, otherwise rank 0 does. A
failure leaves its report in the job folder and is re-raised, so the process exits
non-zero.

It is the contract's entry point, and entered in many ways (`porter run` in its own
process, torchrun's workers, a team's launcher that calls `recipe_main`, a notebook):
so this module, and nothing before it, installs what every training process needs:
torchtune's config dump and metric loggers get redacted copies of the config, and a
process on the CPU gets the CPU fixes (runtime/cpu_compat.py).
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from pathlib import Path
from typing import Optional, Type

import torch
from omegaconf import DictConfig

from runtime import cpu_compat
from runtime.checkpoints import CheckpointPolicy
from runtime.datasets import Dataset
from runtime.job import JobRef
from runtime.job_config import job_config, job_dataset_config
from runtime.job_setup import JobSetup
from runtime.recipe_base import JobContext, RecipeBase
from runtime.secrets import keep_secrets_out_of_torchtune, scrub_exception, secret_values
from runtime.storage import StorageError
from runtime.system import process_rank_and_world
from runtime.trackers import name_runs


def run_recipe(
    recipe_class: Type[RecipeBase],
    job_id: str,
    user_id: str,
    cfg: DictConfig,
    dataset: Optional[Dataset] = None,
) -> None:
    rank, world_size = process_rank_and_world()
    _on_the_cpu(recipe_class, cfg, rank)
    try:
        _run(recipe_class, job_id, user_id, cfg, dataset, rank, world_size)
    except BaseException as error:
        # Its report and events are scrubbed already; so is what the caller prints.
        scrub_exception(error, secret_values(cfg))
        raise


def _run(
    recipe_class: Type[RecipeBase],
    job_id: str,
    user_id: str,
    cfg: DictConfig,
    dataset: Optional[Dataset],
    rank: int,
    world_size: int,
) -> None:
    workflow = workflow_name(recipe_class)
    setup = JobSetup.for_process(cfg, JobRef(job_id, user_id, workflow), rank)
    settings, paths, lifecycle = setup.settings, setup.paths, setup.lifecycle
    started = setup.started(recipe_class.__name__, world_size, dataset.source if dataset is not None else None)
    run = lifecycle.run(started)
    with contextlib.ExitStack() as stack:
        if not settings.supervised:  # under `porter run`, the supervisor owns the folder's modes
            stack.enter_context(setup.private_files())
        logger = stack.enter_context(run)
        job_cfg = job_config(cfg, paths, dataset, lifecycle.history if lifecycle.resuming else None, workflow)
        if isinstance(job_cfg.get("metric_logger"), DictConfig):
            name_runs(job_cfg.metric_logger, job_id, user_id)  # the recipe's own tracker run
        job = JobContext(
            paths=paths,
            logger=logger,
            checkpoints=CheckpointPolicy(
                settings.save_every_n_epochs, settings.save_every_n_steps, settings.keep_last_n_checkpoints
            ),
            dataset_config=job_dataset_config(job_cfg) if dataset is not None else None,
            mirror=setup.mirror,
        )
        if rank == 0:
            logger.start_heartbeat(settings.heartbeat_s)
        recipe = recipe_class(job_id, user_id, job_cfg, dataset, job=job)
        recipe.setup(job_cfg)
        recipe.train()
        recipe.save_final_checkpoint_if_missing()
        recipe.cleanup()
    if run.outcome.upload_error is not None:
        raise StorageError(run.outcome.upload_error)
    if setup.mirror is not None and lifecycle.owner:
        setup.mirror.remove_staging()


def _on_the_cpu(recipe_class: type, cfg: DictConfig, rank: int) -> None:
    """A job whose config puts it on the CPU of a machine with CUDA gets the CPU fixes
    now (a process without CUDA got them as this module loaded); either way, names the
    recipe's module imported before them are pointed at them."""
    if str(cfg.get("device", "cuda")) != "cpu":
        return
    if torch.cuda.is_available():
        _install_cpu_fixes(rank)
    module = sys.modules.get(recipe_class.__module__)
    if module is not None:
        cpu_compat.rebind(vars(module))


def _install_cpu_fixes(rank: int) -> None:
    left_out = cpu_compat.apply()
    if left_out and rank == 0:
        versions = cpu_compat.installed_versions()
        print(
            f"porter: warning: CPU fixes not written for torch {versions['torch']} and torchtune "
            f"{versions['torchtune']}, left out: {', '.join(left_out)} (runtime/cpu_compat.py)",
            file=sys.stderr,
        )


# Installed as a recipe imports `run_recipe`, before its `recipe_main` runs a line: that
# dumps the config (upstream's `config.log_config`) and, in distributed recipes, starts
# the process group, both before calling `run_recipe`. A process without CUDA runs on the
# CPU whatever its config says.
keep_secrets_out_of_torchtune()
if not torch.cuda.is_available():
    _install_cpu_fixes(process_rank_and_world()[0])


def workflow_name(recipe_class: type) -> str:
    """The recipe's file name without .py: `lora_finetune_single_device`."""
    try:
        return Path(inspect.getfile(recipe_class)).stem
    except (TypeError, OSError):
        return recipe_class.__name__
