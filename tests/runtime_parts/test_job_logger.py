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
from runtime.events import EPOCH_FIELDS, STEP_FIELDS
from runtime.job import JobRef
from runtime.job_logger import JobLogger, logged_keys, read_events
from runtime.sinks import QueuedSink, Sink, WebhookSink
from helpers.faults import FailingSink, SlowSink

STEP = {name: 1 for name in STEP_FIELDS} | {"step_loss": 2.5, "step_lr": 1e-3}
EPOCH = {name: 1 for name in EPOCH_FIELDS}


def logger_at(path, **kwargs) -> JobLogger:
    return JobLogger(job=JobRef("j", "u", "wf"), events_path=path, **kwargs)


STARTED = {"recipe": "r", "world_size": 1, "dataset": None, "resumed": False, "porter_version": "0"}


def test_events_have_the_envelope_ids_and_utc_timestamps(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    log.log("job_started", STARTED)
    log.log_step(**STEP)
    log.log_epoch(**EPOCH)
    log.close("job_completed", {})
    events = read_events(tmp_path / "events.jsonl")
    assert [e["operation"] for e in events] == ["job_started", "step", "epoch", "job_completed"]
    for seq, event in enumerate(events, 1):
        assert list(event) == [
            "event_id",
            "seq",
            "schema_version",
            "job_id",
            "user_id",
            "create_ts",
            "workflow",
            "node_rank",
            "gpu_rank",
            "operation",
            "data",
        ]
        assert (event["seq"], event["schema_version"], event["node_rank"], event["gpu_rank"]) == (seq, 1, 0, 0)
        assert (event["job_id"], event["user_id"], event["workflow"]) == ("j", "u", "wf")
        assert datetime.datetime.fromisoformat(event["create_ts"]).utcoffset() == datetime.timedelta(0)
    assert events[1]["data"] == STEP
    assert events[-1]["data"] == {
        "dropped_events": {},
        "error_type": None,
        "message": None,
        "gpu_rank": None,
        "node_rank": None,
        "traceback_file": None,
        "sink_errors": {},
    }
    ids = [e["event_id"] for e in events]
    assert len(set(ids)) == 4 and ids == sorted(ids)  # unique, and sortable by time


def test_event_data_is_exactly_the_contract(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    with pytest.raises(TypeError, match="epoch_len"):
        log.log_step(**{k: v for k, v in STEP.items() if k != "epoch_len"})
    with pytest.raises(TypeError, match="extra"):
        log.log_step(**STEP, extra=1)
    with pytest.raises(TypeError, match="unexpected"):
        log.log("job_started", {**STARTED, "secret_sauce": 1})
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
        ("step", 1, 1),
        ("epoch", 1, None),
        ("step", 1, 2),
        ("epoch", 2, None),
    ]


def test_threads_logging_at_once_write_whole_lines(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    log.start_heartbeat(0.001)

    def work(thread):
        for index in range(300):
            log.log("job_config", {"config": {"thread": thread, "index": index, "pad": "x" * 3000}})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close("job_completed", {})
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line whole
    counted = [
        (e["data"]["config"]["thread"], e["data"]["config"]["index"]) for e in events if e["operation"] == "job_config"
    ]
    assert sorted(counted) == [(t, i) for t in range(8) for i in range(300)]
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))  # one sequence per process, in file order
    assert events[-1]["operation"] == "job_completed"
    assert any(e["operation"] == "heartbeat" for e in events)


def _append_from_process(path, rank):
    log = JobLogger(job=JobRef("j", "u", "wf"), events_path=path, rank=rank)
    for index in range(1000):
        log.log("job_config", {"config": {"rank": rank, "index": index, "pad": "y" * 6000}})
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
    assert sorted((e["data"]["config"]["rank"], e["data"]["config"]["index"]) for e in events) == [
        (r, i) for r in range(4) for i in range(1000)
    ]
    assert len({e["event_id"] for e in events}) == 4000


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
    log.close("job_failed", {"error_type": "X", "message": "x"})
    terminal = read_events(tmp_path / "events.jsonl")[-1]
    assert terminal["operation"] == "job_failed"
    assert terminal["data"]["dropped_events"] == {"failing": 50}
    assert terminal["data"]["sink_errors"] == {"failing": "ConnectionError: sink is down"}


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


class Receiver(http.server.BaseHTTPRequestHandler):
    """A webhook receiver on 127.0.0.1 that answers from a script: a status (with its
    headers), or "hang"; then 204 for every request after the script."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
    script: list = []
    requests: list = []  # (client port, Idempotency-Key, events) of each request
    lock = threading.Lock()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with Receiver.lock:
            Receiver.requests.append((self.client_address[1], self.headers.get("Idempotency-Key"), json.loads(body)))
            answer = Receiver.script.pop(0) if Receiver.script else (204, {})
        if answer == "hang":
            time.sleep(3)
            return
        status, headers = answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.script, Receiver.requests = [], []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events"
    server.shutdown()


def deliver(tmp_path, url, steps=5, **options):
    """Log `steps` step events to a webhook at `url`; the terminal event's drop count."""
    sink = WebhookSink(url, **{"backoff_s": 0.01, "retries": 3, "timeout_s": 1.0, **options})
    log = logger_at(tmp_path / "events.jsonl", sinks=[sink])
    for index in range(steps):
        log.log_step(**STEP | {"step_num": index})
    log.close("job_completed", {})
    return read_events(tmp_path / "events.jsonl")[-1]["data"]["dropped_events"]["webhook"]


def test_webhook_batches_events_over_one_connection_with_their_ids(tmp_path, receiver):
    assert deliver(tmp_path, receiver, steps=100) == 0
    received = [event for _, _, batch in Receiver.requests for event in batch]
    assert [e["data"]["step_num"] for e in received if e["operation"] == "step"] == list(range(100))
    assert received[-1]["operation"] == "job_completed" and received[-1]["data"]["dropped_events"] == {"webhook": 0}
    assert len(Receiver.requests) < 100  # batched, not one request per event
    assert len({port for port, _, _ in Receiver.requests}) == 1  # one kept-alive connection
    for _, key, batch in Receiver.requests:
        assert len(key) == 64 and all(len(event["event_id"]) == 36 for event in batch)


def test_webhook_retries_a_server_error_until_it_is_accepted(tmp_path, receiver):
    Receiver.script = [(500, {}), (503, {})]
    assert deliver(tmp_path, receiver) == 0
    first, second, third = Receiver.requests[:3]
    assert first[1] == second[1] == third[1] and first[2] == third[2]  # the same batch, the same key


def test_webhook_never_retries_a_client_error_and_counts_its_events(tmp_path, receiver):
    Receiver.script = [(401, {})] * 10
    assert deliver(tmp_path, receiver, steps=3) == 3  # the terminal event counts what went before it
    # One try per batch, never the four of old: no batch, and no event, is sent twice.
    keys = [key for _, key, _ in Receiver.requests]
    assert len(keys) == len(set(keys))
    sent = [event["event_id"] for _, _, batch in Receiver.requests for event in batch]
    assert len(sent) == len(set(sent)) == 4  # the 3 steps, then the terminal event


def test_webhook_honours_retry_after(tmp_path, receiver):
    Receiver.script = [(429, {"Retry-After": "1"})]
    start = time.perf_counter()
    assert deliver(tmp_path, receiver, steps=1) == 0
    assert time.perf_counter() - start >= 1.0
    assert len(Receiver.requests) >= 2


def test_a_webhook_that_hangs_is_timed_out_and_counted_not_waited_for(tmp_path, receiver, monkeypatch):
    monkeypatch.setattr("runtime.job_logger.SINK_CLOSE_TIMEOUT_S", 1.0)
    Receiver.script = ["hang"] * 20
    start = time.perf_counter()
    assert deliver(tmp_path, receiver, steps=3, timeout_s=0.2, retries=1) == 3
    assert time.perf_counter() - start < 3.0


def test_webhook_that_is_down_is_counted_not_fatal(tmp_path):
    assert deliver(tmp_path, "http://127.0.0.1:1/events", timeout_s=0.2, retries=1) >= 5


def test_webhook_url_must_be_http():
    with pytest.raises(ValueError, match="webhook url must be http"):
        WebhookSink("file:///etc/passwd")


def test_logging_after_close_is_refused(tmp_path):
    log = logger_at(tmp_path / "events.jsonl")
    log.close()
    with pytest.raises(RuntimeError, match="closed"):
        log.log_step(**STEP)


def test_the_webhooks_max_queue_bounds_what_it_holds(tmp_path):
    from runtime.sinks import WebhookSink

    webhook = WebhookSink("http://127.0.0.1:9/events", max_queue=3)
    log = JobLogger(job=JobRef("j", "u", "w"), events_path=tmp_path / "events.jsonl", sinks=[webhook])
    try:
        (queued,) = log._queued
        assert queued._queue.maxsize == 3
    finally:
        log.close()
