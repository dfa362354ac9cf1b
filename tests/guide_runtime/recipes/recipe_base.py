"""The team's RecipeBase: the guide's attributes, then `_init`; public wrappers that
record each call and pass their arguments on; no save hook."""

from __future__ import annotations

import os
from typing import Any

from guide_runtime.job_logger import JobLogger


class RecipeBase:
    job_logger: JobLogger

    def __init__(self, job_id: str, user_id: str, cfg: Any, dataset: Any, *, job_logger: JobLogger) -> None:
        self.job_id = job_id
        self.user_id = user_id
        self.cfg = cfg
        self.dataset = dataset
        self.job_logger = job_logger
        self.rank = int(os.environ.get("RANK", "0"))
        self._init(cfg)

    def load_checkpoint(self, *args, **kwargs):
        self.job_logger.record("call", method="load_checkpoint")
        return self._load_checkpoint(*args, **kwargs)

    def setup(self, *args, **kwargs):
        self.job_logger.record("call", method="setup")
        return self._setup(*args, **kwargs)

    def train(self, *args, **kwargs):
        self.job_logger.record("call", method="train")
        return self._train(*args, **kwargs)

    def save_checkpoint(self, *args, **kwargs):
        self.job_logger.record("call", method="save_checkpoint")
        return self._save_checkpoint(*args, **kwargs)

    def cleanup(self, *args, **kwargs):
        self.job_logger.record("call", method="cleanup")
        return self._cleanup(*args, **kwargs)

    def _init(self, cfg: Any) -> None:
        raise NotImplementedError

    def _load_checkpoint(self, *args, **kwargs):
        raise NotImplementedError

    def _setup(self, *args, **kwargs):
        raise NotImplementedError

    def _train(self, *args, **kwargs):
        raise NotImplementedError

    def _save_checkpoint(self, *args, **kwargs):
        raise NotImplementedError

    def _cleanup(self, *args, **kwargs):
        raise NotImplementedError
