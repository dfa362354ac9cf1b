# A recipe-shaped fixture written for porter's tests: a distributed recipe that starts
# its process group in __init__, has no load or save methods, and saves inline through
# a checkpoint client at the end of each epoch.

import sys
import time

from omegaconf import DictConfig, ListConfig

from torch.distributed import destroy_process_group, init_process_group
from torch.utils.data import DataLoader, DistributedSampler
from torchtune import config, training, utils
from torchtune.datasets import ConcatDataset
from torchtune.recipe_interfaces import FTRecipeInterface
from torchtune.training.checkpointing._checkpoint_client import (
    CheckpointClient,
    TrainingProgress,
)


class TinyDistributedRecipe(FTRecipeInterface):
    def __init__(self, cfg: DictConfig) -> None:
        init_process_group("cuda:nccl,cpu:gloo")
        self.world_size, self.rank = utils.get_world_size_and_rank()
        self._is_rank_zero = self.rank == 0
        self._checkpoint_client = CheckpointClient(cfg)
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._log_every_n_steps = cfg.get("log_every_n_steps", 1)

    def setup(self, cfg: DictConfig) -> None:
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
        if isinstance(cfg_dataset, ListConfig):
            datasets = [config.instantiate(c, self._tokenizer) for c in cfg_dataset]
            ds = ConcatDataset(datasets=datasets)
        else:
            ds = config.instantiate(cfg_dataset, self._tokenizer)
        sampler = DistributedSampler(ds, num_replicas=self.world_size, rank=self.rank)
        return DataLoader(ds, sampler=sampler)

    def train(self) -> None:
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
            self._checkpoint_client.save_checkpoint(
                model=self._model,
                optimizer=self._optimizer,
                training_progress=TrainingProgress(
                    seed=0,
                    epochs_run=self.epochs_run,
                    total_epochs=self.total_epochs,
                    max_steps_per_epoch=None,
                ),
                epoch=curr_epoch,
            )

    def cleanup(self) -> None:
        if self._is_rank_zero:
            self._metric_logger.close()
        destroy_process_group()


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    if not training.is_distributed():
        raise RuntimeError("Run this recipe with a distributed launcher.")
    config.log_config(recipe_name="TinyDistributedRecipe", cfg=cfg)
    recipe = TinyDistributedRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
