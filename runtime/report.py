"""A job's report: one self-contained HTML file, made from its event log alone.

Loss, learning rate, step time and memory per step (each rank that logged them), epoch
times, the event timeline, the machine and the resolved config. Charts are drawn by
matplotlib as inline SVG: static, a few tens of KB each, viewable with no script and
no network, and the same in every browser. The page is templates/report.html.j2.

The owner of a job writes it as `report.html` in the job folder after the terminal
event (`porter.report: false` turns that off); `porter report` writes it on demand.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from runtime.console import end_line, milestone_line
from runtime.events import TERMINAL
from runtime.sinks import Event
from runtime.files import write_atomically

# Operations the timeline leaves out: they are the charts, or they are many.
_NOT_IN_TIMELINE = ("step", "heartbeat")
_MEMORY_FIELDS = ("step_peak_memory_active", "step_peak_memory_alloc", "step_peak_memory_reserved")


@dataclass(frozen=True)
class Chart:
    name: str  # its id in the page: loss, lr, step_time, memory, epoch_time
    title: str
    svg: str
    points: int  # data points drawn, every series together


def report_html(events: Sequence[Event], job_folder: Optional[Path] = None) -> str:
    """The report of a job whose events (every node's, in time order) are `events`."""
    import jinja2
    import yaml

    from runtime.job_reader import job_facts, parse_ts, utc_time

    first = events[0] if events else {}
    start = parse_ts(first["create_ts"]) if events else 0.0
    # The end of the latest attempt: a resumed job runs on after its earlier end.
    attempt = max((i for i, e in enumerate(events) if e.get("operation") == "job_started"), default=0)
    ended = next((e for e in reversed(events[attempt:]) if e.get("operation") in TERMINAL), None)
    data_of = {e["operation"]: e.get("data") or {} for e in events}  # the last of each operation
    config = data_of.get("job_config", {}).get("config")
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("porter.templates", "."), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )
    return environment.get_template("report.html.j2").render(
        job_id=first.get("job_id", ""),
        user_id=first.get("user_id", ""),
        recipe=data_of.get("job_started", {}).get("recipe", first.get("workflow", "")),
        status=ended["operation"].removeprefix("job_") if ended else "running",
        end=end_line(ended["operation"], ended["data"]) if ended else None,
        traceback_file=(ended or {}).get("data", {}).get("traceback_file"),
        started=utc_time(first["create_ts"]) + " UTC" if events else "",
        duration=(parse_ts(events[-1]["create_ts"]) - start) if events else 0.0,
        facts=job_facts(events),
        charts=charts(events),
        timeline=[_timeline_row(e, start, job_folder) for e in events if e.get("operation") not in _NOT_IN_TIMELINE],
        system=data_of.get("system_specs"),
        config=yaml.safe_dump(config, sort_keys=False, default_flow_style=False) if config is not None else None,
    )


def write_report(
    events: Sequence[Event], target: Path, job_folder: Optional[Path] = None, file_mode: int = 0o600
) -> Path:
    """`target` written whole or not at all."""
    html = report_html(events, job_folder)
    write_atomically(target, html, file_mode)
    return target


def charts(events: Sequence[Event]) -> List[Chart]:
    steps = [e["data"] for e in events if e.get("operation") == "step"]
    epochs = [e["data"] for e in events if e.get("operation") == "epoch"]
    made = []
    for name, title, field, unit in (
        ("loss", "Loss", "step_loss", ""),
        ("lr", "Learning rate", "step_lr", ""),
        ("step_time", "Step time", "step_time_elapsed_s", "s"),
    ):
        series = _per_rank(steps, field)
        if series:
            made.append(_line_chart(name, title, unit, series))
    memory = {
        f"{field.rsplit('_', 1)[1]}, rank {rank}": points
        for field in _MEMORY_FIELDS
        for rank, points in _per_rank(steps, field).items()
    }
    if memory:
        made.append(_line_chart("memory", "Peak memory", "GiB", memory))
    if epochs:
        made.append(_epoch_chart(epochs))
    return made


def _per_rank(steps: Sequence[Dict[str, Any]], field: str) -> Dict[Any, List[Tuple[int, float]]]:
    series: Dict[Any, List[Tuple[int, float]]] = {}
    for step in steps:
        value = step.get(field)
        if isinstance(value, (int, float)):
            series.setdefault(step.get("gpu_rank"), []).append((step["step_num"], value))
    return series


def _figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.2, 2.8), dpi=100, layout="constrained")
    return figure, figure.add_subplot()


def _svg(figure) -> str:
    import matplotlib

    buffer = io.StringIO()
    # Text stays text (the browser's fonts, a smaller file); ids are stable across runs.
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "porter"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    # Only the drawing: not the XML prologue, nor matplotlib's RDF metadata block.
    return re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.DOTALL)


def _line_chart(name: str, title: str, unit: str, series: Dict[Any, List[Tuple[int, float]]]) -> Chart:
    from matplotlib.ticker import MaxNLocator

    figure, axes = _figure()
    for label, points in series.items():
        steps, values = zip(*points, strict=False)
        (line,) = axes.plot(
            steps,
            values,
            marker="." if len(points) < 50 else None,
            linewidth=1.4,
            label=f"rank {label}" if isinstance(label, int) else str(label),
        )
        line.set_gid(f"series-{name}-{len(axes.lines)}")
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel(f"{title.lower()} ({unit})" if unit else title.lower())
    axes.grid(alpha=0.3)
    if len(series) > 1:
        axes.legend(fontsize="small")
    return Chart(name, title, _svg(figure), sum(len(points) for points in series.values()))


def _epoch_chart(epochs: Sequence[Dict[str, Any]]) -> Chart:
    figure, axes = _figure()
    ranks = sorted({e["gpu_rank"] for e in epochs})
    width = 0.8 / len(ranks)
    for offset, rank in enumerate(ranks):
        mine = sorted((e["epoch_num"], e["epoch_time_elapsed_s"]) for e in epochs if e["gpu_rank"] == rank)
        bars = axes.bar([n + offset * width for n, _ in mine], [t for _, t in mine], width=width, label=f"rank {rank}")
        for index, bar in enumerate(bars):
            bar.set_gid(f"series-epoch_time-{offset + 1}-bar-{index + 1}")
    axes.set_xlabel("epoch")
    axes.set_ylabel("seconds")
    axes.set_xticks(sorted({e["epoch_num"] for e in epochs}))
    axes.grid(alpha=0.3, axis="y")
    if len(ranks) > 1:
        axes.legend(fontsize="small")
    return Chart("epoch_time", "Epoch time", _svg(figure), len(epochs))


def _timeline_row(event: Event, start: float, job_folder: Optional[Path]) -> Dict[str, Any]:
    from runtime.job_reader import parse_ts

    return {
        "at": parse_ts(event["create_ts"]) - start,
        "node": event.get("node_rank"),
        "rank": event.get("gpu_rank"),
        "operation": event.get("operation"),
        "detail": milestone_line(event, job_folder) or "",
    }
