"""Jobs beyond one machine, simulated on one host as a cluster with a shared file system
runs them: one `porter run` per node (each in a process group of its own, as on its
own host), c10d rendezvous on 127.0.0.1, one shared output root, one process per node,
the demo's tiny model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import JOB_ENV, REPO
from runtime.job import JobPaths, JobRef
from runtime.job_logger import read_job_events
from runtime.lifecycle import NODE_REPORT_GRACE_S

RECIPE = "full_finetune_distributed"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Cluster:
    """`porter run` of one job on `nodes` simulated nodes."""

    def __init__(self, demo, generated, root: Path, job_id: str, nodes: int = 2) -> None:
        self.demo, self.generated, self.root, self.job_id, self.nodes = demo, generated, root, job_id, nodes
        self.port = free_port()
        self.processes = {}

    def start(self, node: int, *overrides: str, join_timeout_s: int = 120) -> subprocess.Popen:
        log = open(self.root.parent / f"{self.job_id}-node{node}.log", "w")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "porter",
                "run",
                RECIPE,
                "--config",
                str(self.demo.config(RECIPE)),
                "--job-id",
                self.job_id,
                "--user-id",
                "tester",
                "--output-root",
                str(self.root),
                "--recipes-dir",
                str(self.generated),
                "--no-console",
                # torchrun's options, in both spellings
                "--nnodes",
                str(self.nodes),
                "--node_rank",
                str(node),
                "--nproc-per-node=1",
                "--rdzv_backend",
                "c10d",
                "--rdzv-endpoint",
                f"127.0.0.1:{self.port}",
                "--rdzv-id",
                self.job_id,
                "--rdzv_conf",
                f"join_timeout={join_timeout_s}",
                *overrides,
            ],
            cwd=REPO,
            env={**os.environ, **JOB_ENV},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a process group per node: killing one is losing a host
        )
        self.processes[node] = process
        return process

    def wait(self, node: int, timeout: float) -> int:
        return self.processes[node].wait(timeout=timeout)

    def output(self, node: int) -> str:
        return (self.root.parent / f"{self.job_id}-node{node}.log").read_text()

    @property
    def paths(self) -> JobPaths:
        return JobPaths(self.root / "tester" / self.job_id)

    def events(self) -> list:
        return read_job_events(self.paths)

    def wait_for(self, operation: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["operation"] == operation for e in self.events()):
            assert time.monotonic() < deadline, f"no {operation} event within {timeout} s"
            time.sleep(0.2)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def cluster(demo, generated, tmp_path):
    made = []

    def make(job_id: str, nodes: int = 2) -> Cluster:
        made.append(Cluster(demo, generated, tmp_path / "shared", job_id, nodes))
        return made[-1]

    yield make
    for each in made:
        each.stop()


@pytest.fixture(scope="module")
def two_node_job(demo, generated, tmp_path_factory):
    """One 2-node job run to its end, then resumed, shared by the tests that read it."""
    job = Cluster(demo, generated, tmp_path_factory.mktemp("two-node") / "shared", "two-node")
    try:
        for node in (0, 1):
            job.start(node, "epochs=1")
        codes = [job.wait(node, timeout=300) for node in (0, 1)]
    finally:
        job.stop()
    return job, codes


def test_two_nodes_share_one_job_folder_and_one_lifecycle(two_node_job):
    job, codes = two_node_job
    assert codes == [0, 0], job.output(0)[-3000:] + job.output(1)[-3000:]
    events = job.events()
    operations = [e["operation"] for e in events]
    assert operations.count("job_started") == 1 and operations[0] == "job_started"
    assert operations.count("job_completed") == 1 and operations[-1] == "job_completed"
    started = events[0]["data"]
    assert (started["nnodes"], started["world_size"]) == (2, 2)
    # Each node appends to its own log; every event says where it came from.
    assert [p.name for p in job.paths.event_logs()] == ["events.jsonl", "events-node-1.jsonl"]
    steps = [e for e in events if e["operation"] == "step"]
    assert steps and {e["gpu_rank"] for e in steps} == {0}
    epochs = {(e["node_rank"], e["gpu_rank"]) for e in events if e["operation"] == "epoch"}
    assert {rank for _, rank in epochs} == {0, 1} and {node for node, _ in epochs} == {0, 1}
    final = [e["data"] for e in events if e["operation"] == "weights" and e["data"]["kind"] == "final"]
    assert final and all((job.paths.root / f).is_file() for f in final[0]["files"])
    states = {p.name: p.read_text() for p in job.paths.nodes.iterdir()}
    assert sorted(states) == ["node-0.json", "node-1.json"] and all('"job_completed"' in s for s in states.values())


def test_a_node_killed_mid_training_fails_the_job_naming_it(cluster):
    job = cluster("lost-node")
    for node in (0, 1):
        job.start(node, "epochs=20")
    job.wait_for("step")
    # Node 1's `porter run` is killed: its training process (in a session of its own,
    # as torchrun starts it) must not train on alone; node 1 says nothing more.
    os.killpg(job.processes[1].pid, signal.SIGKILL)
    start = time.monotonic()
    code = job.wait(0, timeout=120)
    assert time.monotonic() - start < 60 + NODE_REPORT_GRACE_S
    assert code == 1, job.output(0)[-3000:]
    events = job.events()
    terminal = [e for e in events if e["operation"] in ("job_completed", "job_failed", "job_cancelled")]
    assert [e["operation"] for e in terminal] == ["job_failed"]
    failure = terminal[0]["data"]
    assert (failure["error_type"], failure["node_rank"]) == ("NodeLost", 1)
    assert failure["message"].startswith("node 1 was lost")
    assert "porter: job_failed: NodeLost: node 1 was lost" in job.output(0)


def test_a_node_that_never_starts_fails_the_job_at_the_rendezvous_timeout(cluster):
    job = cluster("never-started")
    start = time.monotonic()
    job.start(0, "epochs=1", join_timeout_s=10)
    code = job.wait(0, timeout=120)
    assert time.monotonic() - start < 60
    assert code == 1, job.output(0)[-3000:]
    (failed,) = [e for e in job.events() if e["operation"] == "job_failed"]
    assert (failed["data"]["error_type"], failed["data"]["node_rank"]) == ("NodeLost", 1)
    assert failed["data"]["message"] == "node 1 never joined the job"


def test_sigterm_to_node_0_cancels_the_whole_job_which_then_resumes_on_both_nodes(cluster):
    job = cluster("preempted")
    for node in (0, 1):
        job.start(node, "epochs=2")
    job.wait_for("weights")  # epoch 0 is saved
    os.kill(job.processes[0].pid, signal.SIGTERM)  # a scheduler's preemption
    assert job.wait(0, timeout=120) == 128 + signal.SIGTERM, job.output(0)[-3000:]
    assert job.wait(1, timeout=120) != 0  # the other node stops too, by itself
    terminal = [e for e in job.events() if e["operation"] in ("job_completed", "job_failed", "job_cancelled")]
    assert [e["operation"] for e in terminal] == ["job_cancelled"]
    # The signal is the cause, not what the other node's worker reported as its peer went.
    assert terminal[0]["data"]["message"] == "received signal SIGTERM", terminal[0]["data"]

    for node in (0, 1):
        job.start(node, "epochs=2", "resume_from_checkpoint=True")
    assert [job.wait(node, timeout=300) for node in (0, 1)] == [0, 0], job.output(0)[-3000:]
    events = job.events()
    started = [e["data"] for e in events if e["operation"] == "job_started"]
    assert [s["resumed"] for s in started] == [False, True]
    assert [e["operation"] for e in events][-1] == "job_completed"
    # The second attempt went on from the saved epoch: each rank's epochs logged once.
    epochs = sorted((e["gpu_rank"], e["data"]["epoch_num"]) for e in events if e["operation"] == "epoch")
    assert epochs == [(0, 1), (0, 2), (1, 1), (1, 2)]


# -- the README's cluster examples ----------------------------------------------------------


def readme_example(name: str) -> str:
    """The fenced block after `<!-- example: NAME -->` in the README."""
    readme = (REPO / "README.md").read_text()
    after = readme.split(f"<!-- example: {name} -->\n", 1)[1]
    return after.split("\n", 1)[1].split("\n```\n", 1)[0]


def parsed_porter_run(argv, environ):
    """What `porter run ARGV` would run, on a node with `environ`: click's parse, then
    porter's reading of torchrun's options and of the node's place."""
    from porter.cli import main
    from runtime.cluster import NodePlace, TorchrunOptions

    assert argv[:2] == ["porter", "run"]
    context = main.commands["run"].make_context("run", list(argv[2:]))
    torchrun, overrides = TorchrunOptions.split(context.params["arguments"])
    return context.params, torchrun, NodePlace.of(torchrun, environ), overrides


def test_the_readme_pytorchjob_renders_to_one_porter_run_per_node():
    import re

    import yaml

    from runtime.storage import OutputRoot

    manifest = yaml.safe_load(readme_example("pytorchjob"))
    assert (manifest["apiVersion"], manifest["kind"]) == ("kubeflow.org/v1", "PyTorchJob")
    replicas = manifest["spec"]["pytorchReplicaSpecs"]
    pods = [
        (kind, spec["template"])
        for kind in ("Master", "Worker")
        for spec in [replicas[kind]]
        for _ in range(spec["replicas"])
    ]
    assert len(pods) == 2
    for rank, (kind, template) in enumerate(pods):
        (container,) = template["spec"]["containers"]
        # The variables the training operator sets in each pod, as Kubernetes expands them.
        environ = {
            "WORLD_SIZE": str(len(pods)),
            "RANK": str(rank),
            "MASTER_ADDR": "porter-j9-master-0",
            "MASTER_PORT": "23456",
        }
        argv = [
            re.sub(r"\$\((\w+)\)", lambda m, environ=environ: environ[m.group(1)], str(part))
            for part in container["command"]
        ]
        params, torchrun, node, overrides = parsed_porter_run(argv, {})
        assert (node.node_rank, node.nnodes) == (rank, 2) and node.owner == (kind == "Master")
        assert torchrun.value("rdzv_endpoint") == "porter-j9-master-0:23456" and overrides == []
        assert OutputRoot.parse(params["output_root"]).remote


def test_the_readme_slurm_script_parses_and_gives_each_node_its_rank(tmp_path):
    script = readme_example("slurm")
    path = tmp_path / "job.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    nodes = int(next(line for line in script.splitlines() if line.startswith("#SBATCH --nodes=")).split("=")[1])
    command = script.split("srun ", 1)[1]  # what srun starts on each node
    for node_id in range(nodes):
        environ = {
            "SLURM_NNODES": str(nodes),
            "SLURM_JOB_ID": "77",
            "SLURM_NODEID": str(node_id),
            "head_addr": "gpu-01",
            "RECIPE": "full_finetune_distributed",
            "CONFIG": "/shared/full.yaml",
            "JOB_ID": "j10",
            "USER_ID": "alice",
            "OUTPUT_ROOT": "/shared/runs",
            "OVERRIDES": "epochs=1 batch_size=2",
        }
        # bash renders the command as it would on the node: variables, quotes, line breaks.
        rendered = subprocess.run(
            ["bash", "-c", "printf '%s\\0' " + command],
            env={"PATH": os.environ["PATH"], **environ},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        params, torchrun, node, overrides = parsed_porter_run(rendered.split("\0")[:-1], environ)
        assert (node.node_rank, node.nnodes) == (node_id, nodes)
        assert params["job_id"] == "j10" and params["resume"] == "auto"
        assert torchrun.value("rdzv_endpoint") == "gpu-01:20077" and overrides == ["epochs=1", "batch_size=2"]


def test_when_node_0_refuses_a_rerun_the_waiting_node_stops_at_once_with_its_reason(two_node_job, demo, generated):
    done, _ = two_node_job
    job = Cluster(demo, generated, done.root, done.job_id)  # the same, completed job again
    try:
        job.start(1, "epochs=1")
        time.sleep(3)  # node 1 waits at the rendezvous
        assert job.start(0, "epochs=1").wait(timeout=60) == 2
        start = time.monotonic()
        assert job.wait(1, timeout=60) == 2
        assert time.monotonic() - start < 10
    finally:
        job.stop()
    assert "already completed: use a new job id" in job.output(0)
    assert "node 0 refused the job: job " in job.output(1) and "already completed" in job.output(1)


def test_a_bad_config_on_node_0_only_stops_the_other_node_with_its_reason(cluster):
    job = cluster("bad-on-node-0")
    job.start(1, "epochs=1")
    time.sleep(3)
    assert job.start(0, "epochs=1", "porter.save_every_n_epochs=0").wait(timeout=60) == 2
    start = time.monotonic()
    assert job.wait(1, timeout=60) == 2
    assert time.monotonic() - start < 10
    assert "porter.save_every_n_epochs: must be a positive integer, got 0" in job.output(0)
    assert "node 0 refused the job: porter.save_every_n_epochs: must be a positive integer, got 0" in job.output(1)


def test_how_a_node_ended_an_earlier_attempt_does_not_hide_that_it_never_joined_this_one(tmp_path):
    """A requeued job's folder still says how node 1 ended the attempt before; when node
    1 does not come this time, the failure names that, not the old state."""
    from runtime.cluster import NodePlace, RendezvousFailed
    from runtime.lifecycle import Lifecycle, write_node_state

    paths = JobPaths.for_job(tmp_path, "u", "requeued").create()
    cancelled = {"error_type": "JobCancelled", "message": "received signal SIGTERM", "gpu_rank": None, "node_rank": 1}
    write_node_state(paths, 1, "job_cancelled", {**cancelled, "traceback_file": None})
    lifecycle = Lifecycle(paths=paths, job=JobRef("requeued", "u", "w"), node=NodePlace(0, 2), rank=None, owner=True)
    run = lifecycle.run({"recipe": "w", "world_size": 2, "dataset": None, "porter_version": "0", "nnodes": 2})
    with pytest.raises(RendezvousFailed):
        with run:
            raise RendezvousFailed("rendezvous: not every one of 2 nodes joined within 10 s")
    assert (run.outcome.data["error_type"], run.outcome.data["message"]) == (
        "NodeLost",
        "node 1 never joined the job",
    )
