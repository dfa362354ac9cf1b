"""Error reports: what failed, where, with its traceback, kept in the job folder.

One file per failing process, `errors/rank-<rank>-<pid>.json` for a training process
and `errors/node-<node>-<pid>.json` for a node's `porter run`, so a resumed job's
reports never overwrite the last attempt's.
"""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Dict, Iterable, Optional

from runtime.job import JobCancelled, JobPaths
from runtime.job_logger import utc_now
from runtime.secrets import scrub
from runtime.files import write_atomically

_EVENT_FIELDS = ("error_type", "message", "gpu_rank", "node_rank", "traceback_file")


def terminal_operation(error: BaseException) -> str:
    return "job_cancelled" if isinstance(error, (JobCancelled, KeyboardInterrupt)) else "job_failed"


def write_error_report(
    paths: JobPaths, rank: Optional[int], node_rank: int, error: BaseException, secrets: Iterable[str] = ()
) -> Dict[str, Any]:
    """Write the report of training process `rank` (None: this node's `porter run`) (the
    first error it reports wins) and return the event data that names it; the
    config's `secrets` are scrubbed from both."""
    who = f"rank-{rank}" if rank is not None else f"node-{node_rank}"
    report = paths.errors / f"{who}-{os.getpid()}.json"
    data = {
        "error_type": type(error).__name__,
        "message": scrub(str(error) or type(error).__name__, secrets),
        "gpu_rank": rank,
        "node_rank": node_rank,
        "traceback_file": str(report.relative_to(paths.root)),
    }
    if report.exists():
        return read_report(report, paths) or data
    report.parent.mkdir(parents=True, exist_ok=True)
    trace = scrub("".join(traceback.format_exception(type(error), error, error.__traceback__)), secrets)
    write_atomically(report, json.dumps({**data, "create_ts": utc_now(), "traceback": trace}, indent=1))
    return data


def read_report(report, paths: JobPaths) -> Optional[Dict[str, Any]]:
    try:
        content = json.loads(report.read_text())
    except (OSError, ValueError):
        return None
    return {key: content[key] for key in _EVENT_FIELDS if key in content} | {"create_ts": content.get("create_ts", "")}


def first_failure(paths: JobPaths, since: str) -> Optional[Dict[str, Any]]:
    """The error of the process that failed first since `since` (an ISO timestamp).
    Processes stopped because another failed report JobCancelled: they come last."""
    if not paths.errors.exists():
        return None
    reports = [read_report(path, paths) for path in paths.errors.glob("*.json")]
    reports = [r for r in reports if r is not None and r["create_ts"] >= since]
    if not reports:
        return None
    first = min(reports, key=lambda r: (r["error_type"] == "JobCancelled", r["create_ts"]))
    return {key: first.get(key) for key in _EVENT_FIELDS}
