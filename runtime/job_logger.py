"""The job's event log: one JSON object a line in events.jsonl, fanned out to sinks.

Events follow the contract of runtime/events.py: an envelope (`event_id`, `seq`,
`schema_version`, `job_id`, `user_id`, `create_ts`, `workflow`, `operation`) around the
operation's `data`. Before an event leaves the process its secrets are redacted (keys
that look secret) and scrubbed (the config's secret values, wherever they are quoted).
The file gets each event before the call returns (flushed; epoch, weights and terminal
events also fsynced); other sinks get it from their own thread. Safe to call from the
training loop and a heartbeat thread at once.
"""

from __future__ import annotations

import datetime
import heapq
import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from runtime.events import event_data, keyword_signature, new_event_id, SCHEMA_VERSION
from runtime.job import JobPaths, JobRef
from runtime.secrets import redact, scrub
from runtime.sinks import DEFAULT_MAX_QUEUE, Event, JsonlFileSink, QueuedSink, Sink

# How long closing waits for slow sinks before counting what they hold as dropped.
SINK_CLOSE_TIMEOUT_S = 5.0


def utc_now() -> str:
    return utc_text(time.time())


def utc_text(timestamp: float) -> str:
    """A Unix time as events write it: UTC, ISO 8601, microseconds."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat(timespec="microseconds")


def read_events(path: Path) -> List[Event]:
    """The events of a log; a torn last line (a process killed mid-write) is skipped."""
    if not path.exists():
        return []
    return parse_events(path.read_text(encoding="utf-8", errors="replace"))


def parse_events(text: str) -> List[Event]:
    """The events of a log's text, skipping lines that are not whole JSON objects."""
    events = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict):
            events.append(event)
    return events


def read_job_events(paths: JobPaths) -> List[Event]:
    """Every node's events in time order: node 0's log (`events.jsonl`) and each other
    node's (`events-node-N.jsonl`) merged."""
    return merge_logs([read_events(path) for path in paths.event_logs()])


def merge_logs(logs: List[List[Event]]) -> List[Event]:
    """Logs, each already in time order, merged by `create_ts`."""
    if len(logs) <= 1:
        return logs[0] if logs else []
    return list(heapq.merge(*logs, key=lambda event: event.get("create_ts", "")))


def sink_reports_since(folder: Path, since: str) -> List[Dict[str, Any]]:
    """What the job's other processes' sinks dropped, and why, as they left it in
    `folder` since `since`: `{"dropped_events": {...}, "sink_errors": {...}}` each."""
    reports = []
    for path in sorted(folder.glob("*.json")) if folder.exists() else ():
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if report.get("create_ts", "") >= since:
            reports.append(report)
    return reports


def logged_keys(events: Iterable[Event]) -> Set[Tuple[str, int, int]]:
    """Which steps and epochs a log already has, per rank: not logged again on resume."""
    keys = set()
    for event in events:
        data = event.get("data") or {}
        if event.get("operation") == "step":
            keys.add(("step", data.get("gpu_rank"), data.get("step_num")))
        elif event.get("operation") == "epoch":
            keys.add(("epoch", data.get("gpu_rank"), data.get("epoch_num")))
    return keys


class JobLogger:
    def __init__(
        self,
        *,
        job: JobRef,
        events_path: Path,
        rank: Optional[int] = 0,
        node_rank: int = 0,
        sinks: Sequence[Sink] = (),
        already_logged: Iterable[Tuple[str, int, int]] = (),
        drops_file: Optional[Path] = None,
        secrets: Iterable[str] = (),
        file_mode: int = 0o600,
        after_durable: Optional[Callable[[], None]] = None,
    ) -> None:
        # `rank` is None for `porter run` itself, which is no training process.
        self.job, self.rank, self.node_rank = job, rank, node_rank
        self._secrets = tuple(secrets)  # the config's secret values, scrubbed from every event
        self._seq = 0
        self.events_path = events_path
        # Where a process that does not end the log (a supervised job's worker) leaves
        # its sinks' drop counts, for the one that does.
        self.drops_file = drops_file
        self._file = JsonlFileSink(events_path, file_mode)
        # Called once each epoch, weights or terminal event is on disk, in the caller's
        # thread: a remote output root uploads the job folder then (runtime/storage.py),
        # and what it raises fails the caller.
        self._after_durable = after_durable
        self._queued = [QueuedSink(sink, max_queue=getattr(sink, "max_queue", DEFAULT_MAX_QUEUE)) for sink in sinks]
        self._seen = set(already_logged)
        self._lock = threading.Lock()
        self._closed = False
        self._started = time.monotonic()
        self._heartbeat_stop = threading.Event()
        self._heartbeat: Optional[threading.Thread] = None

    # -- events ---------------------------------------------------------------------

    def log(self, operation: str, data: Optional[Dict[str, Any]] = None, *, durable: bool = False) -> None:
        """An event of `operation`, its `data` as the contract has it (TypeError names a
        missing or unknown field), secrets redacted."""
        data = self._safe(redact(event_data(operation, data or {})))
        with self._lock:
            if self._closed:
                raise RuntimeError(f"job logger of {self.job.job_id} is closed; cannot log {operation}")
            self._seq += 1
            event = {
                "event_id": new_event_id(),
                "seq": self._seq,
                "schema_version": SCHEMA_VERSION,
                "job_id": self.job.job_id,
                "user_id": self.job.user_id,
                "create_ts": utc_now(),
                "workflow": self.job.workflow,
                "node_rank": self.node_rank,
                "gpu_rank": self.rank,
                "operation": operation,
                "data": data,
            }
            self._file.emit([event], sync=durable)
            for sink in self._queued:
                sink.put(event)
        if durable and self._after_durable is not None:
            self._after_durable()

    def _safe(self, value: Any) -> Any:
        """`value` with the config's secret values scrubbed from its strings."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return scrub(value, self._secrets)
        if isinstance(value, dict):
            return {key: self._safe(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._safe(item) for item in value]
        return value

    def log_step(self, **fields: Any) -> None:
        """A `step` event; the keyword arguments are exactly its data fields."""
        data = event_data("step", {name: _plain(value) for name, value in fields.items()})
        if self._first_time(("step", data["gpu_rank"], data["step_num"])):
            self.log("step", data)

    def log_epoch(self, **fields: Any) -> None:
        """An `epoch` event, once per epoch and rank; fsynced."""
        data = event_data("epoch", {name: _plain(value) for name, value in fields.items()})
        if self._first_time(("epoch", data["gpu_rank"], data["epoch_num"])):
            self.log("epoch", data, durable=True)

    log_step.__signature__ = keyword_signature("step")
    log_epoch.__signature__ = keyword_signature("epoch")

    def _first_time(self, key: Tuple[str, int, int]) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    # -- heartbeat ------------------------------------------------------------------

    def start_heartbeat(self, interval_s: float) -> None:
        if interval_s <= 0 or self._heartbeat is not None:
            return
        self._heartbeat = threading.Thread(target=self._beat, args=(interval_s,), name="porter-heartbeat", daemon=True)
        self._heartbeat.start()

    def _beat(self, interval_s: float) -> None:
        import psutil

        process = psutil.Process()
        while not self._heartbeat_stop.wait(interval_s):
            try:
                self.log(
                    "heartbeat",
                    {
                        "gpu_rank": self.rank,
                        "pid": os.getpid(),
                        "uptime_s": round(time.monotonic() - self._started, 3),
                        "rss_bytes": process.memory_info().rss,
                    },
                )
            except RuntimeError:  # closed between the wait and the log
                return

    # -- closing --------------------------------------------------------------------

    def close(
        self,
        operation: Optional[str] = None,
        data: Optional[Dict[str, Any]] = None,
        other_reports: Iterable[Dict[str, Any]] = (),
    ) -> None:
        """Stop the heartbeat, end the log with `operation` (a terminal event, if any)
        carrying what this logger's sinks and those of `other_reports` (the job's other
        processes) dropped, and the last error of each that did, and close every sink."""
        if self._closed:
            return
        self._heartbeat_stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        deadline = time.monotonic() + SINK_CLOSE_TIMEOUT_S
        for sink in self._queued:
            sink.drain(max(0.0, deadline - time.monotonic()))
        dropped = {sink.name: sink.abandon() for sink in self._queued}
        errors = {sink.name: sink.last_error for sink in self._queued if sink.last_error}
        for report in other_reports:
            for name, count in report.get("dropped_events", {}).items():
                dropped[name] = dropped.get(name, 0) + count
            errors.update(report.get("sink_errors") or {})
        if operation is not None:
            self.log(operation, {**(data or {}), "dropped_events": dropped, "sink_errors": errors}, durable=True)
        elif self.drops_file is not None and dropped:
            self.drops_file.parent.mkdir(parents=True, exist_ok=True)
            self.drops_file.write_text(
                json.dumps({"create_ts": utc_now(), "dropped_events": dropped, "sink_errors": errors})
            )
        with self._lock:
            self._closed = True
        for sink in self._queued:
            sink.close(max(0.1, deadline - time.monotonic()))
        self._file.close()


def _plain(value: Any) -> Any:
    """Tensors and numpy scalars as Python numbers; everything else as given."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value
