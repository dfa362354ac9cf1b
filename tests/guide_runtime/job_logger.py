"""The team's job logger: exactly the guide's keywords, nothing more, one JSON line each."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Optional


class JobLogger:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def record(self, kind: str, **fields) -> None:
        with self._lock, self._path.open("a") as stream:
            stream.write(json.dumps({"kind": kind, **fields}) + "\n")

    def log_step(
        self,
        *,
        gpu_rank: int,
        step_num: int,
        step_len: int,
        step_loss: float,
        step_lr: float,
        step_peak_memory_active: Optional[float],
        step_peak_memory_alloc: Optional[float],
        step_peak_memory_reserved: Optional[float],
        step_time_elapsed_s: float,
        epoch_num: int,
        epoch_len: int,
    ) -> None:
        self.record(
            "step",
            gpu_rank=gpu_rank,
            step_num=step_num,
            step_len=step_len,
            step_loss=step_loss,
            step_lr=step_lr,
            step_peak_memory_active=step_peak_memory_active,
            step_peak_memory_alloc=step_peak_memory_alloc,
            step_peak_memory_reserved=step_peak_memory_reserved,
            step_time_elapsed_s=step_time_elapsed_s,
            epoch_num=epoch_num,
            epoch_len=epoch_len,
        )

    def log_epoch(self, *, gpu_rank: int, epoch_num: int, epoch_len: int, epoch_time_elapsed_s: float) -> None:
        self.record(
            "epoch",
            gpu_rank=gpu_rank,
            epoch_num=epoch_num,
            epoch_len=epoch_len,
            epoch_time_elapsed_s=epoch_time_elapsed_s,
        )
