# A recipe-shaped fixture written for porter's tests: an RL loop in the shape of
# torchtune's PPO recipe. It has no `t0` and no `log_dict`: it counts `_steps_run`,
# logs through `self.log_metrics(...)`, and may stop before its last epoch.

import time
from typing import List

import torch
from omegaconf import DictConfig, ListConfig
from runtime import Dataset, RecipeBase, run_recipe

from torch.utils.data import DataLoader
from torchtune import config, rlhf, training
from torchtune.datasets import ConcatDataset
from torchtune.rlhf import PPOStats


class TinyRLRecipe(RecipeBase):
    def _init(self, cfg: DictConfig) -> None:
        self._epochs_run = 0
        self._steps_run = 0
        self._total_steps = cfg.num_steps
        self._log_every_n_steps = cfg.get("log_every_n_steps", 1)

    def _setup(self, cfg: DictConfig) -> None:
        self._metric_logger = config.instantiate(cfg.metric_logger)
        self._policy = config.instantiate(cfg.policy_model)
        self._optimizer = config.instantiate(cfg.optimizer, self._policy.parameters())
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._dataloader = self._setup_data(cfg.dataset)
        self._total_epochs = max(1, self._total_steps // len(self._dataloader))

    def _setup_data(self, cfg_dataset: DictConfig) -> DataLoader:
        if self.dataset:
            ds = self.dataset
        elif isinstance(cfg_dataset, ListConfig):
            ds = ConcatDataset(
                [config.instantiate(c, self._tokenizer) for c in cfg_dataset]
            )
        else:
            ds = config.instantiate(cfg_dataset, tokenizer=self._tokenizer)
        return DataLoader(ds, batch_size=4)

    def _save_checkpoint(
        self, epoch: int, is_intermediate_checkpoint: bool = False
    ) -> None:
        torch.save(self._policy.state_dict(), f"policy_{epoch}.pt")

    def log_metrics(self, stats: PPOStats, kl: torch.Tensor) -> None:
        self._metric_logger.log_dict(
            {"loss": stats.loss.mean(), "kl": kl}, step=self._steps_run
        )

    def _train(self) -> None:
        training_completed = False
        t_epoch_start = time.perf_counter()
        for curr_epoch in range(self._epochs_run, self._total_epochs):

            for idx, batch in enumerate(self._dataloader):

                t_step_start = time.perf_counter()
                # step 1. sample and score
                trajectory = rlhf.generate(self._policy, batch)
                ppo_stats: List[PPOStats] = []
                for _ in range(2):
                    ppo_stats.append(rlhf.ppo_step(self._policy, trajectory))
                    self._optimizer.step()

                self._steps_run += 1
                if self._steps_run % self._log_every_n_steps == 0:
                    self.log_metrics(
                        PPOStats(*map(torch.stack, zip(*ppo_stats))), trajectory.kl
                    )
                    if self.rank == 0:
                        self.job_logger.log_step(
                            gpu_rank=self.rank,
                            step_num=self._steps_run,
                            step_len=self._total_steps,
                            step_loss=float(
                                PPOStats(*map(torch.stack, zip(*ppo_stats)))
                                .loss.detach()
                                .mean()
                            ),
                            step_lr=training.get_lr(self._optimizer),
                            step_peak_memory_active=None,
                            step_peak_memory_alloc=None,
                            step_peak_memory_reserved=None,
                            step_time_elapsed_s=time.perf_counter() - t_step_start,
                            epoch_num=curr_epoch + 1,
                            epoch_len=self._total_epochs,
                            step_tokens_per_s=None,
                        )
                if self._steps_run == self._total_steps:
                    training_completed = True
                    break

            # save checkpoint at current epoch
            self._epochs_run += 1

            self.save_checkpoint_if_due(
                epoch=curr_epoch, total_epochs=self._total_epochs
            )
            self.job_logger.log_epoch(
                gpu_rank=self.rank,
                epoch_num=curr_epoch + 1,
                epoch_len=self._total_epochs,
                epoch_time_elapsed_s=time.perf_counter() - t_epoch_start,
            )
            t_epoch_start = time.perf_counter()
            if training_completed:
                return

    def _cleanup(self) -> None:
        self._metric_logger.close()


def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
    run_recipe(TinyRLRecipe, job_id, user_id, cfg, dataset)
