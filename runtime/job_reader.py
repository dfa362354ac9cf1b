"""Reading job folders for people: one summary line per job (`porter jobs`), one job's
whole log (`porter show`, `porter report`), and a running job's events as they come
(`porter show --follow`, `porter run`'s console).

It reads only the event logs, under a local output root or an fsspec URL alike. A
summary reads the first line of node 0's log (`job_started`) and the tail of each log,
widening the tail only when it holds no step yet: thousands of jobs list in about the
time it takes to open their files.
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from runtime.events import TERMINAL
from runtime.job import event_logs, EVENT_LOG_GLOB, JobError, log_node, validate_id
from runtime.job_logger import merge_logs, parse_events
from runtime.sinks import Event

STATUSES = ("running", "completed", "failed", "cancelled", "interrupted", "stale")
_STATUS_OF = {"job_completed": "completed", "job_failed": "failed", "job_cancelled": "cancelled"}

# A job that has written nothing for this many heartbeat intervals is stale: its
# processes are gone without a terminal event (killed, or their host went down).
STALE_HEARTBEATS = 3
# The heartbeat interval of jobs whose `job_started` does not say it (porter's default).
DEFAULT_HEARTBEAT_S = 30.0
_HEAD_BYTES, _TAIL_BYTES = 4096, 16 * 1024


@dataclass(frozen=True)
class JobSummary:
    user_id: str
    job_id: str
    recipe: str
    status: str
    step: Optional[int]
    step_len: Optional[int]
    epoch: Optional[int]  # epochs done
    epoch_len: Optional[int]
    loss: Optional[float]  # the last step's
    started: str  # ISO 8601, UTC
    duration_s: float  # to the terminal event, or to now while it runs
    nnodes: int
    world_size: int
    error: Optional[str]  # "Type: message" of a failed or cancelled job
    scheduler_job: Optional[str] = None  # "slurm 12 (restart 1)": the latest attempt's scheduler job

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def parse_ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def utc_time(text: str) -> str:
    """An event's ISO timestamp as people read it: `2026-11-29 19:55:29` (UTC)."""
    return datetime.datetime.fromisoformat(text).astimezone(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class OutputRootReader:
    """The job folders of an output root: `<root>/<user_id>/<job_id>/events.jsonl`."""

    def __init__(self, output_root: str) -> None:
        import fsspec

        from runtime.storage import OutputRoot

        parsed = OutputRoot.parse(output_root)  # a JobError names a bad scheme
        self.given = output_root
        self.remote = parsed.remote
        self.fs, self.root = fsspec.core.url_to_fs(output_root if parsed.remote else parsed.given)

    def url_of(self, folder: str) -> str:
        """How a person names `folder`: a path, or a URL on a remote root."""
        return self.fs.unstrip_protocol(folder) if self.remote else folder

    def local_path(self, folder: str) -> Optional[Path]:
        """`folder` on this machine's disk, or None on a remote root."""
        return None if self.remote else Path(folder)

    def job_folders(self, user_id: Optional[str] = None) -> List[Tuple[str, str, str]]:
        """(user_id, job_id, folder) of each job that has an event log."""
        return [
            (folder.rsplit("/", 2)[1], folder.rsplit("/", 1)[1], folder) for folder in self._logs_by_folder(user_id)
        ]

    def _logs_by_folder(self, user_id: Optional[str]) -> Dict[str, List[str]]:
        """Each job folder's event logs, node 0's first, from one listing of the root."""
        user = validate_id("user_id", user_id) if user_id else "*"
        found: Dict[str, List[str]] = {}
        for log in self.fs.glob(f"{self.root.rstrip('/')}/{user}/*/{EVENT_LOG_GLOB}"):
            found.setdefault(log.rsplit("/", 1)[0], []).append(log)
        logs_by_folder = {folder: event_logs(logs) for folder, logs in sorted(found.items())}
        # A job's folder is one with node 0's log, which `event_logs` puts first.
        return {
            folder: logs
            for folder, logs in logs_by_folder.items()
            if logs and log_node(logs[0].rsplit("/", 1)[-1]) == 0
        }

    def find(self, job_id: str, user_id: Optional[str] = None) -> Tuple[str, str]:
        """(user_id, folder) of `job_id`; a JobError when no user, or several, have it."""
        validate_id("job_id", job_id)
        matches = [(user, folder) for user, job, folder in self.job_folders(user_id) if job == job_id]
        if not matches:
            owner = f" of user {user_id}" if user_id else ""
            raise JobError(f"no job {job_id}{owner} under {self.given}")
        if len(matches) > 1:
            users = ", ".join(user for user, _ in matches)
            raise JobError(f"job {job_id} exists for several users ({users}): name one with --user")
        return matches[0]

    def logs(self, folder: str) -> List[str]:
        """The folder's event logs: node 0's first, then each other node's."""
        return event_logs(self.fs.glob(f"{folder}/{EVENT_LOG_GLOB}"))

    def events(self, folder: str) -> List[Event]:
        """Every event of the job, every node's, in time order."""
        return merge_logs([parse_events(self._text(self.fs.cat_file(log))) for log in self.logs(folder)])

    # -- summaries ------------------------------------------------------------------

    def summaries(self, user_id: Optional[str] = None, now: Optional[float] = None) -> List[JobSummary]:
        """One summary per job, the newest first. A job whose log cannot be read is
        left out, and said in `self.unreadable`: one bad log never hides the others."""
        now = time.time() if now is None else now
        found = []
        self.unreadable: List[str] = []
        for folder, logs in self._logs_by_folder(user_id).items():
            try:
                found.append(self.summary(folder, now, logs))
            except (ValueError, KeyError, TypeError) as error:
                self.unreadable.append(f"{folder}: its event log cannot be read ({type(error).__name__}: {error})")
        return sorted((s for s in found if s is not None), key=lambda s: s.started, reverse=True)

    def summary(self, folder: str, now: float, logs: Optional[List[str]] = None) -> Optional[JobSummary]:
        """How the job stands, from the head and tail of its logs; None before it started."""
        logs = logs or self.logs(folder)
        first = self._first_event(logs[0])
        if first is None or first.get("operation") != "job_started":
            return None
        latest = self._latest(logs[0])
        ended = latest.get("terminal")  # the end of the latest attempt, if it ended
        started = latest.get("job_started") or first
        last_seen = max([latest["last"]] + [self._latest(log, need_step=False).get("last", 0.0) for log in logs[1:]])
        heartbeat_s = started["data"].get("heartbeat_s", DEFAULT_HEARTBEAT_S)
        if ended is not None:
            status = _STATUS_OF[ended["operation"]]
        elif not self.remote and _owner_gone(Path(folder)):
            status = "interrupted"
        elif heartbeat_s and now - last_seen > STALE_HEARTBEATS * heartbeat_s:
            status = "stale"
        else:
            status = "running"
        step = (latest.get("step") or {}).get("data", {})
        # An epoch event after the last step means that step's epoch is done.
        epoch = (latest.get("epoch") or {}).get("data", {})
        end_ts = parse_ts(ended["create_ts"]) if ended is not None else (now if status == "running" else last_seen)
        scheduled = started["data"].get("scheduler_job")
        error = None
        if ended is not None and ended["operation"] != "job_completed":
            error = f"{ended['data'].get('error_type')}: {ended['data'].get('message')}"
        user_id, job_id = folder.rsplit("/", 2)[1:]
        return JobSummary(
            user_id=user_id,
            job_id=job_id,
            recipe=first["data"].get("recipe", first.get("workflow", "")),
            status=status,
            step=step.get("step_num"),
            step_len=step.get("step_len"),
            epoch=epoch["epoch_num"] if epoch else (step["epoch_num"] - 1 if step else None),
            epoch_len=step.get("epoch_len", epoch.get("epoch_len")),
            loss=step.get("step_loss"),
            started=first["create_ts"],
            duration_s=max(0.0, end_ts - parse_ts(first["create_ts"])),
            nnodes=started["data"].get("nnodes", 1),
            world_size=started["data"].get("world_size", 1),
            error=error,
            scheduler_job=scheduler_text(scheduled),
        )

    def _first_event(self, log: str) -> Optional[Event]:
        try:
            head = self.fs.cat_file(log, start=0, end=_HEAD_BYTES)
        except FileNotFoundError:
            return None
        try:
            return json.loads(head.split(b"\n", 1)[0])
        except ValueError:
            return None

    def _latest(self, log: str, need_step: bool = True) -> Dict[str, Any]:
        """From the end of `log` backwards (`_scan_back`). Reads a tail of the log, then
        four times more while it holds no step (`need_step`) and there is more."""
        size = self.fs.size(log)
        want = _TAIL_BYTES
        while True:
            start = max(0, size - want)
            data = self.fs.cat_file(log, start=start, end=size)
            lines = data.split(b"\n")[1 if start > 0 else 0 :]  # the first line may be cut
            found = _scan_back(lines)
            if start == 0 or "step" in found or not need_step:
                return found
            want *= 4

    @staticmethod
    def _text(data: bytes) -> str:
        return data.decode("utf-8", errors="replace")


def _scan_back(lines: List[bytes]) -> Dict[str, Any]:
    """From a log's lines, newest first: the time of the last event (`last`), the last
    `step`, an `epoch` logged after it, and which came last of `job_started` and a
    terminal event (under that name, or `terminal`). Parses as few lines as it can:
    heartbeats, most of a quiet log, are skipped by their text (events are written
    compact: `"operation":"heartbeat"`)."""
    found: Dict[str, Any] = {}
    for line in reversed(lines):
        if not line.strip():
            continue
        if "last" in found and b'"operation":"heartbeat"' in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a torn line
        found.setdefault("last", parse_ts(event.get("create_ts", "1970-01-01T00:00:00+00:00")))
        operation = event.get("operation")
        if operation == "step" or (operation == "epoch" and "step" not in found):
            found.setdefault(operation, event)
        elif operation in TERMINAL and "job_started" not in found:
            found.setdefault("terminal", event)
        elif operation == "job_started" and "terminal" not in found:
            found.setdefault("job_started", event)
        if "step" in found and ("terminal" in found or "job_started" in found):
            break
    return found


def scheduler_text(scheduled: Optional[Dict[str, Any]]) -> Optional[str]:
    """`slurm 12`, `slurm 12 (restart 1)`: a job_started's scheduler job, for people."""
    if not scheduled:
        return None
    restart = f" (restart {scheduled['restart_count']})" if scheduled.get("restart_count") else ""
    return f"{scheduled['scheduler']} {scheduled['job_id']}{restart}"


def _owner_gone(folder: Path) -> bool:
    """Whether the job's owner (node 0's `porter run`) ran on this host and is gone
    without a terminal event: killed, or its scheduler stopped it. Only this host can
    tell; elsewhere a silent job becomes stale after its heartbeats."""
    import socket

    import psutil

    try:
        state = json.loads((folder / "nodes" / "node-0.json").read_text())
    except (OSError, ValueError):
        return False
    if state.get("host") != socket.gethostname() or not isinstance(state.get("pid"), int):
        return False
    try:
        # A live process of that id started after the owner said it runs is another one.
        return psutil.Process(state["pid"]).create_time() > parse_ts(state["update_ts"]) + 1
    except psutil.NoSuchProcess:
        return True


def job_facts(events: Sequence[Event]) -> List[Tuple[str, Any]]:
    """The facts a person asks first, from the job's start, config and last step:
    processes, model, dataset, epochs, learning rate, steps, last loss."""
    data_of = {e.get("operation"): e.get("data") or {} for e in events}  # the last of each
    started = data_of.get("job_started", {})
    config = data_of.get("job_config", {}).get("config") or {}
    optimizer = config.get("optimizer")
    facts = [
        ("processes", f"{started.get('world_size', 1)} on {started.get('nnodes', 1)} node(s)"),
        ("model", _component(config.get("model"))),
        ("dataset", started.get("dataset") or _component(config.get("dataset"))),
        ("epochs", config.get("epochs")),
        ("learning rate", optimizer.get("lr") if isinstance(optimizer, dict) else None),
    ]
    step = data_of.get("step")
    if step:
        facts += [("steps", f"{step['step_num']}/{step['step_len']}"), ("last loss", f"{step['step_loss']:.4g}")]
    return [(name, value) for name, value in facts if value not in (None, "")]


def _component(section: Any) -> Optional[str]:
    return str(section["_component_"]) if isinstance(section, dict) and section.get("_component_") else None


def follow_log(
    fs: Any, log: str, offset: int = 0, stop: Optional[threading.Event] = None, poll_s: float = 0.25
) -> Iterator[Event]:
    """The events of `log` (node 0's) from byte `offset` on, as they are written, until
    the terminal event of the job's latest attempt, or until `stop` is set and nothing
    more was written."""
    pending = b""
    while True:
        size = fs.size(log) if fs.exists(log) else 0
        if size <= offset:
            if stop is not None and stop.is_set():
                return
            time.sleep(poll_s)
            continue
        data = pending + fs.cat_file(log, start=offset, end=size)
        offset = size
        *lines, pending = data.split(b"\n")
        events = parse_events(b"\n".join(lines).decode("utf-8", errors="replace"))
        # An attempt that ended and was resumed later in the same read does not stop it.
        restarts = [i for i, event in enumerate(events) if event.get("operation") == "job_started"]
        for index, event in enumerate(events):
            yield event
            if event.get("operation") in TERMINAL and not any(i > index for i in restarts):
                return
