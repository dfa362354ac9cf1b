# A recipe-shaped fixture written for porter's tests: a recipe that mixes datasets. It
# has no ListConfig branch; `_setup_data` loops over dataset configs, filling dicts of
# datasets and weights.

import time

from omegaconf import DictConfig, ListConfig
from runtime import Dataset, RecipeBase, run_recipe

from torchtune import config, training
from torchtune.data._utils import get_dataloader, get_multi_dataset, load_hf_dataset


class MixRecipe(RecipeBase):
    def _init(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._log_every_n_steps = 1

    def _load_checkpoint(self, cfg_checkpointer: DictConfig):
        self._checkpointer = config.instantiate(cfg_checkpointer)
        return self._checkpointer.load_checkpoint()

    def _setup(self, cfg: DictConfig) -> None:
        self._metric_logger = config.instantiate(cfg.metric_logger)
        state = self._load_checkpoint(cfg.checkpointer)
        self._model = config.instantiate(cfg.model)
        self._model.load_state_dict(state[training.MODEL_KEY])
        self._tokenizer = config.instantiate(cfg.tokenizer)
        self._dataloader = self._setup_data(cfg.dataloader, cfg.datasets)
        self._steps_per_epoch = 10

    def _setup_data(self, cfg_dataloader: DictConfig, cfg_datasets: ListConfig):
        weights, datasets = {}, {}
        if self.dataset:
            datasets["job"], weights["job"] = self.dataset, 1.0
            cfg_datasets = []  # the job's dataset replaces the config's
        for idx, cfg_dataset in enumerate(cfg_datasets):
            transform = config.instantiate(cfg_dataset.pop("transform"))
            weights[f"{idx}"] = float(cfg_dataset.pop("weight"))
            datasets[f"{idx}"] = load_hf_dataset(**cfg_dataset, transform=transform)
        if len(datasets) > 1:
            dataset = get_multi_dataset(datasets=datasets, weights=weights)
        else:
            dataset = next(iter(datasets.values()))
        return get_dataloader(
            dataset=dataset, model_transform=self._tokenizer, batch_size=2
        )

    def _save_checkpoint(self, epoch: int) -> None:
        self._checkpointer.save_checkpoint(
            {training.MODEL_KEY: self._model.state_dict()}, epoch=epoch
        )

    def _train(self) -> None:
        t_epoch_start = time.perf_counter()
        t0 = time.perf_counter()
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for idx, batch in enumerate(self._dataloader):
                loss = self._model(**batch)
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
    run_recipe(MixRecipe, job_id, user_id, cfg, dataset)
