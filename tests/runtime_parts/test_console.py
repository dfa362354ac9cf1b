"""A clean console: porter's progress line, in place on a terminal and a line per
logging step in a pipe, with torchtune's own output in the job's output log."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

import pytest

from conftest import events_of, JOB_ENV, on_terminal, porter_run_args, run_porter
from runtime.console import output_to_log, progress_line, ProgressConsole, weights_line


def step_event(n: int, total: int = 4) -> dict:
    return {
        "operation": "step",
        "data": {
            "gpu_rank": 0,
            "step_num": n,
            "step_len": total,
            "step_loss": 2.0 - n / 10,
            "step_lr": 3e-4,
            "step_time_elapsed_s": 2.0,
            "epoch_num": 1,
            "epoch_len": 1,
            "step_tokens_per_s": 1500.0,
        },
    }


def test_progress_line_has_step_epoch_loss_lr_tokens_and_eta():
    line = progress_line(step_event(3)["data"], world_size=2, mean_step_s=2.0)
    assert line == "step 3/4 · epoch 1/1 · loss 1.7 · lr 3.0e-04 · 3.0k tok/s · ETA 0:02"


def test_on_a_terminal_the_progress_line_is_redrawn_in_place_and_milestones_stay():
    screen = io.StringIO()
    console = ProgressConsole(screen, interactive=True)
    console.show({"operation": "job_started", "data": {"recipe": "r", "world_size": 1, "nnodes": 1}})
    console.show(step_event(1))
    console.show(step_event(2))
    console.show(
        {"operation": "epoch", "data": {"gpu_rank": 0, "epoch_num": 1, "epoch_len": 1, "epoch_time_elapsed_s": 4.0}}
    )
    console.show(
        {"operation": "epoch", "data": {"gpu_rank": 1, "epoch_num": 1, "epoch_len": 1, "epoch_time_elapsed_s": 4.0}}
    )
    console.close()
    text = screen.getvalue()
    assert text.count("\n") == 3  # job_started, rank 0's epoch, and the progress line's end
    assert text.count("\r\x1b[2Kstep ") == 2  # each step redraws the line in place
    assert "\r\x1b[2Kporter: epoch 1/1 done in 4.00 s\nstep 2/4 " in text  # and it comes back under a milestone


def test_in_a_pipe_each_logging_step_is_a_line():
    stream = io.StringIO()
    console = ProgressConsole(stream, interactive=False)
    for n in (1, 2, 3):
        console.show(step_event(n))
    console.show(
        {
            "operation": "job_failed",
            "data": {"error_type": "RuntimeError", "message": "boom", "gpu_rank": 1, "node_rank": 0},
        }
    )
    assert "\r" not in stream.getvalue()
    assert stream.getvalue().splitlines() == [
        "porter: step 1/4 · epoch 1/1 · loss 1.9 · lr 3.0e-04 · 1.5k tok/s · ETA 0:06",
        "porter: step 2/4 · epoch 1/1 · loss 1.8 · lr 3.0e-04 · 1.5k tok/s · ETA 0:04",
        "porter: step 3/4 · epoch 1/1 · loss 1.7 · lr 3.0e-04 · 1.5k tok/s · ETA 0:02",
        "porter: job_failed: RuntimeError: boom (node 0, rank 1)",
    ]


def test_weights_are_one_summarised_line(tmp_path):
    folder = tmp_path / "checkpoints" / "epoch_0"
    folder.mkdir(parents=True)
    for name, size in (("model.safetensors", 3000), ("adapter.pt", 1500)):
        (folder / name).write_bytes(b"x" * size)
    data = {
        "kind": "intermediate",
        "epoch": 0,
        "step": 10,
        "files": ["checkpoints/epoch_0/model.safetensors", "checkpoints/epoch_0/adapter.pt"],
    }
    assert (
        weights_line(data, tmp_path)
        == "weights (intermediate, epoch 1, step 10): 2 files, 4.5 KB in checkpoints/epoch_0"
    )


def test_output_to_log_takes_what_children_and_libraries_print(tmp_path):
    log = tmp_path / "logs" / "output.log"
    with output_to_log(log) as terminal:
        print("from python")
        os.write(2, b"from fd 2\n")
        subprocess.run(
            [sys.executable, "-c", "import sys; print('from a child'); print('child err', file=sys.stderr)"], check=True
        )
        terminal.write("porter line\n")
    text = log.read_text()
    for line in ("from python", "from fd 2", "from a child", "child err"):
        assert line in text
    assert "porter line" not in text


# -- a real job, as people watch it -----------------------------------------------------


def _job_args(demo, generated, root, job_id):
    return porter_run_args(
        demo, generated, root, "lora_finetune_single_device", "epochs=1", job_id=job_id, user_id="tester"
    )


def test_a_job_on_a_terminal_shows_porters_progress_only(demo, generated, tmp_path):
    root = tmp_path / "runs"
    code, shown = on_terminal(*_job_args(demo, generated, root, "tty"), env=JOB_ENV)
    assert code == 0, shown[-3000:]
    job = root / "tester" / "tty"
    steps = [e for e in events_of(job / "events.jsonl") if e["operation"] == "step"]
    # every step redrew the one progress line; none of them is a line of its own
    assert shown.count("\r\x1b[2Kstep ") >= len(steps) == 10
    assert not re.search(r"\nporter: step ", shown)
    assert "porter: job_started: lora_finetune_single_device, 1 process" in shown
    assert shown.count("porter: weights (final, epoch 1, step 10): ") == 1
    # torchtune's config dump, INFO lines and tqdm bar are in the output log, not on screen
    output = (job / "logs" / "output-node-0.log").read_text()
    for chatter in ("resolved config", "INFO:torchtune", "it/s]"):
        assert chatter not in shown and chatter in output, chatter
    assert shown.rstrip().endswith(f"report:  {job}/report.html")
    assert (job / "report.html").exists()


def test_a_job_in_a_pipe_prints_a_line_per_logging_step(demo, generated, tmp_path):
    root = tmp_path / "runs"
    done = run_porter(*_job_args(demo, generated, root, "piped"), env=JOB_ENV)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [line for line in done.stderr.splitlines() if line.startswith("porter: step ")]
    assert [line.split()[2] for line in steps] == [f"{n}/10" for n in range(1, 11)]
    assert "\r" not in done.stderr and "resolved config" not in done.stderr
    assert done.stdout.splitlines()[-1] == f"report:  {root}/tester/piped/report.html"


def test_verbose_lets_torchtunes_output_through(demo, generated, tmp_path):
    root = tmp_path / "runs"
    done = run_porter(
        *_job_args(demo, generated, root, "loud"), "--verbose", "--no-console", "porter.report=false", env=JOB_ENV
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resolved config" in done.stderr
    assert not (root / "tester" / "loud" / "logs" / "output-node-0.log").exists()
    assert not (root / "tester" / "loud" / "report.html").exists()
    assert "report:" not in done.stdout and "output:" not in done.stdout


@pytest.mark.parametrize("value", ["maybe", "1"])
def test_porter_report_setting_must_be_a_boolean(value):
    from omegaconf import OmegaConf

    from runtime.job import JobError
    from runtime.settings import RuntimeSettings

    with pytest.raises(JobError, match=f"porter.report: must be true or false, got '{value}'"):
        RuntimeSettings.from_config(OmegaConf.create({"porter": {"report": value}}))
