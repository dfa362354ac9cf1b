"""Where a process sits in a job that may span nodes, and torchrun's options as users
type them.

`porter run` takes every torchrun option in either spelling (`--nproc-per-node 2`,
`--nproc_per_node=2`, `--rdzv_conf join_timeout=60`, `--tee 3`) and hands them to torch's
elastic launcher, as `tune run` does. A node learns its rank from `--node-rank`, else
from its cluster: each cluster is one small adapter below (`ClusterEnvironment`) that
reads the rank its scheduler gives the node. Node 0 owns the job's lifecycle
(runtime/lifecycle.py); every node joins the same job folder.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Protocol, Sequence, Tuple

from runtime.events import SchedulerJob  # the scheduler's job this run is part of, as events carry it
from runtime.job import JobError

# torchrun's options that name what to run: porter runs its own worker module.
_PORTERS_OWN = ("module", "no_python", "run_path", "training_script", "training_script_args", "help")

# How long a node waits for the others at the rendezvous unless `--rdzv-conf
# join_timeout=` says: the default of torch (600 s) is longer than a stuck job should wait.
RENDEZVOUS_TIMEOUT_S = 300


def _torchrun_parser() -> argparse.ArgumentParser:
    from torch.distributed.run import get_args_parser

    parser = get_args_parser()

    def refuse(message: str) -> None:  # argparse would print its usage and exit
        raise JobError(f"torchrun options: {message}")

    parser.error = refuse
    return parser


@dataclass(frozen=True)
class TorchrunOptions:
    """torchrun's options as porter passes them on: `--name=value` or `--flag`."""

    given: Tuple[str, ...] = ()

    @classmethod
    def split(cls, tokens: Sequence[str]) -> Tuple["TorchrunOptions", List[str]]:
        """torchrun's options among `tokens` (either spelling, `--opt value` or
        `--opt=value`), and the rest, the config overrides, in their order."""
        # torchrun's parser knows each option's spellings and arity; `tune run` reads
        # its actions the same way.
        actions = _torchrun_parser()._option_string_actions
        options: List[str] = []
        rest: List[str] = []
        items = iter(tokens)
        for token in items:
            if not token.startswith("-"):
                rest.append(token)
                continue
            name, has_value, value = token.partition("=")
            action = actions.get(name)
            if action is None:
                raise JobError(f"{name}: not an option of porter run or of torchrun")
            if action.dest in _PORTERS_OWN:
                raise JobError(f"{name}: porter run starts its own worker; drop {name}")
            spelling = max(action.option_strings, key=len)  # the long one
            if action.nargs == 0:
                if has_value:
                    raise JobError(f"{name}: takes no value")
                options.append(spelling)
                continue
            if not has_value:
                value = next(items, None)
                if value is None:
                    raise JobError(f"{name}: needs a value")
            options.append(f"{spelling}={value}")
        found = cls(tuple(options))
        found.parsed()  # a bad value (`--nnodes x`) is refused now, not at launch
        return found, rest

    def parsed(self, worker_args: Sequence[str] = ("--module", "runtime.worker", "SPEC")) -> argparse.Namespace:
        """torchrun's namespace for these options (its defaults and PET_* variables for
        the rest) and the worker it starts."""
        return _torchrun_parser().parse_args([*self.with_defaults(), *worker_args])

    def with_defaults(self) -> List[str]:
        """The options, plus porter's defaults: one machine without a rendezvous
        endpoint, and a bounded rendezvous."""
        options = list(self.given)
        names = {option.split("=", 1)[0].replace("_", "-") for option in options}
        if "--rdzv-endpoint" not in names and "--master-addr" not in names and "--standalone" not in names:
            options.append("--standalone")
        conf = self.value("rdzv_conf")
        if "join_timeout" not in _pairs(conf or ""):
            joined = f"{conf},join_timeout={RENDEZVOUS_TIMEOUT_S}" if conf else f"join_timeout={RENDEZVOUS_TIMEOUT_S}"
            options = [o for o in options if not o.startswith(("--rdzv-conf=", "--rdzv_conf="))]
            options.append(f"--rdzv-conf={joined}")
        return options

    def value(self, dest: str) -> Optional[str]:
        """The value given for option `dest` (`nproc_per_node`), or None."""
        for option in self.given:
            name, _, value = option.partition("=")
            if name.lstrip("-").replace("-", "_") == dest:
                return value
        return None

    def __bool__(self) -> bool:
        return bool(self.given)

    def rendezvous_timeout_s(self) -> float:
        """How long a node waits for the others to join."""
        return float(_pairs(self.parsed().rdzv_conf or "").get("join_timeout", RENDEZVOUS_TIMEOUT_S))


class RendezvousFailed(Exception):
    """The job's nodes did not all meet at the rendezvous in time."""


# -- which node this is -------------------------------------------------------------


class ClusterEnvironment(Protocol):
    """How one kind of cluster tells a node its rank, and which of the scheduler's jobs
    it runs: a third launcher is one of these."""

    name: str

    def node_rank(self, environ: Mapping[str, str]) -> Optional[int]:
        """This node's rank, or None when this process does not run under it."""

    def scheduler_job(self, environ: Mapping[str, str]) -> Optional[SchedulerJob]:
        """The scheduler's job, or None."""

    def why_signalled(self, environ: Mapping[str, str]) -> Optional[str]:
        """Why the scheduler is stopping the job (its time limit), when it can tell."""


class TorchrunEnvironment:
    """torchrun's own variables, which Kubeflow's PyTorchJob sets in each pod."""

    name = "torchrun (PET_NODE_RANK)"

    def node_rank(self, environ: Mapping[str, str]) -> Optional[int]:
        return _integer(environ, "PET_NODE_RANK")

    def scheduler_job(self, environ: Mapping[str, str]) -> Optional[SchedulerJob]:
        return None

    def why_signalled(self, environ: Mapping[str, str]) -> Optional[str]:
        return None


class SlurmEnvironment:
    """One `porter run` per node (`srun --ntasks-per-node=1`)."""

    name = "Slurm (SLURM_NODEID)"

    def node_rank(self, environ: Mapping[str, str]) -> Optional[int]:
        return _integer(environ, "SLURM_NODEID")

    def scheduler_job(self, environ: Mapping[str, str]) -> Optional[SchedulerJob]:
        if "SLURM_JOB_ID" not in environ:
            return None
        return SchedulerJob("slurm", environ["SLURM_JOB_ID"], _integer(environ, "SLURM_RESTART_COUNT") or 0)

    # A signal while the job still runs, this close to its time limit, is `--signal`'s
    # warning (Slurm checks limits about every 30 s; warnings are minutes ahead).
    NEAR_THE_LIMIT_S = 600

    def why_signalled(self, environ: Mapping[str, str]) -> Optional[str]:
        """`the Slurm job's time limit (it ends in 0:28)`: what `squeue` says of the job."""
        import subprocess

        if "SLURM_JOB_ID" not in environ:
            return None
        try:
            done = subprocess.run(
                ["squeue", "-h", "-j", environ["SLURM_JOB_ID"], "-o", "%T %L"],
                capture_output=True,
                text=True,
                timeout=5,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        state, _, left = done.stdout.strip().partition(" ")
        seconds = _slurm_duration(left)
        if state == "RUNNING" and seconds is not None and seconds <= self.NEAR_THE_LIMIT_S:
            return f"the Slurm job's time limit (it ends in {left})"
        return None


def _slurm_duration(text: str) -> Optional[int]:
    """Seconds of a Slurm duration: `[days-][hours:]minutes:seconds`; None for others."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if not all(part.isdigit() for part in parts) or not 2 <= len(parts) <= 3 or (days and not days.isdigit()):
        return None
    seconds = 0
    for part in parts:
        seconds = seconds * 60 + int(part)
    return seconds + int(days or 0) * 86400


def why_signalled(environ: Mapping[str, str] = os.environ) -> Optional[str]:
    return next((why for why in (env.why_signalled(environ) for env in ENVIRONMENTS) if why), None)


ENVIRONMENTS: Tuple[ClusterEnvironment, ...] = (TorchrunEnvironment(), SlurmEnvironment())


def scheduler_job(environ: Mapping[str, str] = os.environ) -> Optional[SchedulerJob]:
    """The scheduler's job this process runs in, if a scheduler started it."""
    return next((job for job in (env.scheduler_job(environ) for env in ENVIRONMENTS) if job is not None), None)


def _integer(environ: Mapping[str, str], name: str) -> Optional[int]:
    value = environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise JobError(f"{name}: must be a whole number, got {value!r}") from None


@dataclass(frozen=True)
class NodePlace:
    """This node among the job's: its rank and how many nodes the job has at most."""

    node_rank: int = 0
    nnodes: int = 1

    @property
    def owner(self) -> bool:
        """Node 0 owns the job's lifecycle: the lock, the first and the last event."""
        return self.node_rank == 0

    @classmethod
    def of(cls, options: TorchrunOptions, environ: Mapping[str, str] = os.environ) -> "NodePlace":
        nnodes = _most_nodes(options)
        given = options.value("node_rank")
        if given is not None:
            rank = _integer({"--node-rank": given}, "--node-rank")
        else:
            found = [(env.name, env.node_rank(environ)) for env in ENVIRONMENTS]
            found = [(name, rank) for name, rank in found if rank is not None]
            if found:
                rank = found[0][1]
            elif nnodes == 1:
                rank = 0
            else:
                raise JobError(
                    f"--nnodes {nnodes}: which node is this? give --node-rank, or run under a cluster "
                    f"that says ({', '.join(env.name for env in ENVIRONMENTS)})"
                )
        if not 0 <= rank < nnodes:
            raise JobError(f"--node-rank {rank}: must be from 0 to {nnodes - 1} for {nnodes} nodes")
        return cls(rank, nnodes)


def world_size(options: TorchrunOptions) -> int:
    """Processes in the whole job: nodes times processes per node."""
    per_node = str(options.parsed().nproc_per_node)
    return _most_nodes(options) * (int(per_node) if per_node.isdigit() else 1)


def _most_nodes(options: TorchrunOptions) -> int:
    """The job's node count, or its maximum for an elastic `--nnodes MIN:MAX`."""
    given = str(options.parsed().nnodes)
    try:
        return int(given.split(":")[-1])
    except ValueError:
        raise JobError(f"--nnodes: must be N or MIN:MAX, got {given!r}") from None


def _pairs(text: str) -> Dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)
