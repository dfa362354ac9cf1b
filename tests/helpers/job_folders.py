"""Job folders whose event logs the job logger writes, for the tests that read them."""

from __future__ import annotations

from runtime.events import STEP_FIELDS
from runtime.job import JobRef
from runtime.job_logger import JobLogger

STARTED = {
    "recipe": "lora_finetune_single_device",
    "world_size": 2,
    "dataset": None,
    "resumed": False,
    "porter_version": "0",
    "nnodes": 2,
    "heartbeat_s": 30.0,
}
CONFIG = {
    "config": {
        "model": {"_component_": "torchtune.models.llama3_2.lora_llama3_2"},
        "epochs": 2,
        "optimizer": {"_component_": "torch.optim.AdamW", "lr": 0.0003},
    }
}


def step(n: int, loss: float, total: int = 8) -> dict:
    return {
        **{name: None for name in STEP_FIELDS},
        "gpu_rank": 0,
        "step_num": n,
        "step_len": total,
        "step_loss": loss,
        "step_lr": 1e-3,
        "step_time_elapsed_s": 0.5,
        "epoch_num": 1 + (n - 1) * 2 // total,
        "epoch_len": 2,
        "step_tokens_per_s": 1000.0,
    }


def write_job(
    root, user: str, job: str, steps: int, end=None, node_rank: int = 0, started=STARTED, padding: int = 0
) -> JobLogger:
    log = JobLogger(
        job=JobRef(job, user, started["recipe"]),
        events_path=root / user / job / ("events.jsonl" if node_rank == 0 else f"events-node-{node_rank}.jsonl"),
        node_rank=node_rank,
    )
    if node_rank == 0:
        log.log("job_started", started)
        log.log("job_config", CONFIG)
    for n in range(1, steps + 1):
        log.log_step(**step(n, 3.0 - n * 0.1))
        if n == 4:
            log.log_epoch(gpu_rank=0, epoch_num=1, epoch_len=2, epoch_time_elapsed_s=2.0)
            log.log(
                "weights",
                {
                    "kind": "intermediate",
                    "files": ["checkpoints/epoch_0/model.safetensors"],
                    "epoch": 0,
                    "step": 4,
                    "resumable": True,
                },
            )
        if n == 8:
            log.log_epoch(gpu_rank=0, epoch_num=2, epoch_len=2, epoch_time_elapsed_s=2.0)
    for _ in range(padding):  # a long stretch of heartbeats after the last step
        log.log("heartbeat", {"gpu_rank": 0, "pid": 1, "uptime_s": 1.0, "rss_bytes": 1})
    if end is not None:
        log.close(*end)
    return log
