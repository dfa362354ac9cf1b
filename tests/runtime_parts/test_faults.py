"""Jobs under faults: signals, dying ranks, sinks that are down, jobs side by side."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import psutil
import pytest

from conftest import events_of, JOB_ENV, porter_run_args, REPO

pytestmark = pytest.mark.slow
LONG = ("epochs=200",)  # long enough to be stopped halfway


def start(
    demo, generated, root: Path, recipe: str, job_id: str, *args: str, config: Optional[Path] = None
) -> subprocess.Popen:
    """`porter run RECIPE` as job `job_id` of user u, with the demo's config for it unless `config`."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "porter",
            *porter_run_args(
                demo, generated, root, recipe, "--no-console", *args, job_id=job_id, user_id="u", config=config
            ),
        ],
        cwd=REPO,
        env={**os.environ, **JOB_ENV},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, operation: str, timeout: float = 120) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            events = events_of(path)
            if any(e["operation"] == operation for e in events):
                return events
        time.sleep(0.2)
    raise AssertionError(f"no {operation} event in {path} after {timeout}s")


def descendants(pid: int) -> list:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize(
    "recipe, args, sig",
    [
        ("lora_finetune_single_device", (), signal.SIGTERM),
        ("lora_finetune_single_device", (), signal.SIGINT),
        ("full_finetune_distributed", ("--nproc-per-node", "2"), signal.SIGTERM),
    ],
    ids=["sigterm", "sigint", "sigterm-2-processes"],
)
def test_a_signal_cancels_the_job_keeping_every_event_and_the_last_checkpoint(
    recipe, args, sig, demo, generated, tmp_path
):
    job = tmp_path / "u" / "j"
    process = start(demo, generated, tmp_path, recipe, "j", *args, *LONG)
    before = wait_for(job / "events.jsonl", "weights")  # an intermediate checkpoint is saved
    children = descendants(process.pid)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + sig, stderr[-2000:]
    events = events_of(job / "events.jsonl")
    assert events[: len(before)] == before  # nothing earlier lost or rewritten
    assert events[-1]["operation"] == "job_cancelled"
    assert events[-1]["data"]["message"] == f"received signal {signal.Signals(sig).name}"
    assert f"porter: job_cancelled: JobCancelled: received signal {signal.Signals(sig).name}" in stderr
    saved = [e["data"] for e in events if e["operation"] == "weights"]
    assert saved and all((job / f).is_file() and (job / f).stat().st_size > 0 for f in saved[-1]["files"])
    time.sleep(1)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "orphaned processes"


@pytest.mark.parametrize("how", ["raise", "kill"])
def test_one_rank_dying_fails_the_job_quickly_with_its_error(how, demo, generated, tmp_path):
    started = time.monotonic()
    process = start(
        demo,
        generated,
        tmp_path,
        "full_finetune_distributed",
        "j",
        "--nproc-per-node",
        "2",
        "loss._component_=helpers.faults.FailingLoss",
        "loss.fail_on_rank=1",
        "loss.fail_at_call=5",
        f"loss.how={how}",
        *LONG,
    )
    _, stderr = process.communicate(timeout=180)
    assert time.monotonic() - started < 150
    assert process.returncode == 1, stderr[-2000:]
    failed = events_of(tmp_path / "u" / "j" / "events.jsonl")[-1]
    assert failed["operation"] == "job_failed"
    if how == "raise":
        assert failed["data"]["error_type"] == "StepFault"
        assert failed["data"]["message"] == "injected fault on rank 1 at call 5"
        assert failed["data"]["gpu_rank"] == 1
    else:
        assert failed["data"]["error_type"] == "WorkerFailed"
        assert failed["data"]["message"] == "rank 1 was killed by SIGKILL (exit code -9)"
        assert failed["data"]["gpu_rank"] == 1


def test_a_sink_that_is_down_fails_nothing_and_its_drops_are_counted(demo, generated, tmp_path):
    process = start(
        demo, generated, tmp_path, "lora_finetune_single_device", "j", "--webhook", "http://127.0.0.1:1/events"
    )
    _, stderr = process.communicate(timeout=180)
    assert process.returncode == 0, stderr[-2000:]
    events = events_of(tmp_path / "u" / "j" / "events.jsonl")
    assert events[-1]["operation"] == "job_completed"
    assert events[-1]["data"]["dropped_events"]["webhook"] >= len(events) - 2


def test_two_jobs_under_one_root_run_side_by_side(demo, generated, tmp_path):
    first = start(demo, generated, tmp_path, "lora_finetune_single_device", "a")
    second = start(demo, generated, tmp_path, "full_finetune_single_device", "b")
    for process in (first, second):
        _, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr[-2000:]
    for job, workflow in (("a", "lora_finetune_single_device"), ("b", "full_finetune_single_device")):
        events = events_of(tmp_path / "u" / job / "events.jsonl")
        assert {e["job_id"] for e in events} == {job}
        assert {e["workflow"] for e in events} == {workflow}
        assert events[-1]["operation"] == "job_completed"


def test_one_job_id_cannot_run_twice_at_once(demo, generated, tmp_path):
    first = start(demo, generated, tmp_path, "lora_finetune_single_device", "same", *LONG)
    wait_for(tmp_path / "u" / "same" / "events.jsonl", "step")
    second = start(demo, generated, tmp_path, "lora_finetune_single_device", "same")
    _, stderr = second.communicate(timeout=120)
    assert second.returncode == 2
    assert f"porter: error: job folder {tmp_path}/u/same is in use by another run" in stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=120)
    events = events_of(tmp_path / "u" / "same" / "events.jsonl")
    assert [e["operation"] for e in events].count("job_started") == 1


def run(demo, generated, root: Path, recipe: str, config: Path, *args: str):
    process = start(demo, generated, root, recipe, "j", *args, config=config)
    _, stderr = process.communicate(timeout=180)
    return process.returncode, stderr


@pytest.mark.parametrize(
    "recipe, config_of, message",
    [
        (
            "lora_finetune_single_device",
            "lora_dpo_single_device",
            "config: its loss DPOLoss is for preference (DPO) recipes, not fine-tuning ones like lora_finetune_single_device",
        ),
        (
            "lora_dpo_single_device",
            "lora_finetune_single_device",
            "config: its loss CEWithChunkedOutputLoss is for fine-tuning recipes, not preference (DPO) ones like lora_dpo_single_device",
        ),
        (
            "full_finetune_single_device",
            "ppo_full_finetune_single_device",
            "config: missing epochs, max_steps_per_epoch, model, which full_finetune_single_device reads",
        ),
    ],
)
def test_a_config_for_another_recipe_is_refused_before_any_model_is_built(
    recipe, config_of, message, demo, generated, tmp_path
):
    code, stderr = run(demo, generated, tmp_path, recipe, demo.config(config_of))
    assert code == 2
    assert f"porter: job_failed: JobError: {message}" in stderr
    events = events_of(tmp_path / "u" / "j" / "events.jsonl")
    assert [e["operation"] for e in events] == ["job_started", "job_failed"]


def test_a_config_missing_a_key_names_it(demo, generated, tmp_path):
    import yaml

    config = yaml.safe_load(demo.config("lora_finetune_single_device").read_text())
    del config["tokenizer"]
    path = tmp_path / "no-tokenizer.yaml"
    path.write_text(yaml.safe_dump(config))
    code, stderr = run(demo, generated, tmp_path, "lora_finetune_single_device", path)
    assert code == 2
    assert "porter: job_failed: JobError: config: missing tokenizer, which lora_finetune_single_device reads" in stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["no_such_recipe", "--config", "x.yaml"],
            "porter: error: no_such_recipe: no such recipe file, nor a recipe of that name in {generated} or the "
            "installed torchtune",
        ),
        (["{generated}", "--config", "x.yaml"], "porter: error: {generated}: a folder, not a recipe file"),
        (
            ["lora_finetune_single_device", "--config", "no/such/config.yaml"],
            "porter: error: no/such/config.yaml: no such config file, nor an installed torchtune config of that name",
        ),
        (
            ["lora_finetune_single_device", "--config", "{config}", "epochs"],
            "porter: error: override: Command-line overrides must be in the form of key=value, got epochs",
        ),
        (
            ["lora_finetune_single_device", "--config", "{config}", "--nproc_per_node", "2", "--no-such-flag"],
            "porter: error: --no-such-flag: not an option of porter run or of torchrun",
        ),
        (
            ["lora_finetune_single_device", "--config", "{config}", "--nnodes", "2"],
            "porter: error: --nnodes 2: which node is this? give --node-rank",
        ),
        (
            ["lora_finetune_single_device", "--config", "{config}", "+epochs=3"],
            "porter: error: override +epochs=3: epochs is already in the config; override it without '+'",
        ),
    ],
)
def test_an_unknown_recipe_or_config_is_refused_before_a_job_exists(args, message, demo, generated, tmp_path):
    args = [
        a.replace("{config}", str(demo.config("lora_finetune_single_device"))).replace("{generated}", str(generated))
        for a in args
    ]
    message = message.replace("{generated}", str(generated))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "porter",
            "run",
            *args,
            "--job-id",
            "j",
            "--user-id",
            "u",
            "--output-root",
            str(tmp_path),
            "--recipes-dir",
            str(generated),
        ],
        cwd=REPO,
        env={**os.environ, **JOB_ENV},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "u").exists()
