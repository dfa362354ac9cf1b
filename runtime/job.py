"""The job folder: `<output root>/<user_id>/<job_id>/`, and the ids that name it.

Everything a job writes lives under its folder: the event log, the resolved config,
checkpoints, metric logs, the validated dataset, caches and error reports.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional


class JobError(Exception):
    """An expected failure of a job's inputs: bad ids, dataset or config. Exit code 2."""


_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def validate_id(field: str, value: object) -> str:
    if isinstance(value, str) and _ID.fullmatch(value) and value not in (".", ".."):
        return value
    shown = repr(value) if len(str(value)) <= 40 else f"{str(value)[:40]!r}... ({len(str(value))} characters)"
    raise JobError(f"{field} {shown} is not allowed: use 1 to 128 of A-Z a-z 0-9 . _ -, and not '.' or '..'")


def log_node(name: str) -> Optional[int]:
    """The node whose event log a file is, by its name: 0 for `events.jsonl`, N for
    `events-node-N.jsonl`; None for any other file."""
    if name == "events.jsonl":
        return 0
    match = re.fullmatch(r"events-node-([0-9]+)\.jsonl", name)
    return int(match.group(1)) if match else None


# What lists a job folder's event logs, on a local disk or any fsspec file system.
EVENT_LOG_GLOB = "events*.jsonl"


def event_logs(paths: Iterable[str]) -> List[str]:
    """The event logs among `paths` (paths or URLs, of one job folder, as a listing of
    `EVENT_LOG_GLOB` gives them): node 0's first, then each other node's in order."""
    found = ((log_node(path.rsplit("/", 1)[-1]), path) for path in paths)
    return [path for node, path in sorted((node, path) for node, path in found if node is not None)]


@dataclass(frozen=True)
class JobRef:
    """Which job: its id, the user who owns it and the recipe it runs (the workflow),
    as every event names them."""

    job_id: str
    user_id: str
    workflow: str


@dataclass(frozen=True)
class JobPaths:
    root: Path

    @classmethod
    def for_job(cls, output_root: Path, user_id: str, job_id: str) -> "JobPaths":
        return cls(Path(output_root) / validate_id("user_id", user_id) / validate_id("job_id", job_id))

    @property
    def events(self) -> Path:
        """The event log of node 0, and of the job when it runs on one machine."""
        return self.root / "events.jsonl"

    def events_of(self, node_rank: int) -> Path:
        """The event log a node's processes append to: one per node, as appends from
        several hosts to one file are not atomic on a shared file system (NFS)."""
        return self.events if node_rank == 0 else self.root / f"events-node-{node_rank}.jsonl"

    def event_logs(self) -> List[Path]:
        """The job's event logs that exist: node 0's first."""
        return [Path(path) for path in event_logs(path.as_posix() for path in self.root.glob(EVENT_LOG_GLOB))]

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def output_log(self, node_rank: int) -> Path:
        """What node `node_rank`'s processes printed (torchtune's own lines, tracebacks),
        kept off the console unless `porter run --verbose`."""
        return self.logs / f"output-node-{node_rank}.log"

    @property
    def report(self) -> Path:
        """The job's HTML report (runtime/report.py), written after its terminal event."""
        return self.root / "report.html"

    @property
    def errors(self) -> Path:
        return self.root / "errors"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def sink_drops(self) -> Path:
        return self.root / "sinks"

    @property
    def nodes(self) -> Path:
        """How each node's `porter run` stands: `node-N.json` (runtime/lifecycle.py)."""
        return self.root / "nodes"

    def create(self, dir_mode: int = 0o700) -> "JobPaths":
        """Make the job's folder (and its user's), `dir_mode`, whatever the umask."""
        for folder in (self.root.parent, self.root):
            if not folder.exists():
                folder.mkdir(parents=True, exist_ok=True)
                os.chmod(folder, dir_mode)
        return self


@contextlib.contextmanager
def private_files(file_mode: int, dir_mode: int, root: Path) -> Iterator[None]:
    """Everything the job's process creates meanwhile is no more open than `dir_mode`
    (folders) allows; when it ends, every file and folder under `root` gets exactly
    `file_mode` and `dir_mode`. Libraries (torchtune's checkpointers) create files
    with the process's umask, which this sets."""
    previous = os.umask(0o777 & ~dir_mode)
    try:
        yield
    finally:
        os.umask(previous)
        apply_modes(root, file_mode, dir_mode)


def apply_modes(root: Path, file_mode: int, dir_mode: int) -> None:
    for folder, _folders, files in os.walk(root):
        os.chmod(folder, dir_mode)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, file_mode)


class JobCancelled(BaseException):
    """Raised in the training thread when the job is told to stop by a signal."""

    def __init__(self, signum: int, why: Optional[str] = None) -> None:
        import signal

        super().__init__(f"received signal {signal.Signals(signum).name}" + (f": {why}" if why else ""))
        self.signum = signum


class JobLock:
    """Holds `<job folder>/.lock` so two runs of one job cannot share its folder."""

    def __init__(self, paths: JobPaths) -> None:
        self.path = paths.root / ".lock"
        self._fd = -1

    def __enter__(self) -> "JobLock":
        import fcntl

        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise JobError(f"job folder {self.path.parent} is in use by another run") from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        os.close(self._fd)
