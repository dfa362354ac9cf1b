# A recipe-shaped fixture written for porter's tests: a distributed recipe that starts
# its process group in __init__, has no load or save methods, and saves inline through
# a checkpoint client at the end of each epoch.

import time

from omegaconf import DictConfig, ListConfig
from runtime import Dataset, RecipeBase, run_recipe

from torch.distributed import destroy_process_group, init_process_group
from torch.utils.data import DataLoader, DistributedSampler
from torchtune import config, training, utils
from torchtune.datasets import ConcatDataset
from torchtune.training.checkpointing._checkpoint_client import (
    CheckpointClient,
    TrainingProgress,
)


class TinyDistributedRecipe(RecipeBase):
    def _init(self, cfg: DictConfig) -> None:
        init_process_group("cuda:nccl,cpu:gloo")
        self.world_size, self.rank = utils.get_world_size_and_rank()
        self._is_rank_zero = self.rank == 0
        self._checkpoint_client = CheckpointClient(cfg)
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._log_every_n_steps = cfg.get("log_every_n_steps", 1)

    def _setup(self, cfg: DictConfig) -> None:
        if self._is_rank_zero:
            self._metric_logger = config.instantiate(cfg.metric_logger)
        checkpoint_dict = self._checkpoint_client.load_base_checkpoint()
        self._model = config.instantiate(cfg.model)
        self._model.load_state_dict(checkpoint_dict[training.MODEL_KEY])
        self._optimizer = config.instantiate(cfg.optimizer, self._model.parameters())
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._dataloader = self._setup_data(cfg_dataset=cfg.dataset)
        self._steps_per_epoch = len(self._dataloader)

    def _setup_data(self, cfg_dataset: DictConfig) -> DataLoader:
        if self.dataset:
            ds = self.dataset
        elif isinstance(cfg_dataset, ListConfig):
            datasets = [config.instantiate(c, self._tokenizer) for c in cfg_dataset]
            ds = ConcatDataset(datasets=datasets)
        else:
            ds = config.instantiate(cfg_dataset, self._tokenizer)
        sampler = DistributedSampler(ds, num_replicas=self.world_size, rank=self.rank)
        return DataLoader(ds, sampler=sampler)

    def _save_checkpoint(self, epoch: int) -> None:
        """Porter moved this save here from the training loop; the runtime calls it."""
        self._checkpoint_client.save_checkpoint(
            model=self._model,
            optimizer=self._optimizer,
            training_progress=TrainingProgress(
                seed=0,
                epochs_run=self.epochs_run,
                total_epochs=self.total_epochs,
                max_steps_per_epoch=None,
            ),
            epoch=epoch,
        )

    def _train(self) -> None:
        t_epoch_start = time.perf_counter()
        t0 = time.perf_counter()
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self._dataloader.sampler.set_epoch(curr_epoch)
            for idx, batch in enumerate(self._dataloader):
                loss = self._model(**batch)
                loss.backward()
                self._optimizer.step()
                self.global_step += 1

                if (
                    self.global_step % self._log_every_n_steps == 0
                    and self._is_rank_zero
                ):
                    time_per_step = time.perf_counter() - t0
                    log_dict = {"loss": loss.item(), "lr": 1e-3}
                    self._metric_logger.log_dict(
                        log_dict,
                        step=self.global_step,
                    )
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
        if self._is_rank_zero:
            self._metric_logger.close()
        destroy_process_group()


def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
    if not training.is_distributed():
        raise RuntimeError("Run this recipe with a distributed launcher.")
    config.log_config(recipe_name="TinyDistributedRecipe", cfg=cfg)
    run_recipe(TinyDistributedRecipe, job_id, user_id, cfg, dataset)
