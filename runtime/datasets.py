"""The dataset a job is given (`--dataset`): fetched, validated, then tokenized.

A local path or any fsspec URL. Formats, one JSON object a line (JSONL) or a JSON
array:

- chat:        {"messages": [{"role": "user", "content": "..."}, ...]}  (OpenAI style)
- instruct:    {"instruction": "...", "input": "...", "output": "..."}  (input optional)
- preference:  {"prompt": "...", "chosen": "...", "rejected": "..."}, or chosen and
               rejected as whole conversations (message lists, as in chat)
- prompt:      {"prompt": "...", "answer": "..."}                        (answer optional)

Which kinds a recipe trains on follows from its config's loss (runtime/families.py):
DPO-style losses take preference data, PPO and GRPO take prompts, everything else chat
or instruct data.

The whole file is checked before training: the first bad line stops the job with its
line number. The validated records are written, normalised, into the job folder; the
recipe's own tokenizer turns them into a torchtune dataset when the recipe sets up
its data, with the dataset options (`packed`, `train_on_input`) of its config.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, IO, Iterator, List, Optional, Tuple

from runtime.families import FAMILY_KINDS, SFT
from runtime.job import JobError
from runtime.files import atomic_file

MAX_LINE_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 16
ROLES = ("system", "user", "assistant", "ipython", "tool")


class DatasetError(JobError):
    """A dataset that cannot be used: one line naming the file, line and field."""


# Required and optional string fields of each record kind; chat is checked on its own.
_FIELDS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "instruct": (("instruction", "output"), ("input",)),
    "preference": (("prompt", "chosen", "rejected"), ()),
    "prompt": (("prompt",), ("answer",)),
}
KIND_FIELDS = {
    "chat": "messages",
    "instruct": "instruction, input, output",
    "preference": "prompt, chosen, rejected",
    "prompt": "prompt",
}


def detect_kind(record: Dict[str, Any]) -> Optional[str]:
    if "messages" in record:
        return "chat"
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "instruction" in record or "output" in record:
        return "instruct"
    if "prompt" in record:
        return "prompt"
    return None


def _check(record: Any, kind: Optional[str], where: str) -> Tuple[str, Dict[str, Any]]:
    """The record's kind and its normalised form, or DatasetError."""
    if not isinstance(record, dict):
        raise DatasetError(f"{where}: expected a JSON object, got {type(record).__name__}")
    found = detect_kind(record)
    if found is None:
        raise DatasetError(
            f"{where}: no 'messages', 'instruction'/'output', 'prompt'/'chosen'/'rejected' or 'prompt' field"
        )
    if kind is not None and found != kind:
        raise DatasetError(f"{where}: {_a(found)} record in {_a(kind)} dataset")
    if found == "chat":
        messages = _check_messages(record["messages"], where)
        problem = _conversation_problem(messages)
        if problem is not None:
            raise DatasetError(f"{where}: field 'messages': {problem}")
        return found, {"messages": messages}
    if found == "preference" and isinstance(record.get("chosen"), list):
        return found, {
            "chosen": _check_messages(record["chosen"], where, "chosen"),
            "rejected": _check_messages(record.get("rejected"), where, "rejected"),
        }
    required, optional = _FIELDS[found]
    normal = {}
    for name in required + optional:
        if name not in record:
            if name in required:
                raise DatasetError(f"{where}: missing field '{name}'")
            normal[name] = ""
            continue
        if not isinstance(record[name], str):
            raise DatasetError(f"{where}: field '{name}' must be a string, got {_type(record[name])}")
        normal[name] = record[name]
    if found == "preference":  # as conversations, the form torchtune's builder reads
        return found, {
            answer: [
                {"role": "user", "content": normal["prompt"]},
                {"role": "assistant", "content": normal[answer]},
            ]
            for answer in ("chosen", "rejected")
        }
    return found, normal


def _check_messages(messages: Any, where: str, name: str = "messages") -> List[Dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DatasetError(f"{where}: field '{name}' must be a non-empty list, got {_type(messages)}")
    normal = []
    for index, message in enumerate(messages):
        field = f"{name}[{index}]"
        if not isinstance(message, dict):
            raise DatasetError(f"{where}: {field} must be an object, got {_type(message)}")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise DatasetError(f"{where}: {field}.role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise DatasetError(f"{where}: {field}.content must be a string, got {_type(content)}")
        normal.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in normal):
        raise DatasetError(f"{where}: field '{name}' has no assistant message to learn from")
    return normal


def _conversation_problem(messages: List[Dict[str, str]]) -> Optional[str]:
    """What torchtune's own check of a conversation (`validate_messages`, which its chat
    datasets run on every sample) finds wrong with `messages`, if anything: a system
    message after the first, two user messages in a row, an assistant message first."""
    from torchtune.data import Message, validate_messages

    try:
        validate_messages([Message(role=m["role"], content=m["content"]) for m in messages])
    except ValueError as error:
        return str(error)
    return None


def _a(kind: str) -> str:
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}"


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _lines(stream: IO[bytes], name: str) -> Iterator[Tuple[int, str]]:
    """(line number, text) of each line, none longer than MAX_LINE_BYTES. Reads in
    chunks: fsspec's remote files (http, s3, gs) have no `readline(size)`."""
    number, pending = 0, b""
    while True:
        chunk = stream.read(_CHUNK_BYTES)
        pending += chunk
        start = 0
        while True:
            end = pending.find(b"\n", start)
            if end < 0 and (chunk or start == len(pending)):
                break
            stop = len(pending) if end < 0 else end + 1
            number += 1
            yield number, _decoded(pending[start:stop], name, number)
            start = stop
        pending = pending[start:]
        if len(pending) > MAX_LINE_BYTES:
            raise DatasetError(f"{name}:{number + 1}: line longer than {MAX_LINE_BYTES // (1 << 20)} MiB")
        if not chunk:
            return


def _decoded(raw: bytes, name: str, number: int) -> str:
    if len(raw) > MAX_LINE_BYTES + 1:  # + 1: its newline
        raise DatasetError(f"{name}:{number}: line longer than {MAX_LINE_BYTES // (1 << 20)} MiB")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DatasetError(
            f"{name}:{number}: not UTF-8 (byte {raw[error.start]:#04x} at column {error.start + 1})"
        ) from error


def _records(stream: IO[bytes], name: str) -> Iterator[Tuple[str, Any]]:
    """(where, record) for each record of a JSONL file or a JSON array."""
    lines = _lines(stream, name)
    first = next(((number, line) for number, line in lines if line.strip()), None)
    if first is None:
        raise DatasetError(f"{name}: empty dataset")
    if first[1].lstrip().startswith("["):
        text = first[1] + "".join(rest for _, rest in lines)
        try:
            items = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{name}:{first[0] + error.lineno - 1}: malformed JSON: {error.msg}") from error
        if not isinstance(items, list):
            raise DatasetError(f"{name}: expected a JSON array of records")
        for index, item in enumerate(items):
            yield f"{name}: record {index + 1}", item
        return
    for number, line in itertools.chain([first], lines):
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", json.loads(line)
        except json.JSONDecodeError as error:
            raise DatasetError(f"{name}:{number}: malformed JSON: {error.msg} (column {error.colno})") from error


@dataclass(frozen=True)
class Dataset:
    """A validated job dataset: its normalised copy, kind and size."""

    path: Path
    kind: str
    size: int
    source: str

    @classmethod
    def fetch(cls, source: str, folder: Path) -> "Dataset":
        """Read `source` (path or fsspec URL), validate every record, and write the
        normalised records to `folder`; DatasetError on the first bad line."""
        import fsspec

        name = source
        if "://" not in source and not Path(source).is_file():
            raise DatasetError(f"{source}: no such dataset file")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "records.jsonl"
        kind, size = None, 0
        try:
            with fsspec.open(source, "rb") as stream, atomic_file(target) as out:
                for where, record in _records(stream, name):
                    kind, normal = _check(record, kind, where)
                    out.write(json.dumps(normal, ensure_ascii=False) + "\n")
                    size += 1
                if size == 0:
                    raise DatasetError(f"{source}: empty dataset")
        except DatasetError:
            raise
        except (OSError, ValueError, ImportError) as error:
            raise DatasetError(f"{source}: cannot read: {error}") from error
        return cls(target, kind, size, source)

    def check_kind(self, kinds: Tuple[str, ...], recipe: str) -> None:
        if self.kind not in kinds:
            wanted = " or ".join(f"{kind} ({KIND_FIELDS[kind]})" for kind in kinds)
            raise DatasetError(f"{self.source}: {_a(self.kind)} dataset, but {recipe} trains on {wanted} data")

    def builder_config(self, options: Dict[str, Any]) -> Dict[str, Any]:
        """The torchtune dataset config that builds this dataset, with the recipe
        config's dataset `options` (packed, train_on_input) that apply to it."""
        common = {"source": "json", "data_files": str(self.path), "split": "train"}
        kept = {k: options[k] for k in ("packed", "train_on_input") if k in options}
        if self.kind == "chat":
            return {
                "_component_": "torchtune.datasets.chat_dataset",
                **common,
                "conversation_column": "messages",
                "conversation_style": "openai",
                **kept,
            }
        if self.kind == "instruct":
            return {"_component_": "torchtune.datasets.alpaca_dataset", **common, **kept}
        if self.kind == "preference":
            return {"_component_": "torchtune.datasets.preference_dataset", **common}
        return {
            "_component_": "torchtune.datasets.text_completion_dataset",
            **common,
            "column": "prompt",
            "add_eos": False,
        }

    def mix_entry(self, options: Dict[str, Any]) -> Dict[str, Any]:
        """This dataset as an entry of a dataset mix (`datasets:` in multi-dataset
        recipes): loaded by `load_hf_dataset`, turned into messages by its transform."""
        if self.kind not in FAMILY_KINDS[SFT]:
            raise DatasetError(f"{self.source}: a {self.kind} dataset cannot join a dataset mix")
        transform = "OpenAIToMessages" if self.kind == "chat" else "AlpacaToMessages"
        return {
            "source": "json",
            "data_files": str(self.path),
            "split": "train",
            "transform": {
                "_component_": f"torchtune.data.{transform}",
                "train_on_input": options.get("train_on_input", False),
            },
            "weight": 1.0,
        }


def build(config: Any, tokenizer: Any) -> Any:
    """A job dataset from its config: a torchtune dataset tokenized by `tokenizer`, or
    for a dataset-mix entry the torchdata node the mix recipe tokenizes itself."""
    from torchtune import config as torchtune_config

    if "_component_" in config:
        return torchtune_config.instantiate(config, tokenizer)
    from torchtune.data._utils import load_hf_dataset

    options = {key: value for key, value in config.items() if key not in ("transform", "weight")}
    return load_hf_dataset(**options, transform=torchtune_config.instantiate(config.transform))
