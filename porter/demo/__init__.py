"""`porter demo`: a tiny model, tokenizer, datasets and configs, made here, offline.

Everything is generated deterministically from fixed seeds in a few seconds and cached
in the demo folder: a second `prepare` with the same porter version reuses it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from porter import __version__
from porter.demo import data
from porter.demo.configs import demo_configs
from porter.demo.model import MODEL_ARGS, write_model, write_reward_model
from porter.demo.tokenizer import write_tokenizer

DEFAULT_DIR = Path(".porter-demo")
_STAMP = ".porter-demo"
# Bump when the generated assets change, so cached folders are rebuilt.
ASSETS_VERSION = "7"


@dataclass(frozen=True)
class DemoAssets:
    root: Path

    @property
    def configs(self) -> Path:
        return self.root / "configs"

    def config(self, recipe: str) -> Path:
        return self.configs / f"{recipe}.yaml"

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def data(self) -> Path:
        return self.root / "data"


# Everything the demo needs is on disk: never reach for a hub.
OFFLINE = {"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": ""}


def go_offline() -> None:
    """Keep this process and the jobs it starts off the model and dataset hubs."""
    os.environ.update(OFFLINE)


def prepare(directory: Path = DEFAULT_DIR) -> DemoAssets:
    """Make (or reuse) the demo assets under `directory`."""
    root = directory.resolve()
    stamp = root / _STAMP
    expected = f"porter {__version__} assets {ASSETS_VERSION}\n"
    if stamp.is_file() and stamp.read_text() == expected:
        return DemoAssets(root)
    # Build beside the target and swap it in whole: never a half-made folder.
    building = root.with_name(root.name + ".building")
    shutil.rmtree(building, ignore_errors=True)
    for folder in ("model", "teacher", "reward", "data", "configs"):
        (building / folder).mkdir(parents=True)
    _write_assets(building, root)
    (building / _STAMP).write_text(expected)
    if root.exists():
        shutil.rmtree(root)
    building.rename(root)
    return DemoAssets(root)


def _write_assets(building: Path, root: Path) -> None:
    items = data.tasks()
    data.write_json(building / "data" / "instruct.json", data.instruct_records(items))
    data.write_jsonl(building / "data" / "chat.jsonl", data.chat_records(items))
    data.write_jsonl(building / "data" / "preference.jsonl", data.preference_records(items))
    data.write_jsonl(building / "data" / "preference_messages.jsonl", data.preference_message_records(items))
    data.write_jsonl(building / "data" / "prompts.jsonl", data.prompt_records(items))
    data.write_json(building / "data" / "reasoning.json", data.reasoning_records(items))
    write_tokenizer(data.corpus(items), building / "model", vocab_size=MODEL_ARGS["vocab_size"])
    write_model(building / "model", seed=0)
    write_model(building / "teacher", seed=1)
    write_reward_model(building / "reward", seed=2)
    for folder in ("teacher", "reward"):  # checkpointers copy these beside the weights
        for name in ("tokenizer.model", "special_tokens.json"):
            shutil.copy(building / "model" / name, building / folder / name)
    for name, config in demo_configs(root).items():
        path = building / "configs" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
