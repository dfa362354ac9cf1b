"""Faults to inject into real runs through their configs (no test hooks in porter).

`metric_logger: {_component_: helpers.faults.FailingLogger, fail_at_step: 15}` raises from
inside the training loop at that step; `SlowSink` and `FailingSink` are sinks that
take their time or refuse everything.
"""

from __future__ import annotations

import os
import signal
import time

import torch
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


class KeyRejectingLogger(DiskLogger):
    """A tracker whose service rejects its API key at the first step, quoting the key
    in its error, as services do."""

    def __init__(self, log_dir: str, api_key: str, **kwargs) -> None:
        super().__init__(log_dir=log_dir, **kwargs)
        self.api_key = api_key

    def log_dict(self, payload, step: int) -> None:
        raise PermissionError(f"the tracker rejected api key {self.api_key}")


class SlowLogger(DiskLogger):
    """Takes `delay_s` at every logged step: a job slow enough to interrupt mid-epoch."""

    def __init__(self, log_dir: str, delay_s: float, **kwargs) -> None:
        super().__init__(log_dir=log_dir, **kwargs)
        self.delay_s = delay_s

    def log_dict(self, payload, step: int) -> None:
        super().log_dict(payload, step)
        time.sleep(self.delay_s)


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


class FailingLoss(torch.nn.CrossEntropyLoss):
    """Cross entropy that fails on one rank at one call: it raises, or kills its own
    process as the kernel's OOM killer would."""

    def __init__(self, fail_on_rank: int, fail_at_call: int, how: str = "raise") -> None:
        super().__init__(ignore_index=-100)
        self.fail_on_rank, self.fail_at_call, self.how = fail_on_rank, fail_at_call, how
        self.calls = 0

    def forward(self, logits, labels):
        self.calls += 1
        if self.calls == self.fail_at_call and int(os.environ.get("RANK", "0")) == self.fail_on_rank:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise StepFault(f"injected fault on rank {self.fail_on_rank} at call {self.calls}")
        return super().forward(logits, labels)
