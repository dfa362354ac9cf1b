# A recipe-shaped fixture written for porter's tests: the shape of a torchtune
# single-device fine-tuning recipe, small enough to read in one sitting.

import time

from typing import Any, Dict

from omegaconf import DictConfig, ListConfig
from runtime import Dataset, RecipeBase, run_recipe

from torch.utils.data import DataLoader
from torchtune import config, training, utils
from torchtune.datasets import ConcatDataset

log = utils.get_logger("DEBUG")


class TinyRecipe(RecipeBase):
    """Trains a model for a few epochs and saves it after each one."""

    def _init(self, cfg: DictConfig) -> None:
        self._device = utils.get_device(device=cfg.device)
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._log_every_n_steps = cfg.get("log_every_n_steps", 1)

    def _load_checkpoint(self, cfg_checkpointer: DictConfig) -> Dict[str, Any]:
        self._checkpointer = config.instantiate(cfg_checkpointer)
        return self._checkpointer.load_checkpoint()

    def _setup(self, cfg: DictConfig) -> None:
        self._metric_logger = config.instantiate(cfg.metric_logger)
        checkpoint_dict = self._load_checkpoint(cfg_checkpointer=cfg.checkpointer)
        self._model = config.instantiate(cfg.model)
        self._model.load_state_dict(checkpoint_dict[training.MODEL_KEY])
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)
        self._steps_per_epoch = len(self._dataloader)

    def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
        """Builds the training data loader."""
        # One dataset, or several concatenated
        if self.dataset:
            ds = self.dataset
            packed = cfg_dataset.get("packed", False)
        elif isinstance(cfg_dataset, ListConfig):
            datasets = [config.instantiate(c, self._tokenizer) for c in cfg_dataset]
            ds = ConcatDataset(datasets=datasets)
            packed = getattr(ds, "packed", False)
        else:
            ds = config.instantiate(cfg_dataset, self._tokenizer)
            packed = cfg_dataset.get("packed", False)
        return DataLoader(ds, batch_size=batch_size, drop_last=not packed)

    def _save_checkpoint(self, epoch: int) -> None:
        self._checkpointer.save_checkpoint(
            {training.MODEL_KEY: self._model.state_dict()}, epoch=epoch
        )

    def _train(self) -> None:
        """The training loop."""
        self._model.train()

        t_epoch_start = time.perf_counter()
        # Time the first step from here
        t0 = time.perf_counter()
        running_loss = 0

        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for idx, batch in enumerate(self._dataloader):
                loss = self._model(**batch)
                loss.backward()
                running_loss += loss.item()
                self.global_step += 1

                if self.global_step % self._log_every_n_steps == 0:
                    time_per_step = time.perf_counter() - t0
                    log_dict = {"loss": running_loss, "lr": 1e-3}
                    self._metric_logger.log_dict(log_dict, step=self.global_step)
                    self.job_logger.log_step(
                        gpu_rank=self.rank,
                        step_num=self.global_step,
                        step_len=self._steps_per_epoch * self.total_epochs,
                        step_loss=float(log_dict["loss"]),
                        step_lr=log_dict["lr"],
                        step_peak_memory_active=log_dict.get("peak_memory_active"),
                        step_peak_memory_alloc=log_dict.get("peak_memory_alloc"),
                        step_peak_memory_reserved=log_dict.get("peak_memory_reserved"),
                        step_time_elapsed_s=time_per_step,
                        epoch_num=curr_epoch + 1,
                        epoch_len=self.total_epochs,
                        step_tokens_per_s=log_dict.get("tokens_per_second_per_gpu"),
                    )

                running_loss = 0
                t0 = time.perf_counter()

            self.epochs_run += 1
            self.save_checkpoint_if_due(
                epoch=curr_epoch, total_epochs=self.total_epochs
            )
            self.job_logger.log_epoch(
                gpu_rank=self.rank,
                epoch_num=curr_epoch + 1,
                epoch_len=self.total_epochs,
                epoch_time_elapsed_s=time.perf_counter() - t_epoch_start,
            )
            t_epoch_start = time.perf_counter()

    def _cleanup(self) -> None:
        self._metric_logger.close()


def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
    """Entry point for the recipe."""
    config.log_config(recipe_name="TinyRecipe", cfg=cfg)
    run_recipe(TinyRecipe, job_id, user_id, cfg, dataset)
