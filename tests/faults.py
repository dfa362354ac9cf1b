"""Faults to inject into real runs through their configs (no test hooks in porter).

`metric_logger: {_component_: faults.FailingLogger, fail_at_step: 15}` raises from
inside the training loop at that step; `SlowSink` and `FailingSink` are sinks that
take their time or refuse everything.
"""

from __future__ import annotations

import time

from torchtune.training.metric_logging import DiskLogger

from runtime.sinks import Sink


class StepFault(RuntimeError):
    pass


class FailingLogger(DiskLogger):
    def __init__(self, log_dir: str, fail_at_step: int, **kwargs) -> None:
        super().__init__(log_dir=log_dir, **kwargs)
        self.fail_at_step = fail_at_step

    def log_dict(self, payload, step: int) -> None:
        super().log_dict(payload, step)
        if step == self.fail_at_step:
            raise StepFault(f"injected fault at step {step}")


class SlowSink(Sink):
    name = "slow"

    def __init__(self, delay_s: float = 0.1) -> None:
        self.delay_s = delay_s

    def emit(self, events) -> None:
        for _ in events:
            time.sleep(self.delay_s)


class FailingSink(Sink):
    name = "failing"

    def emit(self, events) -> None:
        raise ConnectionError("sink is down")
