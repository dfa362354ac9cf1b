"""Jobs on a real Slurm cluster (tests/helpers/slurm_cluster.py: a controller and two nodes on
this machine), submitted with the README's script ("Running on Slurm") as written, with
CPU sizes: one process per node, gloo. One cluster serves the module; each job's output
root is a folder both nodes share. Skipped, saying why, where Slurm cannot be installed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import JOB_ENV, run_porter
from helpers.slurm_cluster import SlurmCluster, SlurmUnavailable
from test_multinode import readme_example

pytestmark = pytest.mark.slow

ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    try:
        running = SlurmCluster.start(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as reason:
        pytest.skip(f"no Slurm cluster here: {reason}")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def script(cluster):
    path = cluster.folder / "porter.sbatch"
    path.write_text(readme_example("slurm") + "\n")
    return path


class Jobs:
    def __init__(self, cluster: SlurmCluster, script: Path, root: Path, demo) -> None:
        self.cluster, self.script, self.root, self.demo = cluster, script, root, demo
        root.mkdir(parents=True, exist_ok=True)

    def submit(
        self, job_id: str, *sbatch_options: str, overrides: str = "", recipe: str = "full_finetune_distributed"
    ) -> str:
        exports = {
            "RECIPE": recipe,
            "CONFIG": str(self.demo.config(recipe)),
            "JOB_ID": job_id,
            "USER_ID": "slurm-user",
            "OUTPUT_ROOT": str(self.root),
            "OVERRIDES": overrides,
            **JOB_ENV,
        }
        os.environ.update(exports)  # sbatch --export=ALL takes the submitter's environment
        self.cluster.env.update(exports)
        return self.cluster.sbatch(
            self.script, "--export=ALL", f"--output={self.root}/slurm-%j.out", f"--chdir={self.root}", *sbatch_options
        )

    def events(self, job_id: str) -> list:
        folder = self.root / "slurm-user" / job_id
        found = []
        for log in sorted(folder.glob("events*.jsonl")):
            found += [json.loads(line) for line in log.read_text().splitlines()]
        return sorted(found, key=lambda e: e["create_ts"])

    def wait_for(self, job_id: str, operation: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e["operation"] == operation for e in self.events(job_id)):
                return
            time.sleep(0.5)
        raise TimeoutError(f"no {operation} event of {job_id}")


@pytest.fixture(scope="module")
def jobs(cluster, script, demo, tmp_path_factory):
    return Jobs(cluster, script, tmp_path_factory.mktemp("shared") / "runs", demo)


def operations(events):
    return [e["operation"] for e in events]


def test_the_readme_script_runs_a_two_node_job_to_its_end(jobs):
    slurm_id = jobs.submit("two-nodes")
    assert jobs.cluster.wait_job(slurm_id, ENDED, timeout=240) == "COMPLETED", (
        jobs.root / f"slurm-{slurm_id}.out"
    ).read_text()[-3000:]
    events = jobs.events("two-nodes")
    ops = operations(events)
    assert ops.count("job_started") == 1 and ops.count("job_completed") == 1 and ops[-1] == "job_completed"
    assert {e["node_rank"] for e in events} == {0, 1}
    started = events[0]["data"]
    assert started["scheduler_job"] == {"scheduler": "slurm", "job_id": slurm_id, "restart_count": 0}
    assert started["nnodes"] == 2 and started["world_size"] == 2
    listed = run_porter("jobs", "--output-root", jobs.root, "--format", "json")
    (row,) = [r for r in json.loads(listed.stdout) if r["job_id"] == "two-nodes"]
    assert row["status"] == "completed" and row["scheduler_job"] == f"slurm {slurm_id}"
    shown = run_porter("show", "two-nodes", "--output-root", jobs.root)
    assert f"attempts   1: slurm {slurm_id}" in shown.stdout


def test_four_jobs_submitted_at_once_queue_and_all_complete(jobs):
    # One whole node each, as a GPU job takes it: the two nodes run two at a time.
    ids = {
        f"queued-{n}": jobs.submit(f"queued-{n}", "--nodes=1", "--exclusive", overrides="epochs=1") for n in range(4)
    }
    for job_id, slurm_id in ids.items():
        assert jobs.cluster.wait_job(slurm_id, ENDED, timeout=300) == "COMPLETED", job_id
    spans = []
    for job_id in ids:
        events = jobs.events(job_id)
        assert operations(events)[0] == "job_started" and operations(events)[-1] == "job_completed"
        spans.append((events[0]["create_ts"], events[-1]["create_ts"]))
    # Never more than two at once: at each start, count the jobs running.
    assert max(sum(1 for begin, end in spans if begin <= start < end) for start, _ in spans) <= 2
    listed = json.loads(run_porter("jobs", "--output-root", jobs.root, "--format", "json").stdout)
    assert {r["job_id"]: r["status"] for r in listed if r["job_id"] in ids} == dict.fromkeys(ids, "completed")


SLOW = "metric_logger._component_=helpers.faults.SlowLogger metric_logger.delay_s=0.4"
# The requeued job keeps one checkpoint: the one it resumes from is never deleted.
KEEP_ONE = "porter.keep_last_n_checkpoints=1"


def test_scancel_cancels_the_job_on_every_node_with_nothing_half_written(jobs):
    slurm_id = jobs.submit("cancelled", overrides=SLOW)
    jobs.wait_for("cancelled", "step")
    jobs.cluster.run("scancel", slurm_id)
    assert jobs.cluster.wait_job(slurm_id, ENDED, timeout=120) == "CANCELLED"
    jobs.wait_for("cancelled", "job_cancelled", timeout=60)
    events = jobs.events("cancelled")
    assert operations(events).count("job_cancelled") == 1 and operations(events)[-1] == "job_cancelled"
    folder = jobs.root / "slurm-user" / "cancelled"
    assert not [p for p in folder.rglob("*") if p.name.endswith((".partial", ".tmp"))]
    states = {
        json.loads(p.read_text())["node_rank"]: json.loads(p.read_text())["state"]
        for p in (folder / "nodes").glob("node-*.json")
    }
    assert set(states) == {0, 1} and "running" not in states.values()


def test_a_requeued_job_resumes_by_itself_and_logs_each_step_once(jobs):
    slurm_id = jobs.submit("requeued", overrides=f"{SLOW} {KEEP_ONE}")
    jobs.wait_for("requeued", "weights", timeout=180)  # epoch 1 is saved; epoch 2 is running
    jobs.cluster.run("scontrol", "requeue", slurm_id)
    jobs.wait_for("requeued", "job_cancelled", timeout=60)
    # Slurm holds a requeued job for a while before it starts it again; release it now.
    jobs.cluster.wait_job(slurm_id, ("PENDING",), timeout=60)
    jobs.cluster.run("scontrol", "update", f"JobId={slurm_id}", "StartTime=now")
    assert jobs.cluster.wait_job(slurm_id, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"), timeout=240) == "COMPLETED"
    events = jobs.events("requeued")
    ops = operations(events)
    assert ops.count("job_started") == 2 and ops.count("job_completed") == 1 and ops[-1] == "job_completed"
    first, second = [e["data"] for e in events if e["operation"] == "job_started"]
    assert (first["resumed"], second["resumed"]) == (False, True)
    assert second["scheduler_job"]["restart_count"] == 1
    steps = [e["data"]["step_num"] for e in events if e["operation"] == "step"]
    assert sorted(steps) == list(range(1, 21)), "every step once"
    shown = run_porter("show", "requeued", "--output-root", jobs.root)
    assert f"attempts   2: slurm {slurm_id}, slurm {slurm_id} (restart 1)" in shown.stdout


def test_a_job_at_its_time_limit_ends_cancelled_saying_so_and_a_resubmission_continues_it(jobs):
    slurm_id = jobs.submit(
        "time-limited",
        "--signal=TERM@90",
        overrides="epochs=3 metric_logger._component_=helpers.faults.SlowLogger metric_logger.delay_s=1.5",
    )
    jobs.wait_for("time-limited", "weights", timeout=180)  # epoch 1 is saved
    # The limit comes within the signal's 90 s: Slurm warns at its next check.
    elapsed = jobs.cluster.run("squeue", "-h", "-j", slurm_id, "-o", "%M").strip()
    minutes, _, seconds = elapsed.rpartition(":")
    jobs.cluster.run("scontrol", "update", f"JobId={slurm_id}", f"TimeLimit={int(minutes or 0) + 2}")
    jobs.wait_for("time-limited", "job_cancelled", timeout=120)
    # Node 1's torchrun agent may then spend torch's store timeout (60 s) on node 0's
    # rendezvous store, gone with node 0 (its keep-alive, then closing its workers).
    jobs.cluster.wait_job(slurm_id, ENDED, timeout=150)
    cancelled = [e for e in jobs.events("time-limited") if e["operation"] == "job_cancelled"][-1]["data"]
    assert cancelled["message"].startswith("received signal SIGTERM: the Slurm job's time limit (it ends in ")
    resubmitted = jobs.submit("time-limited", overrides="epochs=3")
    assert jobs.cluster.wait_job(resubmitted, ENDED, timeout=240) == "COMPLETED"
    events = jobs.events("time-limited")
    assert operations(events).count("job_started") == 2 and operations(events)[-1] == "job_completed"
    assert [e["data"]["resumed"] for e in events if e["operation"] == "job_started"] == [False, True]
    assert sorted(e["data"]["step_num"] for e in events if e["operation"] == "step") == list(range(1, 31))


def test_a_resubmitted_completed_job_is_refused_by_node_0_and_both_nodes_stop_at_once(jobs):
    before = jobs.events("two-nodes")
    assert operations(before)[-1] == "job_completed"  # the first test's job
    slurm_id = jobs.submit("two-nodes", "--nodes=2")
    start = time.monotonic()
    assert jobs.cluster.wait_job(slurm_id, ENDED, timeout=120) == "FAILED"
    assert time.monotonic() - start < 60, "not at the rendezvous timeout"
    output = (jobs.root / f"slurm-{slurm_id}.out").read_text()
    assert output.count("already completed: use a new job id") == 2, output[-3000:]  # node 0's reason, said by both
    assert "node 0 refused the job" in output
    assert jobs.events("two-nodes") == before


def python_processes_of(root: Path) -> list:
    """The jobs' processes still alive: `porter run`s of this root, and training
    processes (whose command names a private launch file, not the root)."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        command = " ".join(process.info["cmdline"] or [])
        if (str(root) in command and "porter" in command) or "runtime.worker" in command:
            found.append(command)
    return found


def test_a_node_lost_mid_job_fails_it_naming_the_node_and_leaves_no_process(jobs):
    import signal

    slurm_id = jobs.submit("lost-node", overrides=SLOW)
    jobs.wait_for("lost-node", "step")
    state = json.loads((jobs.root / "slurm-user" / "lost-node" / "nodes" / "node-1.json").read_text())
    os.killpg(os.getpgid(state["pid"]), signal.SIGKILL)  # node 1's task, as its host going down would
    jobs.cluster.wait_job(slurm_id, ENDED, timeout=180)
    (failed,) = [e["data"] for e in jobs.events("lost-node") if e["operation"] == "job_failed"]
    assert (
        failed["error_type"] == "NodeLost"
        and failed["node_rank"] == 1
        and failed["message"].startswith("node 1 was lost")
    )
    assert jobs.cluster.run("squeue", "-h").strip() == ""
    deadline = time.monotonic() + 30
    while python_processes_of(jobs.root) and time.monotonic() < deadline:
        time.sleep(1)
    assert python_processes_of(jobs.root) == []


def test_a_bad_setting_on_node_0_only_stops_both_nodes_at_once(jobs):
    # `porter.save_every_n_epochs` is each node's SLURM_NODEID: 0, refused, on node 0 only.
    slurm_id = jobs.submit("bad-on-node-0", overrides="porter.save_every_n_epochs=${oc.decode:${oc.env:SLURM_NODEID}}")
    start = time.monotonic()
    assert jobs.cluster.wait_job(slurm_id, ENDED, timeout=120) == "FAILED"
    assert time.monotonic() - start < 60, "not at the rendezvous timeout"
    output = (jobs.root / f"slurm-{slurm_id}.out").read_text()
    assert "porter: error: porter.save_every_n_epochs: must be a positive integer, got 0" in output, output[-3000:]
    assert "node 0 refused the job: porter.save_every_n_epochs: must be a positive integer, got 0" in output


def test_a_job_whose_owner_was_killed_is_interrupted_at_once_not_running(jobs):
    import signal

    slurm_id = jobs.submit("owner-killed", overrides=SLOW)
    jobs.wait_for("owner-killed", "step")
    state = json.loads((jobs.root / "slurm-user" / "owner-killed" / "nodes" / "node-0.json").read_text())
    os.killpg(os.getpgid(state["pid"]), signal.SIGKILL)  # node 0's porter run: no terminal event
    listed = json.loads(run_porter("jobs", "--output-root", jobs.root, "--format", "json").stdout)
    (row,) = [r for r in listed if r["job_id"] == "owner-killed"]
    assert row["status"] == "interrupted"
    jobs.cluster.wait_job(slurm_id, ENDED, timeout=180)
    assert not any(
        e["operation"] in ("job_completed", "job_failed", "job_cancelled") for e in jobs.events("owner-killed")
    )
    shown = run_porter("show", "owner-killed", "--output-root", jobs.root)
    assert shown.stdout.splitlines()[0].endswith(", interrupted")
    deadline = time.monotonic() + 30
    while python_processes_of(jobs.root) and time.monotonic() < deadline:
        time.sleep(1)
    assert python_processes_of(jobs.root) == []
