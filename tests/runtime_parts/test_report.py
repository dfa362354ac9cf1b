"""A job's HTML report: written by the job's last event, self-contained, its charts
drawn from every logged step, checked in a real headless Chromium."""

from __future__ import annotations

import re

import pytest

from conftest import CACHE, job_runner
from runtime.job import JobRef
from runtime.job_logger import JobLogger, read_job_events
from runtime.job import JobPaths
from runtime.report import report_html, write_report

# Counts the chart elements, and the points each data series drew, as the browser laid them out.
CHARTS_IN_THE_PAGE = """(() => [...document.querySelectorAll('figure.chart')].map(figure => ({
  name: figure.id.replace('chart-', ''),
  points: Number(figure.dataset.points),
  series: [...figure.querySelectorAll('[id^="series-"]')].map(group => {
    const path = group.querySelector('path');
    const box = group.getBBox();
    return {vertices: path ? (path.getAttribute('d').match(/[ML]/g) || []).length : 0, width: box.width, height: box.height};
  }),
})))()"""


@pytest.fixture(scope="module")
def finished_job(demo, generated, tmp_path_factory):
    runs = job_runner(demo, generated, tmp_path_factory.mktemp("report") / "runs")
    done, events = runs("lora_finetune_single_device", job_id="reported")
    assert done.returncode == 0, done.stderr[-3000:]
    return runs.root / "tester" / "reported", events


@pytest.fixture(scope="session")
def chromium():
    from helpers.browser import find_or_install_chromium, HeadlessChromium

    try:
        browser = HeadlessChromium(find_or_install_chromium())
    except (RuntimeError, OSError) as error:
        pytest.skip(f"no headless Chromium: {error}")
    yield browser
    browser.close()


def test_the_job_writes_its_report_with_a_chart_per_measure(finished_job):
    folder, events = finished_job
    html = (folder / "report.html").read_text()
    steps = [e for e in events if e["operation"] == "step"]
    for chart in ("loss", "lr", "step_time"):
        assert f'id="chart-{chart}" data-points="{len(steps)}"' in html
    assert 'id="chart-epoch_time" data-points="2"' in html
    assert 'id="chart-memory"' not in html  # the CPU logs no memory peaks
    assert "job_completed" in html and "lora_finetune_single_device" in html
    assert "lora_rank: 8" in html  # the resolved config
    assert "torchtune" in html and "cpu_model" in html  # the machine
    # memory for people: GiB, never raw bytes
    specs = next(e["data"] for e in events if e["operation"] == "system_specs")
    assert f"<th>memory_total</th><td>{specs['memory_total_bytes'] / 2**30:.1f} GiB</td>" in html
    assert str(specs["memory_total_bytes"]) not in html
    # nothing the page would fetch: no script, stylesheet, image or font from elsewhere
    assert not re.search(r"<(script|link|img|iframe)\b", html)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "@import" not in html
    assert not re.search(r"url\((?!#)", html)  # only references to the page's own clip paths


def test_the_report_renders_in_a_browser_without_the_network(finished_job, chromium):
    folder, events = finished_job
    screenshot = CACHE / "artifacts" / "report.png"
    loaded = chromium.load(folder / "report.html", screenshot, CHARTS_IN_THE_PAGE)
    assert loaded["requested"] == [(folder / "report.html").resolve().as_uri()]
    charts = {chart["name"]: chart for chart in loaded["value"]}
    assert set(charts) == {"loss", "lr", "step_time", "epoch_time"}
    steps = len([e for e in events if e["operation"] == "step"])
    for name in ("loss", "lr", "step_time"):
        (series,) = charts[name]["series"]
        assert series["vertices"] == charts[name]["points"] == steps
        assert series["width"] > 100 and series["height"] > 10  # laid out, not a dot
    assert len(charts["epoch_time"]["series"]) == 2 and all(bar["height"] > 0 for bar in charts["epoch_time"]["series"])
    assert screenshot.stat().st_size > 20_000  # kept as the test's artifact


def test_a_failed_jobs_report_names_the_error_and_plots_every_rank(tmp_path):
    paths = JobPaths(tmp_path / "u" / "j")
    for node in (0, 1):
        log = JobLogger(
            job=JobRef("j", "u", "full_finetune_distributed"),
            events_path=paths.events_of(node),
            node_rank=node,
            rank=node,
        )
        if node == 0:
            log.log(
                "job_started",
                {
                    "recipe": "full_finetune_distributed",
                    "world_size": 2,
                    "dataset": None,
                    "resumed": False,
                    "porter_version": "0",
                    "nnodes": 2,
                },
            )
            for n in (1, 2, 3):
                log.log_step(
                    gpu_rank=0,
                    step_num=n,
                    step_len=6,
                    step_loss=3.0 - n / 10,
                    step_lr=1e-4,
                    step_peak_memory_active=1.5,
                    step_peak_memory_alloc=1.2,
                    step_peak_memory_reserved=2.0,
                    step_time_elapsed_s=0.3,
                    epoch_num=1,
                    epoch_len=2,
                )
        log.log_epoch(gpu_rank=node, epoch_num=1, epoch_len=2, epoch_time_elapsed_s=5.0 + node)
        if node == 0:
            log.close(
                "job_failed",
                {
                    "error_type": "NodeLost",
                    "message": "node 1 was lost",
                    "gpu_rank": None,
                    "node_rank": 1,
                    "traceback_file": None,
                },
            )
        else:
            log.close()
    html = report_html(read_job_events(paths))
    assert "job_failed: NodeLost: node 1 was lost" in html
    assert 'id="chart-memory" data-points="9"' in html  # three peaks at each of three steps
    assert 'id="series-epoch_time-1-bar-1"' in html and 'id="series-epoch_time-2-bar-1"' in html  # both ranks' epochs
    write_report(read_job_events(paths), tmp_path / "report.html")
    assert not list(tmp_path.glob(".*.partial"))


def test_the_report_escapes_what_the_job_logged(tmp_path):
    paths = JobPaths(tmp_path / "u" / "j")
    log = JobLogger(job=JobRef("j", "u", "w"), events_path=paths.events)
    log.log(
        "job_started",
        {
            "recipe": "w",
            "world_size": 1,
            "dataset": "<script>alert(1)</script>",
            "resumed": False,
            "porter_version": "0",
        },
    )
    log.close("job_failed", {"error_type": "ValueError", "message": "<img src=x onerror=alert(1)>"})
    html = report_html(read_job_events(paths))
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_porter_jobs_and_show_on_a_real_job(finished_job):
    import json

    from click.testing import CliRunner

    from porter.cli import main

    folder, events = finished_job
    root = folder.parent.parent
    listed = CliRunner().invoke(main, ["jobs", "--output-root", str(root), "--format", "json"])
    (row,) = json.loads(listed.output)
    steps = [e["data"] for e in events if e["operation"] == "step"]
    assert (row["job_id"], row["status"], row["step"], row["epoch"], row["loss"]) == (
        "reported",
        "completed",
        steps[-1]["step_num"],
        2,
        steps[-1]["step_loss"],
    )
    shown = CliRunner().invoke(main, ["show", "reported", "--output-root", str(root)])
    assert shown.exit_code == 0, shown.output
    assert "model      torchtune.models.llama3_2.lora_llama3_2" in shown.output
    assert f"progress   step {steps[-1]['step_num']}/{steps[-1]['step_len']}, epoch 2/2" in shown.output
    assert "weights    2 saves, the last (final, epoch 2, " in shown.output


def test_a_resumed_job_that_runs_is_reported_running_not_as_its_earlier_end(tmp_path):
    paths = JobPaths(tmp_path / "u" / "j")
    started = {"recipe": "w", "world_size": 1, "dataset": None, "resumed": False, "porter_version": "0"}
    first = JobLogger(job=JobRef("j", "u", "w"), events_path=paths.events)
    first.log("job_started", started)
    first.close("job_cancelled", {"error_type": "JobCancelled", "message": "received signal SIGTERM"})
    again = JobLogger(job=JobRef("j", "u", "w"), events_path=paths.events)
    again.log("job_started", {**started, "resumed": True})
    again.close()
    html = report_html(read_job_events(paths))
    assert '<span class="status running">running</span>' in html and "received signal SIGTERM</p>" not in html
