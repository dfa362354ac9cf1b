"""The event contract (runtime/events.py) is the one definition: the JSON Schema file and
the README's table are generated from it and checked here, and what the job logger
writes validates against the schema."""

from __future__ import annotations

import json
import re
import time

import jsonschema

from conftest import REPO
from runtime import events
from runtime.job import JobRef
from runtime.job_logger import JobLogger, read_events


def test_the_schema_file_is_generated_from_the_contract():
    assert (REPO / "docs" / "events.schema.json").read_text() == events.schema_text(), "run: python -m runtime.events"


def test_the_readme_table_is_generated_from_the_contract():
    readme = (REPO / "README.md").read_text()
    assert events.readme_with_table(readme) == readme, "run: python -m runtime.events"
    for operation in events.OPERATIONS:
        assert f"| `{operation}` |" in readme


def test_every_operation_the_logger_writes_validates_against_the_schema(tmp_path):
    schema = json.loads((REPO / "docs" / "events.schema.json").read_text())  # the committed contract
    path = tmp_path / "events.jsonl"
    log = JobLogger(job=JobRef("j", "u", "w"), events_path=path)
    log.log(
        "job_started",
        {"recipe": "r", "world_size": 2, "dataset": "s3://b/k", "resumed": False, "porter_version": "0.1"},
    )
    log.log(
        "system_specs",
        {
            "hostname": "h",
            "platform": "p",
            "python": "3",
            "cpu_model": "c",
            "cpu_count_logical": 2,
            "cpu_count_physical": None,
            "memory_total_bytes": 1,
            "memory_available_bytes": 1,
            "gpus": [{"index": 0, "name": "g", "memory_bytes": 1}],
            "cuda": None,
            "versions": {"torch": "2"},
        },
    )
    log.log("job_config", {"config": {"lr": 1e-3, "nested": {"a": [1, 2]}}})
    log.log_step(**{name: 1 for name in events.STEP_FIELDS} | {"step_peak_memory_active": None})
    log.log_epoch(**{name: 1 for name in events.EPOCH_FIELDS})
    log.log("heartbeat", {"gpu_rank": 0, "pid": 1, "uptime_s": 0.5, "rss_bytes": 1})
    log.log("weights", {"kind": "final", "epoch": 1, "step": 20, "resumable": False, "files": ["a"]})
    log.log("weights", {"kind": "all", "files": ["a"]})
    log.close("job_failed", {"error_type": "E", "message": "m", "gpu_rank": 0, "traceback_file": "errors/x.json"})
    written = read_events(path)
    assert {event["operation"] for event in written} == set(events.OPERATIONS) - {"job_completed", "job_cancelled"}
    for event in written:
        jsonschema.validate(event, schema)


def test_a_renamed_or_missing_field_fails_the_schema():
    schema = json.loads((REPO / "docs" / "events.schema.json").read_text())  # the committed contract
    event = {
        "event_id": events.new_event_id(),
        "seq": 1,
        "schema_version": events.SCHEMA_VERSION,
        "job_id": "j",
        "user_id": "u",
        "create_ts": "t",
        "workflow": "w",
        "operation": "epoch",
        "data": {"gpu_rank": 0, "epoch": 1, "epoch_len": 1, "epoch_time_elapsed_s": 1.0},
    }
    try:
        jsonschema.validate(event, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("an epoch event with `epoch` for `epoch_num` passed the schema")


def test_event_ids_are_uuid7_unique_and_increasing():
    ids = [events.new_event_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(
        re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids[:100]
    )
    millis = int(ids[-1].replace("-", "")[:12], 16)
    assert abs(millis / 1000 - time.time()) < 60


def test_a_step_without_a_learning_rate_is_valid_and_the_console_leaves_lr_out(tmp_path):
    """A fork's metric dict that merges others may lack `lr` (README: forks): its step
    event says null, which the committed schema allows, and the progress line has no lr."""
    from runtime.console import progress_line

    schema = json.loads((REPO / "docs" / "events.schema.json").read_text())
    path = tmp_path / "events.jsonl"
    log = JobLogger(job=JobRef("j", "u", "w"), events_path=path)
    log.log_step(**{name: 1 for name in events.STEP_FIELDS} | {"step_lr": None, "step_loss": 0.5})
    log.close("job_completed", {})
    (step,) = [event for event in read_events(path) if event["operation"] == "step"]
    jsonschema.validate(step, schema)
    assert step["data"]["step_lr"] is None
    assert progress_line(step["data"], world_size=1, mean_step_s=0.0) == "step 1/1 · epoch 1/1 · loss 0.5 · 1 tok/s"
