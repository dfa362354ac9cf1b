"""A real Slurm cluster on this machine for the scheduler tests: Debian's slurm-wlm and
munge, one controller and two `slurmd` daemons as two nodes (slurmd is built with
multiple-slurmd support), everything in a temporary folder, nothing outside 127.0.0.1.

`SlurmCluster.start(folder)` installs the packages with apt when they are missing
(root only), writes a munge key when there is none, starts `munged` unless one runs,
then `slurmctld` and the two `slurmd`, and waits until `sinfo` shows both nodes idle;
`stop()` ends, by process id, every daemon it started.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import psutil

PACKAGES = {"slurmctld": "slurm-wlm", "slurmd": "slurm-wlm", "sbatch": "slurm-wlm", "munged": "munge"}
MUNGE_KEY = Path("/etc/munge/munge.key")
NODES = ("n1", "n2")


class SlurmUnavailable(Exception):
    """Why this machine cannot run the cluster (the tests skip, saying so)."""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def install() -> None:
    missing = sorted(
        {
            package
            for tool, package in PACKAGES.items()
            if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()
        }
    )
    if not missing:
        return
    if os.geteuid() != 0:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed, and installing them needs root")
    if shutil.which("apt-get") is None:
        raise SlurmUnavailable(f"{', '.join(missing)} not installed, and there is no apt-get")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *missing]):
        done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
        if done.returncode != 0:
            raise SlurmUnavailable(f"{' '.join(command)} failed: {done.stderr.strip()[-300:]}")


class SlurmCluster:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "slurm.conf"
        self.host = socket.gethostname()
        self._started: List[subprocess.Popen] = []
        self.env: Dict[str, str] = {**os.environ, "SLURM_CONF": str(self.conf)}

    @classmethod
    def start(cls, folder: Path) -> "SlurmCluster":
        install()
        cluster = cls(folder)
        try:
            cluster._start()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start(self) -> None:
        self._start_munge()
        (self.folder / "state").mkdir(parents=True, exist_ok=True)
        controller, *node_ports = (_free_port() for _ in range(1 + len(NODES)))
        nodes = "\n".join(
            f"NodeName={name} NodeHostname={self.host} NodeAddr=127.0.0.1 Port={port} CPUs=2 State=UNKNOWN"
            for name, port in zip(NODES, node_ports, strict=True)
        )
        self.conf.write_text(
            f"""ClusterName=porter
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={controller}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmUser=root
SlurmdUser=root
StateSaveLocation={self.folder}/state
SlurmdSpoolDir={self.folder}/spool/%n
SlurmctldPidFile={self.folder}/slurmctld.pid
SlurmdPidFile={self.folder}/slurmd-%n.pid
SlurmctldLogFile={self.folder}/slurmctld.log
SlurmdLogFile={self.folder}/slurmd-%n.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobRequeue=1
MinJobAge=600
KillWait=10
{nodes}
PartitionName=debug Nodes={",".join(NODES)} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""
        )
        self._daemon(["slurmctld", "-D", "-i"])
        for name in NODES:
            (self.folder / "spool" / name).mkdir(parents=True, exist_ok=True)
            self._daemon(["slurmd", "-D", "-N", name])
        self.wait_nodes("idle")

    def _start_munge(self) -> None:
        if not MUNGE_KEY.exists():
            MUNGE_KEY.parent.mkdir(parents=True, exist_ok=True)
            MUNGE_KEY.write_bytes(os.urandom(1024))
            shutil.chown(MUNGE_KEY, "munge", "munge")
            MUNGE_KEY.chmod(0o400)
        if subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0:
            return  # a munged already answers
        run_dir = Path("/run/munge")
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        self._started.append(
            subprocess.Popen(
                ["runuser", "-u", "munge", "--", "munged", "-F"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
        )
        self._until(
            lambda: subprocess.run(["sh", "-c", "munge -n | unmunge"], capture_output=True).returncode == 0,
            20,
            "munged to answer",
        )

    def _daemon(self, command: List[str]) -> None:
        log = (self.folder / f"{command[0]}-{command[-1]}.out").open("w")
        self._started.append(subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def run(self, *command: str, check: bool = True, timeout: float = 60) -> str:
        done = subprocess.run(list(command), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
        return done.stdout

    def wait_nodes(self, state: str, timeout: float = 60) -> None:
        def ready() -> bool:
            states = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False).split()
            return states[1::2] == [state] * len(NODES)

        self._until(ready, timeout, f"both nodes {state} (slurmctld log: {self.folder}/slurmctld.log)")

    def sbatch(self, script: Path, *options: str, cwd: Optional[Path] = None) -> str:
        out = self.run("sbatch", "--parsable", *options, str(script), timeout=30)
        return out.strip().split(";")[0]

    def job_state(self, job_id: str) -> str:
        """The job's state as the controller has it (PENDING, RUNNING, COMPLETED, ...)."""
        out = self.run("scontrol", "show", "job", job_id, "-o", check=False)
        fields = dict(part.split("=", 1) for part in out.split() if "=" in part)
        return fields.get("JobState", "GONE")

    def wait_job(self, job_id: str, states, timeout: float = 300) -> str:
        found = {}

        def reached() -> bool:
            found["state"] = self.job_state(job_id)
            return found["state"] in states

        self._until(reached, timeout, f"job {job_id} to be {'/'.join(states)}")
        return found["state"]

    @staticmethod
    def _until(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}")

    def stop(self) -> None:
        """Cancel every job still there and wait for them, then stop the daemons; a job
        step's processes (slurmstepd and what it runs) outlive slurmd, so any of this
        cluster's that remain are ended too."""
        if self._started:
            with contextlib.suppress(Exception):
                for job in self.run("squeue", "-h", "-o", "%i", check=False).split():
                    self.run("scancel", job, check=False)
                self._until(lambda: not self.run("squeue", "-h", check=False).strip(), 60, "every job to end")
        for process in reversed(self._started):
            if process.poll() is None:
                process.terminate()
        for process in reversed(self._started):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._started.clear()
        for process in psutil.process_iter(["name"]):
            with contextlib.suppress(psutil.Error):
                if process.info["name"] == "slurmstepd" and process.environ().get("SLURM_CONF") == str(self.conf):
                    for child in process.children(recursive=True):
                        child.kill()
                    process.kill()
