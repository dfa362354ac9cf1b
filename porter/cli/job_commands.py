"""porter jobs, show and report: the job folders under an output root, read from their
event logs (no torch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import click

from porter.cli.app import (
    Failure,
    main,
    options,
    REPORT_INSTALL,
    REPORT_PACKAGES,
    require,
    say,
)
from runtime.job_reader import STATUSES  # reads no torch: the event logs only


with_job_root = options(
    click.option(
        "--output-root",
        default="runs",
        show_default=True,
        help="Where the job folders are: a folder, or an fsspec URL.",
    ),
    click.option("--user", "user_id", metavar="USER", help="Only this user's jobs."),
)


def job_reader(output_root: str):
    from runtime.job import JobError
    from runtime.job_reader import OutputRootReader

    try:
        return OutputRootReader(output_root)
    except JobError as error:
        raise Failure(str(error)) from error


@main.command()
@with_job_root
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this state.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
def jobs(output_root: str, user_id: Optional[str], status: Optional[str], output_format: str) -> None:
    """The jobs under an output root, newest first: status (running, completed, failed,
    cancelled, interrupted: its porter run gone on this host, or stale: silent for 3
    heartbeats), progress, last loss, start, duration, nodes, processes and the
    scheduler's job. Reads the tail of each event log only.

    \b
    Examples:
      porter jobs
      porter jobs --output-root .porter-demo/runs --status failed
      porter jobs --user alice --format json
    """
    from runtime.job import JobError

    from porter.job_views import as_json_rows, jobs_table

    reader = job_reader(output_root)
    try:
        summaries = reader.summaries(user_id)
    except JobError as error:
        raise Failure(str(error)) from error
    for problem in reader.unreadable:
        say(f"porter: warning: {problem}; left out")
    summaries = [summary for summary in summaries if status is None or summary.status == status]
    if output_format == "json":
        click.echo(json.dumps(as_json_rows(summaries), indent=2))
    elif summaries:
        click.echo(jobs_table(summaries))
    else:
        say(
            f"porter: no jobs under {output_root}"
            + (f" of user {user_id}" if user_id else "")
            + (f" {status}" if status else "")
        )


@main.command()
@click.argument("job_id", metavar="JOB")
@with_job_root
@click.option("--follow", is_flag=True, help="Then print the job's events as they come, until it ends.")
def show(job_id: str, output_root: str, user_id: Optional[str], follow: bool) -> None:
    """A job's summary: its recipe, model, dataset, epochs and lr, status, progress, a
    loss sparkline, the weights written, its error and traceback if it failed, and
    the events its sinks dropped.

    \b
    Examples:
      porter show demo-20261129-101500 --output-root .porter-demo/runs
      porter show j1 --user alice --follow
    """
    import time

    from runtime.console import ProgressConsole
    from runtime.job import JobError
    from runtime.job_reader import follow_log

    from porter.job_views import job_summary_text

    reader = job_reader(output_root)
    try:
        user, folder = reader.find(job_id, user_id)
        log = f"{folder}/events.jsonl"
        offset = reader.fs.size(log)
        events = reader.events(folder)
        summary = reader.summary(folder, time.time())
    except JobError as error:
        raise Failure(str(error)) from error
    if summary is None:
        raise Failure(f"job {job_id} has not started: its log has no job_started")
    local = reader.local_path(folder)
    click.echo(job_summary_text(summary, events, reader.url_of(folder), local))
    if follow and summary.status in ("running", "stale"):
        console = ProgressConsole(sys.stdout, interactive=sys.stdout.isatty(), job_folder=local)
        for event in follow_log(reader.fs, log, offset=offset, poll_s=0.5):
            console.show(event)
        console.close()


@main.command()
@click.argument("job_id", metavar="JOB")
@with_job_root
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
def report(job_id: str, output_root: str, user_id: Optional[str], target: Path) -> None:
    """Write a job's report: one self-contained HTML file (no network needed to view
    it) with its loss, lr, step time and memory per step, epoch times, timeline,
    machine and resolved config. Jobs write theirs as report.html when they end.

    \b
    Examples:
      porter report demo-20261129-101500 --output-root .porter-demo/runs -o report.html
    """
    require("report", REPORT_PACKAGES, REPORT_INSTALL)
    from runtime.job import JobError
    from runtime.report import write_report

    reader = job_reader(output_root)
    try:
        _, folder = reader.find(job_id, user_id)
        events = reader.events(folder)
    except JobError as error:
        raise Failure(str(error)) from error
    try:
        write_report(events, target, reader.local_path(folder), file_mode=0o644)
    except OSError as error:
        raise Failure(f"{target}: {error.strerror or error}") from error
    say(f"porter: wrote {target}")
