"""The platform's job logger agent and its run_recipe."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Optional

# The platform's job system says where a job's records go; here, the test that launches it.
EVENTS = "PLATFORM_RUNTIME_EVENTS"


class LoggerAgent:
    """Heartbeats and the guide's step and epoch records, one JSON line each."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def heartbeat(self, method: str, phase: str) -> None:
        self._record("heartbeat", method=method, phase=phase)

    def _record(self, kind: str, **fields) -> None:
        with self._lock, self._path.open("a") as stream:
            stream.write(json.dumps({"kind": kind, **fields}) + "\n")

    def log_step(
        self,
        gpu_rank: int,
        step_num: int,
        step_len: int,
        step_loss: float,
        step_lr: Optional[float],
        step_peak_memory_active: Optional[float],
        step_peak_memory_alloc: Optional[float],
        step_peak_memory_reserved: Optional[float],
        step_time_elapsed_s: float,
        epoch_num: int,
        epoch_len: int,
    ) -> None:
        self._record("step", step_num=step_num, step_loss=step_loss, epoch_num=epoch_num, gpu_rank=gpu_rank)

    def log_epoch(self, gpu_rank: int, epoch_num: int, epoch_len: int, epoch_time_elapsed_s: float) -> None:
        self._record("epoch", epoch_num=epoch_num, gpu_rank=gpu_rank)


def run_recipe(recipe_class: type, job_id: str, user_id: str, cfg: Any, dataset: Any) -> None:
    agent = LoggerAgent(Path(os.environ[EVENTS]))
    recipe = recipe_class(job_id, user_id, cfg, dataset, logging.getLogger("platform"), agent)
    recipe.setup(cfg)
    recipe.train()
    recipe.cleanup()
