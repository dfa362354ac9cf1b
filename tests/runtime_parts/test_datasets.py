"""Job datasets are checked whole before training: each bad input names its line."""

from __future__ import annotations

import json

import pytest

from runtime.datasets import Dataset, DatasetError, MAX_LINE_BYTES

CHAT = {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]}
INSTRUCT = {"instruction": "Add.", "input": "2 and 2", "output": "4"}


def write(tmp_path, *lines, name="data.jsonl", raw=None):
    path = tmp_path / name
    if raw is not None:
        path.write_bytes(raw)
    else:
        path.write_text("".join((json.dumps(line) if not isinstance(line, str) else line) + "\n" for line in lines))
    return path


def fetch(tmp_path, path):
    return Dataset.fetch(str(path), tmp_path / "job" / "dataset")


def test_chat_jsonl_is_validated_normalised_and_kept_in_the_job_folder(tmp_path):
    path = write(tmp_path, CHAT, CHAT | {"extra": "ignored"})
    dataset = fetch(tmp_path, path)
    assert (dataset.kind, dataset.size) == ("chat", 2)
    assert dataset.path == tmp_path / "job" / "dataset" / "records.jsonl"
    assert [json.loads(line) for line in dataset.path.read_text().splitlines()] == [CHAT, CHAT]
    config = dataset.builder_config({"packed": True, "train_on_input": False, "source": "x"})
    assert config == {
        "_component_": "torchtune.datasets.chat_dataset",
        "source": "json",
        "data_files": str(dataset.path),
        "split": "train",
        "conversation_column": "messages",
        "conversation_style": "openai",
        "packed": True,
        "train_on_input": False,
    }


def test_instruct_json_array_with_optional_input(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([INSTRUCT, {"instruction": "Say hi.", "output": "hi"}], indent=2))
    dataset = fetch(tmp_path, path)
    assert (dataset.kind, dataset.size) == ("instruct", 2)
    assert json.loads(dataset.path.read_text().splitlines()[1]) == {
        "instruction": "Say hi.",
        "output": "hi",
        "input": "",
    }
    assert dataset.builder_config({})["_component_"] == "torchtune.datasets.alpaca_dataset"


@pytest.mark.parametrize(
    "lines, raw, message",
    [
        ((), b"", "data.jsonl: empty dataset"),
        ((), b"\n\n  \n", "data.jsonl: empty dataset"),
        (
            (CHAT, "{oops"),
            None,
            "data.jsonl:2: malformed JSON: Expecting property name enclosed in double quotes (column 2)",
        ),
        ((CHAT, [1, 2]), None, "data.jsonl:2: expected a JSON object, got list"),
        ((CHAT, {"text": "hi"}), None, "data.jsonl:2: no 'messages', 'instruction'/'output'"),
        ((INSTRUCT, {"instruction": "x"}), None, "data.jsonl:2: missing field 'output'"),
        ((INSTRUCT, INSTRUCT | {"output": 4}), None, "data.jsonl:2: field 'output' must be a string, got int"),
        ((CHAT, {"messages": []}), None, "data.jsonl:2: field 'messages' must be a non-empty list, got list"),
        (
            (CHAT, {"messages": [{"role": "robot", "content": "x"}]}),
            None,
            "data.jsonl:2: messages[0].role must be one of system, user, assistant, ipython, tool, got 'robot'",
        ),
        (
            (CHAT, {"messages": [{"role": "assistant", "content": None}]}),
            None,
            "data.jsonl:2: messages[0].content must be a string, got null",
        ),
        ((CHAT, INSTRUCT), None, "data.jsonl:2: an instruct record in a chat dataset"),
        # What torchtune's own check of each sample (validate_messages) refuses, found
        # before any model is built instead of hours into training:
        (
            (
                CHAT,
                {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"},
                    ]
                },
            ),
            None,
            "data.jsonl:2: field 'messages': Two consecutive user messages at index 1 and 0 in messages",
        ),
        (
            (
                CHAT,
                {
                    "messages": [
                        {"role": "assistant", "content": "a"},
                        {"role": "user", "content": "b"},
                        {"role": "assistant", "content": "c"},
                    ]
                },
            ),
            None,
            "data.jsonl:2: field 'messages': Assistant message before expected user message at index 0 in messages",
        ),
        (
            (
                CHAT,
                {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "system", "content": "b"},
                        {"role": "assistant", "content": "c"},
                    ]
                },
            ),
            None,
            "data.jsonl:2: field 'messages': System message at index 1 in messages, but system messages must come first",
        ),
        ((), b'{"messages": []}\n' + b"\xff\xfe{}\n", "data.jsonl:1: field 'messages' must be a non-empty list"),
        (
            (),
            json.dumps(CHAT).encode() + b'\n{"messages": "\xff"}\n',
            "data.jsonl:2: not UTF-8 (byte 0xff at column 15)",
        ),
        (
            (),
            json.dumps(CHAT).encode() + b"\n" + b'{"pad": "' + b"x" * (MAX_LINE_BYTES + 10) + b'"}\n',
            "data.jsonl:2: line longer than 1 MiB",
        ),
    ],
)
def test_bad_records_are_refused_with_the_line(tmp_path, lines, raw, message):
    path = write(tmp_path, *lines, raw=raw)
    with pytest.raises(DatasetError) as error:
        fetch(tmp_path, path)
    assert str(error.value).startswith(str(path)) and message in str(error.value)
    assert str(error.value).count("\n") == 0
    assert not (tmp_path / "job" / "dataset" / "records.jsonl").exists()


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.jsonl: no such dataset file"):
        fetch(tmp_path, tmp_path / "nope.jsonl")


def test_fsspec_urls_are_read(tmp_path):
    import fsspec

    with fsspec.open("memory://datasets/chat.jsonl", "w") as stream:
        stream.write(json.dumps(CHAT) + "\n")
    assert Dataset.fetch("memory://datasets/chat.jsonl", tmp_path / "a").size == 1
    path = write(tmp_path, INSTRUCT)
    assert Dataset.fetch(f"file://{path}", tmp_path / "b").kind == "instruct"


def test_an_unreachable_url_is_refused(tmp_path):
    with pytest.raises(DatasetError, match=r"^http://127\.0\.0\.1:1/data\.jsonl: cannot read: "):
        Dataset.fetch("http://127.0.0.1:1/data.jsonl", tmp_path / "a")
