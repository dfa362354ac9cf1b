"""RecipeBase: what a ported recipe inherits instead of FTRecipeInterface.

The recipe's own methods are `_init`, `_setup`, `_train`, `_save_checkpoint`,
`_cleanup` (porter renamed them). The public methods here wrap them with what the
job system needs: system facts and the resolved config at setup, checkpoints saved
when the runtime's policy says so and recorded as `weights` events, the artifact list
at cleanup. A recipe missing any of the methods can still be built.

It runs recipes ported for either contract (runtime/contract.py): `porter`'s, whose
loop calls the save hook `save_checkpoint_if_due`, and the guide's, whose loop keeps
calling its own `_save_checkpoint`; those saves are recorded all the same.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from omegaconf import DictConfig, OmegaConf

from runtime.datasets import build as build_dataset, DatasetError
from runtime.checkpoints import CheckpointPolicy, keep_recipe_state, rotate, snapshot, written_since
from runtime.job import JobPaths
from runtime.job_logger import JobLogger
from runtime.secrets import redact
from runtime.system import process_rank_and_world, system_specs
from runtime.trackers import tag_run


@dataclass
class JobContext:
    """What RecipeBase needs from the runtime; built by run_recipe."""

    paths: JobPaths
    logger: JobLogger
    checkpoints: CheckpointPolicy = field(default_factory=CheckpointPolicy)
    # The torchtune dataset config of the job's dataset, if one was injected.
    dataset_config: Optional[DictConfig] = None
    built_dataset: Any = None
    # The job folder's copy on a remote output root, whose old checkpoints rotation deletes too.
    mirror: Any = None
    last_saved_step: Optional[int] = None
    final_saved: bool = False
    last_epoch: Optional[int] = None


class RecipeBase:
    def __init__(
        self,
        job_id: str,
        user_id: str,
        cfg: DictConfig,
        dataset: Any = None,
        *,
        job: JobContext,
    ) -> None:
        self.job_id = job_id
        self.user_id = user_id
        self.cfg = cfg
        self._job = job
        self._rank: Optional[int] = None
        self._world_size: Optional[int] = None
        if dataset is not None and job.dataset_config is None:
            raise ValueError("a job dataset needs its dataset config in the JobContext")
        # A recipe ported for a contract without a save hook calls its `_save_checkpoint`
        # itself: those calls come here, so its saves are `weights` events too, and a
        # job resumes from them as from the runtime's own.
        self._recipe_save = self._save_checkpoint
        self._save_checkpoint = self._recipe_owned_save
        self._init(cfg)

    # -- what the generated code reads ------------------------------------------------

    @property
    def job_logger(self) -> JobLogger:
        return self._job.logger

    @property
    def dataset(self) -> Any:
        """The job's dataset, built with the recipe's own tokenizer (so read it after
        `_setup` made `self._tokenizer`); None when the job brought none."""
        if self._job.dataset_config is None:
            return None
        if self._job.built_dataset is None:
            self._job.built_dataset = build_dataset(self._job.dataset_config, self._tokenizer)
        return self._job.built_dataset

    @property
    def job_dataset_config(self) -> Optional[DictConfig]:
        """The config node the job's dataset replaced: recipes that also build a
        validation set take the job's dataset only for this one."""
        return self._job.dataset_config

    # Right in every process: from the process group once there is one, else from the
    # launcher's environment, which exists before a recipe starts its group in `_init`.
    # A recipe that sets them itself (`self.world_size, self.rank = ...`) is obeyed.
    @property
    def rank(self) -> int:
        return self._rank if self._rank is not None else process_rank_and_world()[0]

    @rank.setter
    def rank(self, value: int) -> None:
        self._rank = value

    @property
    def world_size(self) -> int:
        return self._world_size if self._world_size is not None else process_rank_and_world()[1]

    @world_size.setter
    def world_size(self, value: int) -> None:
        self._world_size = value

    # -- the interface ---------------------------------------------------------------

    def setup(self, cfg: DictConfig) -> None:
        if self.rank == 0:
            self.job_logger.log("system_specs", system_specs())
            resolved = redact(cfg)
            self._job.paths.config.write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
            self.job_logger.log("job_config", {"config": resolved})
        self._setup(cfg)
        if self.rank == 0 and getattr(self, "_metric_logger", None) is not None:
            tag_run(self._metric_logger, self.job_id, self.user_id)
        self._refuse_an_epoch_of_no_steps()

    def train(self) -> None:
        before = self._step_counts()
        self._train()
        if before and self._step_counts() == before:
            raise DatasetError(f"the run finished with zero optimizer steps: {self._data_facts()}")

    # Where recipes count their optimizer steps: SFT loops, RL loops, torchtune 0.1's.
    _STEP_COUNTERS = ("global_step", "_steps_run", "total_training_steps")

    def _step_counts(self) -> dict:
        """The step counters the recipe has: a run that moved none of them made no step."""
        return {name: getattr(self, name) for name in self._STEP_COUNTERS if isinstance(getattr(self, name, None), int)}

    def _refuse_an_epoch_of_no_steps(self) -> None:
        """A dataset that makes no full batch (or fewer batches than one optimizer step
        takes) would train nothing and still complete: refused before training."""
        steps = getattr(self, "_steps_per_epoch", None)
        loader = getattr(self, "_dataloader", None)
        if steps == 0 or (steps is None and _length(loader) == 0):
            raise DatasetError(f"the dataset makes no optimizer step in an epoch: {self._data_facts()}")

    def _data_facts(self) -> str:
        """Records, batch size and drop_last of the training data, as far as known."""
        loader = getattr(self, "_dataloader", None)
        dataset = getattr(loader, "dataset", None)
        facts = [f"{_length(dataset)} records" if _length(dataset) is not None else None]
        if getattr(loader, "batch_size", None) is not None:
            facts.append(f"batch size {loader.batch_size} per process")
        if hasattr(loader, "drop_last"):
            facts.append(f"drop_last={loader.drop_last}")
        accumulation = getattr(self, "_gradient_accumulation_steps", None)
        if accumulation and accumulation > 1:
            facts.append(f"{accumulation} batches per optimizer step")
        return ", ".join(fact for fact in facts if fact) or "the recipe's data loader"

    def save_checkpoint_if_due(
        self, epoch: int, total_epochs: Optional[int] = None, step: Optional[int] = None
    ) -> None:
        """The runtime's checkpoint policy, called where the recipe used to save: at the
        end of each epoch (with `total_epochs`) or after an optimizer step (with `step`)."""
        policy = self._job.checkpoints
        if step is not None:
            if policy.step_due(step):
                self.save_checkpoint(epoch, step=step)
            return
        if total_epochs is None:
            raise TypeError("save_checkpoint_if_due: give `step` or `total_epochs`")
        self._job.last_epoch = epoch
        if policy.epoch_due(epoch, total_epochs):
            self.save_checkpoint(epoch, final=epoch + 1 >= total_epochs)

    def save_checkpoint(self, epoch: int, *, step: Optional[int] = None, final: bool = False) -> None:
        """Save through the recipe's `_save_checkpoint`, passing the arguments its
        signature names (`epoch`; `step`, `full_tensors`, `is_intermediate_checkpoint`
        where torchtune versions added them) as upstream passes them, then record what
        was written. A save with `step` is a step save: torchtune main's loops pass
        `full_tensors=False` there (sharded state) and `True` at the end of training,
        so every save at an epoch's end here is a whole-tensor save."""
        step_save = step is not None
        step = step if step is not None else getattr(self, "global_step", None)
        if step is not None and step == self._job.last_saved_step and not final:
            return  # this state is already on disk
        parameters = inspect.signature(self._recipe_save).parameters
        arguments: dict = {"epoch": epoch}
        if "step" in parameters:
            arguments["step"] = step
        if "full_tensors" in parameters:
            arguments["full_tensors"] = not step_save
        if "is_intermediate_checkpoint" in parameters:
            arguments["is_intermediate_checkpoint"] = not final
        self._recorded(lambda: self._recipe_save(**arguments), epoch, step, final)

    def _recipe_owned_save(self, *args: Any, **kwargs: Any) -> Any:
        """A save the recipe's own loop makes (guide contract), recorded: final when it
        says it is not intermediate, or when it saves the last epoch."""
        try:
            passed = inspect.signature(self._recipe_save).bind(*args, **kwargs).arguments
        except TypeError:  # the recipe's own call is wrong: let it fail as it would unported
            return self._recipe_save(*args, **kwargs)
        epoch = passed.get("epoch")
        total = getattr(self, "total_epochs", None)
        final = passed.get("is_intermediate_checkpoint") is False or (
            isinstance(epoch, int) and isinstance(total, int) and epoch + 1 >= total
        )
        return self._recorded(
            lambda: self._recipe_save(*args, **kwargs), epoch, getattr(self, "global_step", None), final
        )

    def _recorded(self, save: Callable[[], Any], epoch: Optional[int], step: Optional[int], final: bool) -> Any:
        """Run `save`, then record what it wrote as a `weights` event (rank 0)."""
        checkpoints = self._job.paths.checkpoints
        before = snapshot(checkpoints) if self.rank == 0 else {}
        result = save()
        self._job.last_saved_step, self._job.final_saved = step, final
        if self.rank == 0:
            state = None if final or epoch is None else keep_recipe_state(checkpoints, epoch)
            self.job_logger.log(
                "weights",
                {
                    "kind": "final" if final else "intermediate",
                    "epoch": epoch,
                    "step": step,
                    "resumable": state is not None,
                    "files": self._relative(written_since(before, checkpoints)),
                },
                durable=True,
            )
            keep = self._job.checkpoints.keep_last_n
            removed = rotate(checkpoints, keep, self._job.mirror) if keep is not None else []
            if removed:
                self.job_logger.log("weights", {"kind": "removed", "files": self._relative(removed)}, durable=True)
        return result

    def save_final_checkpoint_if_missing(self) -> None:
        """The final weights are always written: a loop that ended early (RL recipes
        stop at a step budget) still gets its final save."""
        if not self._job.final_saved and self._job.last_epoch is not None:
            self.save_checkpoint(self._job.last_epoch, final=True)

    def cleanup(self) -> None:
        self._cleanup()
        if self.rank == 0:
            files = sorted(Path(p) for p in snapshot(self._job.paths.checkpoints))
            self.job_logger.log("weights", {"kind": "all", "files": self._relative(files)}, durable=True)

    def _relative(self, files) -> list:
        return [str(Path(f).relative_to(self._job.paths.root)) for f in files]

    # -- what the recipe provides (porter renamed its methods to these) ---------------

    def _init(self, cfg: DictConfig) -> None:
        """The recipe's constructor; a recipe without one has nothing to set up."""

    def _setup(self, cfg: DictConfig) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no _setup method")

    def _train(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no _train method")

    def _save_checkpoint(self, epoch: int) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no _save_checkpoint method")

    def _cleanup(self) -> None:
        """Nothing to release by default."""


def _length(value: Any) -> Optional[int]:
    try:
        return len(value)
    except TypeError:
        return None
