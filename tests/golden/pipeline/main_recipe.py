# A recipe-shaped fixture written for porter's tests, in the shapes of torchtune's main
# branch: no load_checkpoint (a checkpoint client loads), a save method with keyword-only
# arguments, saves every N steps inside the loop and a final save after it, a `while`
# loop over the dataloader, and a validation set built by a second `_setup_data` call
# and logged from a `validate` method.

import time

from omegaconf import DictConfig, ListConfig
from runtime import Dataset, RecipeBase, run_recipe

from torch.utils.data import DataLoader
from torchtune import config, training, utils
from torchtune.datasets import ConcatDataset
from torchtune.training.checkpointing._checkpoint_client import (
    CheckpointClient,
    TrainingProgress,
)

log = utils.get_logger("DEBUG")


class MainShapedRecipe(RecipeBase):
    def _init(self, cfg: DictConfig) -> None:
        self._checkpoint_client = CheckpointClient(cfg)
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._log_every_n_steps = cfg.get("log_every_n_steps", 1)
        self.save_every_n_steps = cfg.get("save_every_n_steps")

    def _setup(self, cfg: DictConfig) -> None:
        self._metric_logger = config.instantiate(cfg.metric_logger)
        state_dict = self._checkpoint_client.load_base_checkpoint()
        self._model = config.instantiate(cfg.model)
        self._model.load_state_dict(state_dict[training.MODEL_KEY])
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._dataloader = self._setup_data(
            cfg_dataset=cfg.dataset, batch_size=cfg.batch_size
        )
        if cfg.get("dataset_val") is not None:
            self._val_dataloader = self._setup_data(
                cfg_dataset=cfg.dataset_val, batch_size=cfg.batch_size
            )
        self._steps_per_epoch = len(self._dataloader)
        if self.save_every_n_steps is None:
            self.save_every_n_steps = self._steps_per_epoch

    def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
        if self.dataset and cfg_dataset is self.job_dataset_config:
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

    def _save_checkpoint(self, *, epoch: int, step: int, full_tensors: bool) -> None:
        self._checkpoint_client.save_checkpoint(
            model=self._model,
            optimizer=None,
            training_progress=TrainingProgress(
                seed=0,
                epochs_run=self.epochs_run,
                total_epochs=self.total_epochs,
                max_steps_per_epoch=None,
            ),
            epoch=epoch,
            step=step,
            full_tensors=full_tensors,
        )

    def validate(self) -> None:
        losses = [self._model(**batch).item() for batch in self._val_dataloader]
        log_dict = {"val_loss": sum(losses) / len(losses)}
        self._metric_logger.log_dict(log_dict, step=self.global_step)

    def _train(self) -> None:
        t_epoch_start = time.perf_counter()
        t0 = time.perf_counter()
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            batches = iter(self._dataloader)
            batch_count = 0
            while True:
                batch = next(batches, None)
                if batch is None:
                    break
                loss = self._model(**batch)
                loss.backward()
                self.global_step += 1

                if self.global_step % self._log_every_n_steps == 0:
                    time_per_step = time.perf_counter() - t0
                    log_dict = {"loss": loss.item(), "lr": 1e-3}
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

                # Save checkpoint if specified by user
                self.save_checkpoint_if_due(epoch=curr_epoch, step=self.global_step)

                t0 = time.perf_counter()
                batch_count += 1
                if self.global_step % 10 == 0:
                    self.validate()

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
    config.log_config(recipe_name="MainShapedRecipe", cfg=cfg)
    run_recipe(MainShapedRecipe, job_id, user_id, cfg, dataset)
