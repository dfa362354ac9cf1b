"""The platform's RecipeBase: heartbeats around every interface method."""

from __future__ import annotations

import logging
from typing import Any

from platform_runtime.utils import LoggerAgent


class RecipeBase:
    def __init__(
        self, job_id: str, user_id: str, cfg: Any, dataset: Any, logger: logging.Logger, job_logger: LoggerAgent
    ) -> None:
        self.job_id = job_id
        self.user_id = user_id
        self.cfg = cfg
        self.dataset = dataset
        self.logger = logger
        self.job_logger = job_logger
        self.rank = 0
        self._init(cfg)

    def load_checkpoint(self, cfg_checkpointer: Any) -> Any:
        self.job_logger.heartbeat("load_checkpoint", "start")
        checkpoint = self._load_checkpoint(self.cfg.checkpointer)
        self.job_logger.heartbeat("load_checkpoint", "finish")
        return checkpoint

    def setup(self, cfg: Any) -> None:
        self.job_logger.heartbeat("setup", "start")
        self._setup(cfg)
        self.job_logger.heartbeat("setup", "finish")

    def train(self) -> None:
        self.job_logger.heartbeat("train", "start")
        self._train()
        self.job_logger.heartbeat("train", "finish")

    def save_checkpoint(self, epoch: int) -> None:
        self.job_logger.heartbeat("save_checkpoint", "start")
        self._save_checkpoint(epoch=epoch)
        self.job_logger.heartbeat("save_checkpoint", "finish")

    def cleanup(self) -> None:
        self.job_logger.heartbeat("cleanup", "start")
        self._cleanup()
        self.job_logger.heartbeat("cleanup", "finish")

    def _init(self, cfg: Any) -> None:
        raise NotImplementedError

    def _load_checkpoint(self, cfg_checkpointer: Any) -> Any:
        raise NotImplementedError

    def _setup(self, cfg: Any) -> None:
        raise NotImplementedError

    def _train(self) -> None:
        raise NotImplementedError

    def _save_checkpoint(self, epoch: int) -> None:
        raise NotImplementedError

    def _cleanup(self) -> None:
        raise NotImplementedError
