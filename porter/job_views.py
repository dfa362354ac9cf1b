"""What `porter jobs` and `porter show` print: a table of jobs, one job's summary with a
loss sparkline. They read the event logs through runtime/job_reader.py."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from runtime.console import duration, end_line, weights_line
from runtime.events import TERMINAL
from runtime.job_reader import job_facts, JobSummary, scheduler_text, utc_time
from runtime.sinks import Event

_SPARKS = "▁▂▃▄▅▆▇█"
_COLUMNS = (
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
)


def jobs_table(summaries: Sequence[JobSummary]) -> str:
    rows = [_COLUMNS] + [
        (
            s.user_id,
            s.job_id,
            s.recipe,
            s.status,
            _of(s.step, s.step_len),
            _of(s.epoch, s.epoch_len),
            f"{s.loss:.4f}" if s.loss is not None else "-",
            utc_time(s.started),
            duration(s.duration_s),
            str(s.nnodes),
            str(s.world_size),
            s.scheduler_job or "-",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def job_summary_text(summary: JobSummary, events: Sequence[Event], folder: str, local_folder: Optional[Any]) -> str:
    """`porter show`: the job's facts, status, loss sparkline, weights and failure."""
    lines = [f"job {summary.job_id} of {summary.user_id}: {summary.recipe}, {summary.status}"]

    def fact(name: str, value: Any) -> None:
        lines.append(f"  {name:<10} {value}")

    fact("started", f"{utc_time(summary.started)} UTC, ran {duration(summary.duration_s)}")
    fact("processes", f"{summary.world_size} on {summary.nnodes} node{'s' * (summary.nnodes != 1)}")
    attempts = [e["data"] for e in events if e.get("operation") == "job_started"]
    if len(attempts) > 1 or summary.scheduler_job:
        runs = [scheduler_text(a.get("scheduler_job")) or f"attempt {n}" for n, a in enumerate(attempts, 1)]
        fact("attempts", f"{len(attempts)}: " + ", ".join(runs))
    for name, value in job_facts(events):
        if name in ("model", "dataset", "epochs", "learning rate"):
            fact(name if name != "learning rate" else "lr", value)
    fact("progress", f"step {_of(summary.step, summary.step_len)}, epoch {_of(summary.epoch, summary.epoch_len)}")
    losses = [
        e["data"]["step_loss"]
        for e in events
        if e.get("operation") == "step" and isinstance(e["data"].get("step_loss"), (int, float))
    ]
    if losses:
        fact("loss", f"{sparkline(losses)}  {losses[0]:.4g} → {losses[-1]:.4g} over {len(losses)} logged steps")
    weights = [
        e["data"]
        for e in events
        if e.get("operation") == "weights" and e["data"].get("kind") in ("intermediate", "final")
    ]
    if weights:
        last = weights_line(weights[-1], local_folder).removeprefix("weights ")
        fact("weights", f"{len(weights)} save{'s' * (len(weights) != 1)}, the last {last}")
    ended = next((e for e in reversed(events) if e.get("operation") in TERMINAL), None)
    if ended is not None and ended["operation"] != "job_completed" and summary.status != "running":
        data = ended["data"]
        fact("error", end_line(ended["operation"], data))
        if data.get("traceback_file"):
            fact("traceback", f"{folder}/{data['traceback_file']}")
    if ended is not None:
        dropped = {name: count for name, count in (ended["data"].get("dropped_events") or {}).items() if count}
        why = ended["data"].get("sink_errors") or {}
        fact(
            "dropped",
            ", ".join(
                f"{name}: {count} events" + (f" ({why[name]})" if name in why else "")
                for name, count in dropped.items()
            )
            if dropped
            else "no sink dropped an event",
        )
    fact("folder", folder)
    return "\n".join(lines)


def sparkline(values: Sequence[float], width: int = 48) -> str:
    """`values` as a line of block characters, averaged into at most `width` buckets."""
    if not values:
        return ""
    buckets: List[float] = []
    count = min(width, len(values))
    for index in range(count):
        chunk = values[index * len(values) // count : (index + 1) * len(values) // count]
        buckets.append(sum(chunk) / len(chunk))
    low, high = min(buckets), max(buckets)
    span = high - low or 1.0
    return "".join(_SPARKS[min(len(_SPARKS) - 1, int((value - low) / span * len(_SPARKS)))] for value in buckets)


def as_json_rows(summaries: Sequence[JobSummary]) -> List[Dict[str, Any]]:
    return [summary.as_dict() for summary in summaries]


def _of(done: Optional[int], total: Optional[int]) -> str:
    return f"{done}/{total}" if done is not None and total is not None else "-"
