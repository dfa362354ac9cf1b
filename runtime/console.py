"""What a person watching a job sees: porter's progress, and nothing else.

- `ProgressConsole` turns events into one progress line for rank 0's steps (step/total,
  loss, lr, tokens/s, ETA), updated in place on a terminal and printed a line per
  logging step in pipes and CI logs, plus a line for each milestone: start, rank 0's
  epochs, weights (summarised: count, size, folder) and the end.
- `output_to_log` sends everything the job's processes print (torchtune's config dump,
  its INFO lines and tqdm bar, warnings, tracebacks) to a log file in the job folder,
  and gives the console the terminal they would have written to.

`porter run` and `porter show --follow` both feed a ProgressConsole from the event log
(runtime/job_reader.py), so the console shows exactly what the log holds.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, TextIO

from runtime.events import TERMINAL
from runtime.sinks import Event, Sink

_CLEAR_LINE = "\r\x1b[2K"
# Step times the ETA averages over: recent enough to follow a change of pace.
_ETA_WINDOW = 20


class ProgressConsole:
    def __init__(
        self, stream: TextIO, interactive: bool, job_folder: Optional[Path] = None, show_end: bool = True
    ) -> None:
        self.stream = stream
        self.interactive = interactive
        self.job_folder = job_folder  # where weight files are, to sum their sizes
        self.show_end = show_end
        self._world_size = 1
        self._step_times: List[float] = []
        self._progress = ""  # the in-place line now on screen, if any

    def show(self, event: Event) -> None:
        operation, data = event.get("operation"), event.get("data") or {}
        if operation == "step":
            self._step(data)
            return
        if operation == "job_started":
            self._world_size = data.get("world_size") or 1
        shown = (
            (operation == "epoch" and data.get("gpu_rank") == 0)  # one rank's epochs, not every rank's
            or (operation == "weights" and data.get("kind") != "all")  # `all` repeats what the saves said
            or (operation in TERMINAL and self.show_end)
            or operation == "job_started"
        )
        text = milestone_line(event, self.job_folder) if shown else None
        if text is not None:
            self._line(text)

    def close(self) -> None:
        if self._progress:
            self.stream.write("\n")
            self.stream.flush()
            self._progress = ""

    def _step(self, data: Dict[str, Any]) -> None:
        self._step_times = (self._step_times + [data.get("step_time_elapsed_s") or 0.0])[-_ETA_WINDOW:]
        line = progress_line(data, self._world_size, sum(self._step_times) / len(self._step_times))
        if self.interactive:
            self.stream.write(_CLEAR_LINE + line)
            self._progress = line
            self.stream.flush()
        else:
            self._line(line)

    def _line(self, text: str) -> None:
        """A line of its own; on a terminal the progress line is drawn again under it."""
        if self.interactive and self._progress:
            self.stream.write(_CLEAR_LINE + f"porter: {text}\n" + self._progress)
        else:
            self.stream.write(f"porter: {text}\n")
        self.stream.flush()


class ConsoleSink(Sink):
    """The console as a sink, for jobs started without `porter run` (which follows the
    log itself): rank 0's events as lines on stderr."""

    name = "console"

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self._console = ProgressConsole(stream or sys.stderr, interactive=False)

    def emit(self, events: List[Event]) -> None:
        for event in events:
            self._console.show(event)


def milestone_line(event: Event, job_folder: Optional[Path] = None) -> Optional[str]:
    """What a milestone event says, in a line: the start, an epoch, a save, the end;
    None for the other operations. The console and the report's timeline both say it so."""
    operation, data = event.get("operation"), event.get("data") or {}
    if operation == "job_started":
        return _started(data)
    if operation == "epoch":
        return f"epoch {data.get('epoch_num')}/{data.get('epoch_len')} done in {duration(data.get('epoch_time_elapsed_s'))}"
    if operation == "weights":
        return weights_line(data, job_folder)
    if operation in TERMINAL:
        return end_line(operation, data)
    return None


def progress_line(data: Dict[str, Any], world_size: int, mean_step_s: float) -> str:
    parts = [
        f"step {data.get('step_num')}/{data.get('step_len')}",
        f"epoch {data.get('epoch_num')}/{data.get('epoch_len')}",
        f"loss {_number(data.get('step_loss'))}",
    ]
    if data.get("step_lr") is not None:
        parts.append(f"lr {_number(data['step_lr'])}")
    tokens = data.get("step_tokens_per_s")
    if isinstance(tokens, (int, float)):
        parts.append(f"{_count(tokens * world_size)} tok/s")
    remaining = (data.get("step_len") or 0) - (data.get("step_num") or 0)
    if mean_step_s > 0 and remaining >= 0:
        parts.append(f"ETA {_clock(remaining * mean_step_s)}")
    return " · ".join(parts)


def weights_line(data: Dict[str, Any], job_folder: Optional[Path]) -> str:
    """`weights (final, epoch 2): 3 files, 12.4 MB in checkpoints/epoch_1`; `weights
    removed: checkpoints/epoch_0` (rotation)."""
    files = list(data.get("files") or [])
    if data.get("kind") == "removed":
        return f"weights removed: {', '.join(files)}"
    what = [data.get("kind", "")]
    if data.get("epoch") is not None:
        what.append(f"epoch {data['epoch'] + 1}")
    if data.get("step") is not None:
        what.append(f"step {data['step']}")
    folder = os.path.commonpath(files) if files else ""
    if len(files) == 1:
        folder = os.path.dirname(folder)
    size = ""
    if job_folder is not None and files:
        sizes = [(job_folder / name).stat().st_size for name in files if (job_folder / name).is_file()]
        size = f", {_bytes(sum(sizes))}" if sizes else ""
    count = f"{len(files)} file{'s' * (len(files) != 1)}"
    return f"weights ({', '.join(what)}): {count}{size} in {folder or '.'}"


def end_line(operation: str, data: Dict[str, Any]) -> str:
    if operation == "job_completed":
        return "job_completed"
    where = f" (node {data.get('node_rank')}, rank {data.get('gpu_rank')})" if data.get("gpu_rank") is not None else ""
    return f"{operation}: {data.get('error_type')}: {data.get('message')}{where}"


def _started(data: Dict[str, Any]) -> str:
    processes = data.get("world_size") or 1
    nodes = data.get("nnodes") or 1
    where = f"{processes} process{'es' * (processes != 1)}" + (f" on {nodes} nodes" if nodes > 1 else "")
    return f"job_started: {data.get('recipe')}, {where}" + (", resumed" if data.get("resumed") else "")


def _number(value: Any) -> str:
    if isinstance(value, float) and value != 0 and abs(value) < 1e-3:
        return f"{value:.1e}"
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def _count(value: float) -> str:
    return f"{value / 1000:.1f}k" if value >= 1000 else f"{value:.0f}"


def _bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def duration(seconds: Any) -> str:
    """A duration as people read it: `12.34 s` under a minute, `1:05` or `2:03:07` above;
    the console, `porter jobs` and `porter show` print it so."""
    if not isinstance(seconds, (int, float)):
        return str(seconds)
    return _clock(seconds) if seconds >= 60 else f"{seconds:.2f} s"


@contextlib.contextmanager
def output_to_log(log: Path, file_mode: int = 0o600) -> Iterator[TextIO]:
    """Everything this process and its children print, at the file-descriptor level
    (libraries' handlers hold the old stream objects), goes to `log` meanwhile; the
    stream yielded writes where stderr went before."""
    log.parent.mkdir(parents=True, exist_ok=True)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    target = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, file_mode)
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    python_streams = sys.stdout, sys.stderr
    # Under a test runner sys.stderr may be no file: the console keeps writing to it.
    real_stderr = _has_fd(sys.stderr, 2)
    terminal = (
        os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace") if real_stderr else sys.stderr
    )
    try:
        for fd in (1, 2):
            os.dup2(target, fd)
        sys.stdout = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8", errors="replace")
        sys.stderr = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        yield terminal
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
                stream.close()
        sys.stdout, sys.stderr = python_streams
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        os.close(target)
        if terminal is not python_streams[1]:
            with contextlib.suppress(Exception):
                terminal.close()


def _has_fd(stream: Any, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except Exception:
        return False
