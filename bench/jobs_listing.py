"""`porter jobs` on an output root of many jobs, against `cat` of the same event logs,
side by side in one run.

Makes N job folders (default 1,000) whose logs the job logger writes: a start, the
config, `--steps` steps with heartbeats between them, epochs and weights, and the end
(a tenth of them still running, a tenth failed). Then, in alternating order each round:
`porter jobs --format json` as a whole process, and `cat` of every event log to
/dev/null. The ratio is the median of the rounds' ratios; below 1.0 means listing the
jobs costs less than reading their logs once. It prints the time per job too.

Run: python bench/jobs_listing.py [--jobs 1000] [--steps 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from runtime.events import STEP_FIELDS
from runtime.job import JobRef
from runtime.job_logger import JobLogger

STARTED = {
    "recipe": "lora_finetune_single_device",
    "world_size": 8,
    "dataset": None,
    "resumed": False,
    "porter_version": "0",
    "nnodes": 1,
    "heartbeat_s": 30.0,
}
CONFIG = {
    "config": {
        "model": {"_component_": "torchtune.models.llama3_2.lora_llama3_2", "lora_rank": 8},
        "epochs": 2,
        "optimizer": {"lr": 3e-4},
    }
}


def make_jobs(root: Path, jobs: int, steps: int) -> None:
    for index in range(jobs):
        log = JobLogger(
            job=JobRef(f"job-{index:05d}", f"user-{index % 20}", "lora_finetune_single_device"),
            events_path=root / f"user-{index % 20}" / f"job-{index:05d}" / "events.jsonl",
        )
        log.log("job_started", STARTED)
        log.log("job_config", CONFIG)
        for step in range(1, steps + 1):
            log.log_step(
                **{
                    **{name: None for name in STEP_FIELDS},
                    "gpu_rank": 0,
                    "step_num": step,
                    "step_len": steps,
                    "step_loss": 2.0,
                    "step_lr": 3e-4,
                    "step_time_elapsed_s": 0.4,
                    "epoch_num": 1 + 2 * (step - 1) // steps,
                    "epoch_len": 2,
                }
            )
            if step % 10 == 0:
                log.log("heartbeat", {"gpu_rank": 0, "pid": 1, "uptime_s": float(step), "rss_bytes": 1 << 30})
            if step % (steps // 2) == 0:
                log.log_epoch(gpu_rank=0, epoch_num=2 * step // steps, epoch_len=2, epoch_time_elapsed_s=80.0)
                log.log(
                    "weights",
                    {
                        "kind": "intermediate",
                        "files": [f"checkpoints/epoch_{2 * step // steps - 1}/model.safetensors"],
                        "epoch": 0,
                        "step": step,
                        "resumable": True,
                    },
                )
        if index % 10 == 0:
            log.close()  # still running
        elif index % 10 == 1:
            log.close("job_failed", {"error_type": "RuntimeError", "message": "CUDA out of memory"})
        else:
            log.close("job_completed", {})


def timed(command) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="porter-bench-jobs-") as folder:
        root = Path(folder) / "runs"
        made = time.perf_counter()
        make_jobs(root, args.jobs, args.steps)
        logs = sorted(str(path) for path in root.glob("*/*/events.jsonl"))
        size = sum(Path(log).stat().st_size for log in logs)
        print(
            f"{len(logs)} jobs, {size / 1e6:.0f} MB of event logs, made in {time.perf_counter() - made:.0f} s",
            file=sys.stderr,
        )
        listing = [sys.executable, "-m", "porter", "jobs", "--output-root", str(root), "--format", "json"]
        reading = ["xargs", "-a", str(Path(folder) / "logs.txt"), "cat"]
        (Path(folder) / "logs.txt").write_text("\n".join(logs))
        # how long the interpreter and porter's imports take, to say what listing itself costs
        startup = [sys.executable, "-c", "import porter.cli, runtime.job_reader"]
        timed(listing), timed(reading)  # warm the page cache for both
        ratios, lists, cats, starts = [], [], [], []
        for round_number in range(args.rounds):
            order = [("list", listing), ("cat", reading)]
            measured = dict(
                (name, timed(command)) for name, command in (order if round_number % 2 == 0 else order[::-1])
            )
            starts.append(timed(startup))
            lists.append(measured["list"])
            cats.append(measured["cat"])
            ratios.append(measured["list"] / measured["cat"])
        listing_only = statistics.median(lists) - statistics.median(starts)
        print(
            f"porter jobs: {statistics.median(lists):.3f} s ({listing_only:.3f} s without the interpreter and imports, "
            f"{1000 * listing_only / len(logs):.2f} ms per job); cat: {statistics.median(cats):.3f} s"
        )
        print(f"porter jobs / cat of the same logs: {statistics.median(ratios):.2f} (median of {args.rounds} rounds)")
        print(f"porter jobs without start-up / cat: {listing_only / statistics.median(cats):.2f}")


if __name__ == "__main__":
    main()
