"""The job's event log and its sinks: schema, durability, concurrency, slow sinks."""

from __future__ import annotations

import datetime
import http.server
import json
import multiprocessing
import threading
import time

import pytest

from runtime import sinks as sinks_module
from runtime.job_logger import EPOCH_FIELDS, JobLogger, logged_keys, read_events, STEP_FIELDS
from runtime.sinks import QueuedSink, Sink, WebhookSink
from faults import FailingSink, SlowSink

STEP = {name: 1 for name in STEP_FIELDS} | {"step_loss": 2.5, "step_lr": 1e-3}
EPOCH = {name: 1 for name in EPOCH_FIELDS}


def logger_at(path, **kwargs) -> JobLogger:
    return JobLogger(job_id="j", user_id="u", workflow="wf", events_path=path, **kwargs)


def test_events_have_the_schema_and_utc_timestamps(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    log.log("job_started", {"a": 1})
    log.log_step(**STEP)
    log.log_epoch(**EPOCH)
    log.close("job_completed", {})
    events = read_events(tmp_path / "events.jsonl")
    assert [e["operation"] for e in events] == ["job_started", "step", "epoch", "job_completed"]
    for event in events:
        assert list(event) == ["job_id", "user_id", "create_ts", "workflow", "operation", "data"]
        assert (event["job_id"], event["user_id"], event["workflow"]) == ("j", "u", "wf")
        assert datetime.datetime.fromisoformat(event["create_ts"]).utcoffset() == datetime.timedelta(0)
    assert events[1]["data"] == STEP
    assert events[-1]["data"] == {"dropped_events": {}}


def test_step_fields_are_exactly_the_schema(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    with pytest.raises(TypeError, match=r"log_step: missing \['epoch_len'\], unknown \['extra'\]"):
        log.log_step(**{k: v for k, v in STEP.items() if k != "epoch_len"}, extra=1)
    log.close()


def test_tensor_values_are_written_as_numbers(tmp_path):
    import torch

    log = logger_at(tmp_path / "events.jsonl")
    log.log_step(**STEP | {"step_loss": torch.tensor(1.25), "step_lr": torch.tensor(0.5, dtype=torch.float64)})
    log.close()
    (event,) = read_events(tmp_path / "events.jsonl")
    assert (event["data"]["step_loss"], event["data"]["step_lr"]) == (1.25, 0.5)


def test_epoch_and_terminal_events_are_fsynced(tmp_path, monkeypatch):
    synced = []
    real_fsync = sinks_module.os.fsync
    monkeypatch.setattr(sinks_module.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    log = logger_at(tmp_path / "events.jsonl")
    log.log_step(**STEP)
    assert synced == []
    log.log_epoch(**EPOCH)
    assert len(synced) == 1
    log.close("job_completed", {})
    assert len(synced) >= 2


def test_steps_and_epochs_already_logged_are_not_logged_again(tmp_path):
    path = tmp_path / "events.jsonl"
    first = logger_at(path)
    first.log_step(**STEP | {"step_num": 1})
    first.log_epoch(**EPOCH)
    first.close()
    again = logger_at(path, already_logged=logged_keys(read_events(path)))
    again.log_step(**STEP | {"step_num": 1})
    again.log_step(**STEP | {"step_num": 2})
    again.log_epoch(**EPOCH)
    again.log_epoch(**EPOCH | {"gpu_rank": 2})
    again.close()
    assert [(e["operation"], e["data"]["gpu_rank"], e["data"].get("step_num")) for e in read_events(path)] == [
        ("step", 1, 1), ("epoch", 1, None), ("step", 1, 2), ("epoch", 2, None)]


def test_threads_logging_at_once_write_whole_lines(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    log.start_heartbeat(0.001)

    def work(thread):
        for index in range(300):
            log.log("step", {"thread": thread, "index": index, "pad": "x" * 3000})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close("job_completed", {})
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line whole
    counted = [(e["data"]["thread"], e["data"]["index"]) for e in events if e["operation"] == "step"]
    assert sorted(counted) == [(t, i) for t in range(8) for i in range(300)]
    assert events[-1]["operation"] == "job_completed"
    assert any(e["operation"] == "heartbeat" for e in events)


def _append_from_process(path, rank):
    log = JobLogger(job_id="j", user_id="u", workflow="wf", events_path=path, rank=rank)
    for index in range(1000):
        log.log("step", {"rank": rank, "index": index, "pad": "y" * 6000})
    log.close()


def test_processes_appending_to_one_log_never_tear_or_lose_lines(tmp_path):
    path = tmp_path / "events.jsonl"
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_append_from_process, args=(path, rank)) for rank in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted((e["data"]["rank"], e["data"]["index"]) for e in events) == [
        (r, i) for r in range(4) for i in range(1000)]


def test_heartbeat_stops_before_the_terminal_event(tmp_path):
    log = logger_at(tmp_path / "events.jsonl", rank=0)
    log.start_heartbeat(0.01)
    time.sleep(0.1)
    log.close("job_completed", {})
    time.sleep(0.05)
    events = read_events(tmp_path / "events.jsonl")
    beats = [e for e in events if e["operation"] == "heartbeat"]
    assert len(beats) >= 3
    assert set(beats[0]["data"]) == {"gpu_rank", "pid", "uptime_s", "rss_bytes"}
    assert events[-1]["operation"] == "job_completed"


def test_a_slow_sink_never_slows_logging_and_its_drops_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr("runtime.job_logger.SINK_CLOSE_TIMEOUT_S", 0.5)
    log = logger_at(tmp_path / "events.jsonl", sinks=[SlowSink(delay_s=0.1)])
    start = time.perf_counter()
    for index in range(200):
        log.log_step(**STEP | {"step_num": index})
    assert time.perf_counter() - start < 1.0  # 200 x 0.1 s if the sink blocked
    start = time.perf_counter()
    log.close("job_completed", {})
    assert time.perf_counter() - start < 2.0
    terminal = read_events(tmp_path / "events.jsonl")[-1]
    dropped = terminal["data"]["dropped_events"]["slow"]
    assert 180 <= dropped <= 200  # a few got through in the half second it had
    assert len(read_events(tmp_path / "events.jsonl")) == 201  # the file lost nothing


def test_a_failing_sink_is_counted_and_never_raises(tmp_path):
    log = logger_at(tmp_path / "events.jsonl", sinks=[FailingSink()])
    for index in range(50):
        log.log_step(**STEP | {"step_num": index})
    log.close("job_failed", {"error_type": "X"})
    terminal = read_events(tmp_path / "events.jsonl")[-1]
    assert terminal["operation"] == "job_failed"
    assert terminal["data"]["dropped_events"] == {"failing": 50}


class HungSink(Sink):
    name = "hung"

    def __init__(self):
        self.release = threading.Event()

    def emit(self, events):
        self.release.wait()


def test_a_hung_sink_cannot_hold_the_job_open(tmp_path, monkeypatch):
    monkeypatch.setattr("runtime.job_logger.SINK_CLOSE_TIMEOUT_S", 0.3)
    hung = HungSink()
    log = logger_at(tmp_path / "events.jsonl", sinks=[hung])
    for index in range(10):
        log.log_step(**STEP | {"step_num": index})
    start = time.perf_counter()
    log.close("job_completed", {})
    assert time.perf_counter() - start < 1.5
    assert read_events(tmp_path / "events.jsonl")[-1]["data"]["dropped_events"]["hung"] >= 9
    hung.release.set()


def test_a_full_queue_drops_and_counts(tmp_path):
    hung = HungSink()
    queued = QueuedSink(hung, max_queue=5)
    for index in range(20):
        queued.put({"index": index})
    assert queued.dropped >= 14  # one may be in the sink's hands, five queued
    hung.release.set()
    queued.close(1.0)


class Collector(http.server.BaseHTTPRequestHandler):
    batches: list = []
    failures_left = 0

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if Collector.failures_left > 0:
            Collector.failures_left -= 1
            self.send_response(503)
            self.end_headers()
            return
        Collector.batches.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    Collector.batches, Collector.failures_left = [], 2
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events"
    server.shutdown()


def test_webhook_posts_batches_and_retries_with_backoff(tmp_path, webhook_server):
    log = logger_at(tmp_path / "events.jsonl", sinks=[WebhookSink(webhook_server, backoff_s=0.01, retries=3)])
    for index in range(100):
        log.log_step(**STEP | {"step_num": index})
    log.close("job_completed", {})
    received = [event for batch in Collector.batches for event in batch]
    assert [e["data"]["step_num"] for e in received if e["operation"] == "step"] == list(range(100))
    assert received[-1]["operation"] == "job_completed"
    assert received[-1]["data"]["dropped_events"] == {"webhook": 0}
    assert len(Collector.batches) < 100  # batched, not one request per event


def test_webhook_that_is_down_is_counted_not_fatal(tmp_path):
    sink = WebhookSink("http://127.0.0.1:1/events", timeout_s=0.2, retries=1, backoff_s=0.01)
    log = logger_at(tmp_path / "events.jsonl", sinks=[sink])
    for index in range(5):
        log.log_step(**STEP | {"step_num": index})
    log.close("job_completed", {})
    assert read_events(tmp_path / "events.jsonl")[-1]["data"]["dropped_events"]["webhook"] >= 5


def test_webhook_url_must_be_http():
    with pytest.raises(ValueError, match="webhook url must be http"):
        WebhookSink("file:///etc/passwd")


def test_logging_after_close_is_refused(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.log("step", {})
