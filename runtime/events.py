"""The job event contract, declared once.

Every event is an `Envelope` whose `data` is the dataclass of its `operation`. The job
logger builds events from these classes, porter's step-event template is rendered from
`Step`'s fields, and `docs/events.schema.json` and the README's event table are
generated from them (`python -m runtime.events`); a test fails when either is stale.

Compatibility: fields are added, never renamed, retyped or removed; a change that must
break this bumps SCHEMA_VERSION. Every event has a unique, time-sortable `event_id`:
receivers de-duplicate on it (a webhook retry may deliver an event twice).

Imports nothing heavy: the converter reads it without loading torch.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Type

SCHEMA_VERSION = 1


def _doc(text: str, **kwargs: Any) -> Any:
    return field(metadata={"doc": text}, **kwargs)


@dataclass
class Envelope:
    event_id: str = _doc("UUIDv7: unique, sortable by time; receivers de-duplicate on it")
    seq: int = _doc("1, 2, 3, ... per job and process")
    schema_version: int = _doc("the version of this contract the event follows")
    job_id: str = _doc("the job's id")
    user_id: str = _doc("the id of the user who owns the job")
    create_ts: str = _doc("when the event was made: UTC, ISO 8601, microseconds")
    workflow: str = _doc("the recipe's name")
    node_rank: int = _doc("the node whose process wrote it (0 on one machine)")
    gpu_rank: Optional[int] = _doc("the rank of the process that wrote it, or null for `porter run` itself")
    operation: str = _doc("what happened: one of the operations below")
    data: Dict[str, Any] = _doc("the operation's fields")


@dataclass(frozen=True)
class SchedulerJob:
    scheduler: str = _doc("the scheduler: `slurm`")
    job_id: str = _doc("its id of the job (SLURM_JOB_ID)")
    restart_count: int = _doc("how often it restarted the job, requeued or preempted (SLURM_RESTART_COUNT)")


@dataclass
class JobStarted:
    recipe: str = _doc("the recipe's name")
    world_size: int = _doc("processes in the job")
    dataset: Optional[str] = _doc("where the job's dataset came from (credentials redacted), or null")
    resumed: bool = _doc("whether the job resumes an earlier attempt")
    porter_version: str = _doc("the porter version that ran it")
    nnodes: int = _doc("nodes in the job", default=1)
    heartbeat_s: Optional[float] = _doc(
        "seconds between heartbeats (0: none); a job silent for 3 is stale", default=None
    )
    scheduler_job: Optional[SchedulerJob] = _doc("the scheduler's job this attempt ran as, or null", default=None)


@dataclass
class Gpu:
    index: int = _doc("the device index")
    name: str = _doc("the device's name")
    memory_bytes: int = _doc("its memory")


@dataclass
class SystemSpecs:
    hostname: str = _doc("the machine's name")
    platform: str = _doc("the operating system")
    python: str = _doc("the Python version")
    cpu_model: str = _doc("the processor")
    cpu_count_logical: Optional[int] = _doc("logical CPUs")
    cpu_count_physical: Optional[int] = _doc("physical CPU cores")
    memory_total_bytes: int = _doc("memory in all")
    memory_available_bytes: int = _doc("memory available at the start")
    gpus: List[Gpu] = _doc("the GPUs")
    cuda: Optional[str] = _doc("the CUDA version torch was built with, or null")
    versions: Dict[str, str] = _doc("torch, torchtune, torchao and porter versions")


@dataclass
class JobConfig:
    config: Dict[str, Any] = _doc("the resolved config, secrets redacted")


@dataclass
class Step:
    gpu_rank: int = _doc("the rank that logged the step")
    step_num: int = _doc("optimizer steps done")
    step_len: int = _doc("optimizer steps the job will take")
    step_loss: float = _doc("the loss the recipe logged")
    step_lr: Optional[float] = _doc(
        "the learning rate; null when the recipe's metric dict has none (a fork's dict that merges others)"
    )
    step_peak_memory_active: Optional[float] = _doc("peak active GPU memory, GiB, when the recipe logs it")
    step_peak_memory_alloc: Optional[float] = _doc("peak allocated GPU memory, GiB, when the recipe logs it")
    step_peak_memory_reserved: Optional[float] = _doc("peak reserved GPU memory, GiB, when the recipe logs it")
    step_time_elapsed_s: float = _doc("seconds the step took")
    epoch_num: int = _doc("the epoch, from 1")
    epoch_len: int = _doc("epochs in the job")
    step_tokens_per_s: Optional[float] = _doc(
        "tokens per second of the rank that logged it, when the recipe logs it", default=None
    )


@dataclass
class Epoch:
    gpu_rank: int = _doc("the rank that finished the epoch")
    epoch_num: int = _doc("the epoch, from 1")
    epoch_len: int = _doc("epochs in the job")
    epoch_time_elapsed_s: float = _doc("seconds the epoch took, its save included")


@dataclass
class Heartbeat:
    gpu_rank: int = _doc("the rank beating")
    pid: int = _doc("its process id")
    uptime_s: float = _doc("seconds since its job logger started")
    rss_bytes: int = _doc("its resident memory")


@dataclass
class Weights:
    kind: str = _doc(
        "`intermediate`, `final`, `removed` (checkpoints `porter.keep_last_n_checkpoints` deleted), or `all` (every file, at cleanup)"
    )
    files: List[str] = _doc("the files written (the folders deleted), relative to the job folder")
    epoch: Optional[int] = _doc("the epoch saved (from 0), or null for `all`", default=None)
    step: Optional[int] = _doc("the optimizer step saved, or null", default=None)
    resumable: Optional[bool] = _doc("whether the job can resume from it, or null for `all`", default=None)


@dataclass
class JobEnded:
    dropped_events: Dict[str, int] = _doc("events each sink could not deliver, by sink")
    error_type: Optional[str] = _doc("the error's type (failed, cancelled), or null", default=None)
    message: Optional[str] = _doc("the error's one-line message, secrets scrubbed, or null", default=None)
    gpu_rank: Optional[int] = _doc("the rank that failed first, or null", default=None)
    node_rank: Optional[int] = _doc("the node where it failed, or null", default=None)
    traceback_file: Optional[str] = _doc("its error report, relative to the job folder, or null", default=None)
    sink_errors: Dict[str, str] = _doc("why each sink that dropped events last failed, by sink", default_factory=dict)


# operation -> its data, and when it is logged.
OPERATIONS: Dict[str, Tuple[Type[Any], str]] = {
    "job_started": (JobStarted, "once, first"),
    "system_specs": (SystemSpecs, "once, by rank 0 at setup"),
    "job_config": (JobConfig, "once, by rank 0 at setup"),
    "step": (Step, "by rank 0, once per logging step"),
    "epoch": (Epoch, "once per epoch and rank"),
    "heartbeat": (Heartbeat, "every `porter.heartbeat_s` seconds while the job lives"),
    "weights": (Weights, "at every save, and once at cleanup"),
    "job_completed": (JobEnded, "last, when the job completed"),
    "job_failed": (JobEnded, "last, when it failed"),
    "job_cancelled": (JobEnded, "last, when a signal cancelled it"),
}
TERMINAL = ("job_completed", "job_failed", "job_cancelled")
STEP_FIELDS = tuple(f.name for f in dataclasses.fields(Step))
EPOCH_FIELDS = tuple(f.name for f in dataclasses.fields(Epoch))


def keyword_signature(operation: str) -> inspect.Signature:
    """`(self, *, <field>, ...)`: the signature of a logger method whose keywords are
    exactly `operation`'s fields, so that `inspect.signature` reads them (as
    `porter contract check` does) from this one definition."""
    parameters = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    for item in dataclasses.fields(OPERATIONS[operation][0]):
        default = item.default if item.default is not dataclasses.MISSING else inspect.Parameter.empty
        parameters.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=default))
    return inspect.Signature(parameters)


def event_data(operation: str, data: Dict[str, Any]) -> Dict[str, Any]:
    """`data` as the contract has it: every field, in order, defaults filled in.
    TypeError names a missing or unknown field."""
    cls = OPERATIONS[operation][0]
    return dataclasses.asdict(cls(**data)) if cls is not JobConfig else {"config": data["config"]}


# -- event ids --------------------------------------------------------------------------------

_ids = threading.Lock()
_last: List[int] = [0, 0]  # the last id's milliseconds and counter, for monotonic ids


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, a 12-bit counter that keeps ids
    of one process increasing within a millisecond, 62 random bits. Python's own
    `uuid.uuid7` comes with 3.14; porter runs on 3.10 and later."""
    with _ids:
        millis = time.time_ns() // 1_000_000
        if millis <= _last[0]:
            millis, counter = _last[0], _last[1] + 1
            if counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                millis, counter = millis + 1, 0
        else:
            counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        _last[:] = [millis, counter]
    value = (millis << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | (int.from_bytes(os.urandom(8), "big") >> 2)
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


# -- generated documents ----------------------------------------------------------------------

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "docs" / "events.schema.json"
README = Path(__file__).resolve().parents[1] / "README.md"
_TABLE_BEGIN, _TABLE_END = (
    "<!-- event schema: generated by `python -m runtime.events`; do not edit -->",
    "<!-- end of the event schema -->",
)


def json_schema() -> Dict[str, Any]:
    """The contract as a JSON Schema (draft 2020-12): one variant per operation.

    Written here rather than by a library from the dataclasses: the few types the
    contract uses map one to one, and the file stays byte-stable across library versions."""
    definitions: Dict[str, Any] = {}
    variants = []
    for operation, (cls, _) in OPERATIONS.items():
        definitions[cls.__name__] = _object_schema(cls, definitions)
        envelope = _object_schema(Envelope, definitions)
        envelope["properties"]["operation"] = {"const": operation}
        envelope["properties"]["data"] = {"$ref": f"#/$defs/{cls.__name__}"}
        variants.append(envelope)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/porter/porter/docs/events.schema.json",
        "title": f"porter job event, schema version {SCHEMA_VERSION}",
        "oneOf": variants,
        "$defs": dict(sorted(definitions.items())),
    }


def _object_schema(cls: Type[Any], definitions: Dict[str, Any]) -> Dict[str, Any]:
    hints = typing.get_type_hints(cls)
    properties = {}
    for item in dataclasses.fields(cls):
        properties[item.name] = {**_type_schema(hints[item.name], definitions), "description": item.metadata["doc"]}
    if cls is Envelope:
        properties["schema_version"]["const"] = SCHEMA_VERSION
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": cls is JobConfig,
    }


def _type_schema(hint: Any, definitions: Dict[str, Any]) -> Dict[str, Any]:
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union:
        (inner,) = [a for a in arguments if a is not type(None)]
        schema = _type_schema(inner, definitions)
        return {"anyOf": [schema, {"type": "null"}]}
    if origin in (list, List):
        return {"type": "array", "items": _type_schema(arguments[0], definitions)}
    if origin in (dict, Dict):
        values = arguments[1]
        return (
            {"type": "object"}
            if values is Any
            else {"type": "object", "additionalProperties": _type_schema(values, definitions)}
        )
    if dataclasses.is_dataclass(hint):
        definitions[hint.__name__] = _object_schema(hint, definitions)
        return {"$ref": f"#/$defs/{hint.__name__}"}
    return {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[hint]}


def readme_table() -> str:
    """The README's event table: the envelope, then each operation's data."""
    lines = [_TABLE_BEGIN, "", "| field | |", "|---|---|"]
    lines += [f"| `{f.name}` | {f.metadata['doc']} |" for f in dataclasses.fields(Envelope)]
    lines += ["", "| operation | when | data |", "|---|---|---|"]
    for operation, (cls, when) in OPERATIONS.items():
        fields = ", ".join(f"`{f.name}`" for f in dataclasses.fields(cls))
        lines.append(f"| `{operation}` | {when} | {fields} |")
    lines += ["", _TABLE_END]
    return "\n".join(lines)


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


def readme_with_table(readme: str) -> str:
    """`readme` with its generated event table replaced by the current one."""
    pattern = re.compile(re.escape(_TABLE_BEGIN) + ".*?" + re.escape(_TABLE_END), re.DOTALL)
    if not pattern.search(readme):
        raise ValueError("the README has no generated event table")
    return pattern.sub(lambda _: readme_table(), readme)


def main() -> None:
    """Write docs/events.schema.json and the README's event table from the contract."""
    SCHEMA_FILE.write_text(schema_text())
    README.write_text(readme_with_table(README.read_text()))
    print(f"wrote {SCHEMA_FILE} and the event table of {README}", file=sys.stderr)


if __name__ == "__main__":
    main()
