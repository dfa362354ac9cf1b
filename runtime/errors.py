"""Error reports: what failed, where, with its traceback, kept in the job folder."""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Dict, Optional

from runtime.job import JobCancelled, JobPaths
from runtime.job_logger import utc_now


def terminal_operation(error: BaseException) -> str:
    return "job_cancelled" if isinstance(error, (JobCancelled, KeyboardInterrupt)) else "job_failed"


def write_error_report(paths: JobPaths, rank: int, error: BaseException) -> Dict[str, Any]:
    """Write `errors/rank-<rank>.json` (unless this rank has one) and return the
    event data that names it."""
    report = paths.error_report(rank)
    data = {
        "error_type": type(error).__name__,
        "message": str(error) or type(error).__name__,
        "gpu_rank": rank,
        "traceback_file": str(report.relative_to(paths.root)),
    }
    if not report.exists():
        report.parent.mkdir(parents=True, exist_ok=True)
        partial = report.with_suffix(".partial")
        partial.write_text(
            json.dumps(
                {
                    **data,
                    "create_ts": utc_now(),
                    "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
                },
                indent=1,
            )
        )
        os.replace(partial, report)
    return data


def read_error_report(paths: JobPaths, rank: int) -> Optional[Dict[str, Any]]:
    try:
        report = json.loads(paths.error_report(rank).read_text())
    except (OSError, ValueError):
        return None
    return {key: report[key] for key in ("error_type", "message", "gpu_rank", "traceback_file") if key in report}
