"""Seeing jobs: `porter jobs`, `porter show` and `porter report` on job folders whose
logs the job logger writes here (completed, failed, cancelled, running, stale,
resumed, several nodes), and following a running job's log."""

from __future__ import annotations

import json
import threading
import time

import pytest
from click.testing import CliRunner

from porter.cli import main
from porter.job_views import sparkline
from helpers.job_folders import STARTED, step, write_job
from runtime.job import JobRef
from runtime.job_logger import JobLogger
from runtime.job_reader import follow_log, OutputRootReader


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "runs"
    write_job(root, "alice", "done", 8, ("job_completed", {}))
    write_job(
        root,
        "alice",
        "broke",
        3,
        (
            "job_failed",
            {
                "error_type": "RuntimeError",
                "message": "CUDA error: boom",
                "gpu_rank": 1,
                "node_rank": 1,
                "traceback_file": "errors/rank-1-42.json",
            },
        ),
    )
    write_job(
        root,
        "bob",
        "stopped",
        2,
        (
            "job_cancelled",
            {
                "error_type": "JobCancelled",
                "message": "received signal SIGTERM",
                "gpu_rank": None,
                "node_rank": 0,
                "traceback_file": None,
            },
        ),
    )
    write_job(root, "bob", "live", 5, padding=400).close()  # closed without a terminal event: it still runs
    write_job(root, "bob", "live", 0, node_rank=1).close()
    return root


def test_each_job_has_its_status_progress_loss_and_size(root):
    summaries = {s.job_id: s for s in OutputRootReader(str(root)).summaries(now=time.time())}
    assert {job: s.status for job, s in summaries.items()} == {
        "done": "completed",
        "broke": "failed",
        "stopped": "cancelled",
        "live": "running",
    }
    done = summaries["done"]
    assert (done.user_id, done.recipe, done.step, done.step_len, done.epoch, done.epoch_len) == (
        "alice",
        "lora_finetune_single_device",
        8,
        8,
        2,
        2,
    )
    assert done.loss == pytest.approx(2.2) and (done.nnodes, done.world_size) == (2, 2)
    assert summaries["broke"].error == "RuntimeError: CUDA error: boom"
    # 400 heartbeats after its last step are more than a tail's read: the reader looks further back.
    assert (summaries["live"].step, summaries["live"].epoch) == (5, 1)


def test_a_job_silent_for_three_heartbeats_is_stale_and_its_other_nodes_count(root):
    later = time.time() + 3 * 30 + 5
    assert {s.job_id: s.status for s in OutputRootReader(str(root)).summaries(now=later)}["live"] == "stale"
    # node 1 beating keeps the job alive though node 0's log is quiet
    beating = JobLogger(
        job=JobRef("live", "bob", "w"),
        events_path=root / "bob" / "live" / "events-node-1.jsonl",
        node_rank=1,
    )
    beating.log("heartbeat", {"gpu_rank": 2, "pid": 1, "uptime_s": 1.0, "rss_bytes": 1})
    beating.close()
    statuses = {s.job_id: s.status for s in OutputRootReader(str(root)).summaries(now=time.time() + 60)}
    assert statuses["live"] == "running"


def test_a_resumed_job_runs_again_after_its_cancelled_attempt(tmp_path):
    root = tmp_path / "runs"
    write_job(root, "u", "again", 2, ("job_cancelled", {"error_type": "JobCancelled", "message": "SIGTERM"}))
    write_job(root, "u", "again", 4, started={**STARTED, "resumed": True, "world_size": 4})
    (summary,) = OutputRootReader(str(root)).summaries()
    assert (summary.status, summary.world_size, summary.error) == ("running", 4, None)


def test_porter_jobs_prints_a_table_or_json_filtered_by_user_and_status(root):
    runner = CliRunner()
    table = runner.invoke(main, ["jobs", "--output-root", str(root)])
    assert table.exit_code == 0, table.output
    header, *rows = table.output.splitlines()
    assert header.split() == [
        "USER",
        "JOB",
        "RECIPE",
        "STATUS",
        "STEP",
        "EPOCH",
        "LOSS",
        "STARTED",
        "DURATION",
        "NODES",
        "WORLD",
        "SCHEDULER",
    ]
    assert len(rows) == 4 and any(
        row.split()[:6] == ["alice", "done", "lora_finetune_single_device", "completed", "8/8", "2/2"] for row in rows
    )
    failed = runner.invoke(main, ["jobs", "--output-root", str(root), "--status", "failed", "--format", "json"])
    assert [(row["job_id"], row["error"]) for row in json.loads(failed.output)] == [
        ("broke", "RuntimeError: CUDA error: boom")
    ]
    bobs = runner.invoke(main, ["jobs", "--output-root", str(root), "--user", "bob", "--format", "json"])
    assert sorted(row["job_id"] for row in json.loads(bobs.output)) == ["live", "stopped"]


def test_porter_jobs_reads_a_remote_root(tmp_path):
    import fsspec

    local = tmp_path / "runs"
    write_job(local, "u", "j", 3, ("job_completed", {}))
    memory = fsspec.filesystem("memory")
    memory.put(str(local / "u"), "/porter-jobs-test/u", recursive=True)
    try:
        done = CliRunner().invoke(main, ["jobs", "--output-root", "memory://porter-jobs-test", "--format", "json"])
        assert [(row["job_id"], row["status"], row["step"]) for row in json.loads(done.output)] == [
            ("j", "completed", 3)
        ]
        shown = CliRunner().invoke(main, ["show", "j", "--output-root", "memory://porter-jobs-test"])
        assert shown.exit_code == 0 and "folder     memory:///porter-jobs-test/u/j" in shown.output
    finally:
        memory.rm("/porter-jobs-test", recursive=True)


def test_porter_show_sums_up_a_failed_job(root):
    done = CliRunner().invoke(main, ["show", "broke", "--output-root", str(root)])
    assert done.exit_code == 0, done.output
    text = done.output
    assert text.splitlines()[0] == "job broke of alice: lora_finetune_single_device, failed"
    for expected in (
        "model      torchtune.models.llama3_2.lora_llama3_2",
        "epochs     2",
        "lr         0.0003",
        "progress   step 3/8, epoch 0/2",
        "error      job_failed: RuntimeError: CUDA error: boom (node 1, rank 1)",
        f"traceback  {root}/alice/broke/errors/rank-1-42.json",
        "dropped    no sink dropped an event",
    ):
        assert expected in text, text
    assert "loss       █▄▁  2.9 → 2.7 over 3 logged steps" in text


def test_porter_show_of_completed_and_cancelled_jobs(root):
    done = CliRunner().invoke(main, ["show", "done", "--output-root", str(root), "--user", "alice"])
    assert "weights    1 save, the last (intermediate, epoch 1, step 4): 1 file in checkpoints/epoch_0" in done.output
    assert "error" not in done.output
    stopped = CliRunner().invoke(main, ["show", "stopped", "--output-root", str(root)])
    assert "error      job_cancelled: JobCancelled: received signal SIGTERM" in stopped.output


def test_unknown_and_ambiguous_jobs_are_one_line_with_exit_2(root, tmp_path):
    write_job(root, "bob", "done", 1, ("job_completed", {}))
    runner = CliRunner()
    missing = runner.invoke(main, ["show", "nope", "--output-root", str(root)])
    assert (missing.exit_code, missing.output.strip()) == (2, f"porter: error: no job nope under {root}")
    both = runner.invoke(main, ["show", "done", "--output-root", str(root)])
    assert (both.exit_code, both.output.strip()) == (
        2,
        "porter: error: job done exists for several users (alice, bob): name one with --user",
    )
    bad = runner.invoke(main, ["report", "../x", "--output-root", str(root)])
    assert bad.exit_code == 2 and bad.output.startswith("porter: error: job_id '../x' is not allowed")
    unwritable = runner.invoke(
        main,
        [
            "report",
            "done",
            "--user",
            "alice",
            "--output-root",
            str(root),
            "-o",
            str(tmp_path / "no" / "such" / "r.html"),
        ],
    )
    assert unwritable.exit_code == 2 and unwritable.output.startswith(f"porter: error: {tmp_path}/no/such/r.html")
    assert not (tmp_path / "no").exists()


def test_the_sparkline_follows_the_values():
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5.0, 5.0]) == "▁▁"
    assert len(sparkline(list(range(1000)), width=40)) == 40


def test_follow_yields_new_events_until_the_job_ends(tmp_path):
    root = tmp_path / "runs"
    logger = write_job(root, "u", "j", 2)
    reader = OutputRootReader(str(root))
    log = f"{root}/u/j/events.jsonl"
    seen, offset = [], reader.fs.size(log)
    follower = threading.Thread(target=lambda: seen.extend(follow_log(reader.fs, log, offset=offset, poll_s=0.05)))
    follower.start()
    logger.log_step(**step(3, 2.0))
    logger.close("job_completed", {})
    follower.join(10)
    assert not follower.is_alive()
    assert [e["operation"] for e in seen] == ["step", "job_completed"]


def test_porter_show_follow_prints_a_running_jobs_events_until_it_ends(tmp_path):
    root = tmp_path / "runs"
    logger = write_job(root, "u", "running", 2)

    def finish() -> None:
        time.sleep(0.5)
        logger.log_step(**step(3, 2.0))
        logger.close("job_failed", {"error_type": "RuntimeError", "message": "boom", "gpu_rank": 0, "node_rank": 0})

    threading.Thread(target=finish).start()
    done = CliRunner().invoke(main, ["show", "running", "--output-root", str(root), "--follow"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert lines[0] == "job running of u: lora_finetune_single_device, running"
    assert lines[-2].startswith("porter: step 3/8 · epoch 1/2 · loss 2")
    assert lines[-1] == "porter: job_failed: RuntimeError: boom (node 0, rank 0)"


def test_a_job_whose_owner_is_gone_without_a_terminal_event_is_interrupted_at_once(tmp_path):
    import socket
    import subprocess
    import sys

    from runtime.job import JobPaths
    from runtime.lifecycle import write_node_state

    root = tmp_path / "runs"
    write_job(root, "carol", "gone", 5).close()
    write_job(root, "carol", "alive", 5).close()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for job, pid in (("gone", dead.pid), ("alive", None)):
        write_node_state(JobPaths(root / "carol" / job), 0, "running")
        if pid is not None:  # as its `porter run` wrote it, before it was killed
            state = root / "carol" / job / "nodes" / "node-0.json"
            state.write_text(json.dumps({**json.loads(state.read_text()), "pid": pid, "host": socket.gethostname()}))
    statuses = {s.job_id: s.status for s in OutputRootReader(str(root)).summaries(now=time.time())}
    # This test's own process wrote `alive`'s state: it is running.
    assert statuses == {"gone": "interrupted", "alive": "running"}
    shown = CliRunner().invoke(main, ["show", "gone", "--output-root", str(root)])
    assert shown.output.splitlines()[0] == "job gone of carol: lora_finetune_single_device, interrupted"


def test_one_job_with_a_bad_timestamp_does_not_hide_the_others(root):
    log = root / "alice" / "done" / "events.jsonl"
    first, *rest = log.read_text().splitlines()
    log.write_text("\n".join([json.dumps({**json.loads(first), "create_ts": "yesterday"}), *rest]) + "\n")
    listed = CliRunner().invoke(main, ["jobs", "--output-root", str(root)])
    assert listed.exit_code == 0, listed.output
    assert "Traceback" not in listed.output
    assert f"porter: warning: {root}/alice/done: its event log cannot be read (ValueError: " in listed.output
    assert sum(1 for line in listed.output.splitlines() if line.startswith(("alice", "bob"))) == 3


def test_show_says_why_a_sink_dropped_events(tmp_path):
    root = tmp_path / "runs"
    write_job(root, "dan", "lossy", 2, ("job_completed", {})).close()
    log = root / "dan" / "lossy" / "events.jsonl"
    *head, last = log.read_text().splitlines()
    ended = json.loads(last)
    ended["data"].update(dropped_events={"webhook": 12}, sink_errors={"webhook": "ConnectionError: refused"})
    log.write_text("\n".join([*head, json.dumps(ended)]) + "\n")
    shown = CliRunner().invoke(main, ["show", "lossy", "--output-root", str(root)])
    assert "  dropped    webhook: 12 events (ConnectionError: refused)" in shown.output.splitlines()
