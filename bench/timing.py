"""What the step-time benchmark puts into the runs it compares."""

from __future__ import annotations

import time
from itertools import pairwise

from torchtune.training.metric_logging import DiskLogger

from runtime.sinks import Sink


class StepTimer(DiskLogger):
    """The usual disk logger, plus the wall time and the training thread's CPU time at
    every per-step call."""

    last = None  # the most recent instance, for runs whose recipe is out of reach

    def __init__(self, log_dir: str, **kwargs) -> None:
        super().__init__(log_dir=log_dir, **kwargs)
        self.stamps = []
        StepTimer.last = self

    def log_dict(self, payload, step: int) -> None:
        self.stamps.append((time.perf_counter(), time.thread_time()))
        super().log_dict(payload, step)

    def step_times(self, skip: int) -> dict:
        """Per-step wall and CPU seconds, without the first `skip` steps (warm-up)."""
        return {
            clock: [b[index] - a[index] for a, b in pairwise(self.stamps)][skip:]
            for index, clock in enumerate(("wall", "cpu"))
        }


class SlowSink(Sink):
    """A sink that takes 100 ms per event, like a slow remote collector."""

    name = "slow"

    def emit(self, events) -> None:
        time.sleep(0.1 * len(events))
