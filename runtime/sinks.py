"""Where job events go: the JSONL file (always), a webhook, the console
(runtime/console.py), a tracker (runtime/trackers.py), or your own.

A sink receives batches of events. The JSONL file is written in the caller's thread,
so an event is on disk before `log_step` returns. Every other sink sits behind a
bounded queue served by its own thread: a slow, failing or hung sink never blocks or
kills training; what it could not take is counted and reported in the terminal event.

To add a sink, subclass `Sink` and name it in the config:

    porter:
      sinks:
        - _component_: mypackage.sinks.KafkaSink
          topic: jobs
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

Event = Dict[str, Any]


class Sink:
    """Receives job events in batches, from one thread at a time."""

    name = "sink"

    def emit(self, events: List[Event]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources; called once, after the last emit."""


def encode(event: Event) -> str:
    return json.dumps(event, default=_json_default, separators=(",", ":"), allow_nan=True)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # torch and numpy scalars
        return value.item()
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


class JsonlFileSink(Sink):
    """Appends one JSON object a line to the job's events.jsonl.

    Several processes append to the same file: each line goes out in one write() of
    an O_APPEND descriptor under an exclusive flock, so lines never interleave or tear.
    """

    name = "jsonl"

    def __init__(self, path: Path, mode: int = 0o600) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode)

    def emit(self, events: List[Event], sync: bool = False) -> None:
        data = "".join(encode(event) + "\n" for event in events).encode("utf-8")
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if sync:
                os.fsync(self._fd)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1


class WebhookSink(Sink):
    """POSTs batches of events as a JSON array over one kept-alive connection.

    Retries follow urllib3's `Retry`: connection errors, timeouts, 408, 429 and 5xx
    only, never another client error (a 401 will not pass by itself); `Retry-After` is
    honoured; otherwise exponential backoff with jitter. Each event carries its
    `event_id`, and the batch an `Idempotency-Key` made of them, so a receiver can
    de-duplicate a batch a retry delivered twice. Headers (a token) are sent, never
    logged.
    """

    name = "webhook"
    RETRY_STATUSES = (408, 429, 500, 502, 503, 504)

    def __init__(
        self,
        url: str,
        timeout_s: float = 5.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        headers: Optional[Dict[str, str]] = None,
        max_queue: int = 10_000,
    ) -> None:
        import requests
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must be http(s): {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.max_queue = max_queue  # events held while the endpoint is slow; more are dropped and counted
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            other=0,
            allowed_methods=frozenset({"POST"}),
            status_forcelist=self.RETRY_STATUSES,
            backoff_factor=backoff_s,
            backoff_jitter=backoff_s,
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        self._session = requests.Session()
        self._session.mount("http://", HTTPAdapter(max_retries=retry))
        self._session.mount("https://", HTTPAdapter(max_retries=retry))
        self._session.headers.update({"Content-Type": "application/json", **(headers or {})})

    def emit(self, events: List[Event]) -> None:
        import hashlib

        import requests

        body = ("[" + ",".join(encode(event) for event in events) + "]").encode("utf-8")
        ids = ",".join(str(event.get("event_id", "")) for event in events)
        key = hashlib.sha256(ids.encode()).hexdigest()
        try:
            response = self._session.post(self.url, data=body, timeout=self.timeout_s, headers={"Idempotency-Key": key})
        except requests.RequestException as error:
            raise ConnectionError(f"webhook {_without_secrets(self.url)}: {type(error).__name__}") from None
        if not 200 <= response.status_code < 300:
            raise ConnectionError(f"webhook {_without_secrets(self.url)} answered {response.status_code}")

    def close(self) -> None:
        self._session.close()


def _without_secrets(url: str) -> str:
    from runtime.secrets import redact_url

    return redact_url(url)


DEFAULT_MAX_QUEUE = 10_000


class QueuedSink:
    """Runs a sink on its own thread behind a bounded queue (`sink.max_queue` events,
    where the sink says); counts what it drops."""

    def __init__(self, sink: Sink, max_queue: int = DEFAULT_MAX_QUEUE, batch_size: int = 64) -> None:
        self.sink = sink
        self.name = sink.name
        self.dropped = 0
        self.last_error: Optional[str] = None  # why it last dropped events: in the terminal event
        self._in_flight = 0
        self._queue: "queue.Queue[Optional[Event]]" = queue.Queue(maxsize=max_queue)
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=f"porter-sink-{sink.name}", daemon=True)
        self._thread.start()

    def put(self, event: Event) -> None:
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            with self._lock:
                self.dropped += 1

    def _serve(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            batch = []
            while item is not None:
                batch.append(item)
                if len(batch) == self._batch_size:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stopping = item is None
            if batch:
                self._deliver(batch)

    def _deliver(self, batch: List[Event]) -> None:
        with self._lock:
            self._in_flight = len(batch)
        try:
            self.sink.emit(batch)
        except Exception as error:  # a sink must never take the job down
            with self._lock:
                self.dropped += len(batch)
                self.last_error = f"{type(error).__name__}: {error}"
        finally:
            with self._lock:
                self._in_flight = 0

    def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for everything queued to be delivered."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._queue.empty() and not self._in_flight:
                    return
            time.sleep(0.01)

    def abandon(self) -> int:
        """Give up on what is still queued; return every event not known delivered:
        dropped, abandoned, and any batch the sink still has in hand."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                with self._lock:
                    self.dropped += 1
        with self._lock:
            return self.dropped + self._in_flight

    def close(self, timeout_s: float) -> None:
        """Stop the thread once what is queued went out, waiting at most `timeout_s`."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            try:
                self.sink.close()
            except Exception as error:  # after the job's last event: said here, in one line
                print(
                    f"porter: warning: sink {self.name}: close failed: {type(error).__name__}: {error}", file=sys.stderr
                )
