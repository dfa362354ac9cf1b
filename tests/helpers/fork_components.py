"""Components that make the fork-shape fixtures (tests/helpers/fork_shapes.py) train for real.

The fixtures are small recipe-shaped modules; with a config naming these components
(`config()`), each one trains the demo's tiny model (porter.demo.model's architecture)
on token sequences made here, deterministically, logs its metrics to a JSON-lines file
and saves checkpoints with torch. That is enough to run a fixture before and after
its port and compare what each did (tests/e2e/test_fork_equivalence.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from omegaconf import OmegaConf
from torch import nn
from torchtune.training import MODEL_KEY

SEQUENCE_LENGTH = 32
SEQUENCES = 16  # with batch size 4: 4 steps an epoch, the fixtures' `_steps_per_epoch`
LEARNING_RATE = 0.05


class TinyLM(nn.Module):
    """The demo model's architecture, seeded, returning the batch's loss.

    The fixtures' loops have no optimizer of their own, so each forward first takes the
    plain SGD step the previous backward left in the gradients: every loss then depends
    on every earlier step, and a port that skips, repeats or reorders one shows."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        from torchtune.models.llama3_2 import llama3_2

        from porter.demo.model import MODEL_ARGS

        torch.manual_seed(seed)
        self.model = llama3_2(**MODEL_ARGS)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for parameter in self.parameters():
                if parameter.grad is not None:
                    parameter -= LEARNING_RATE * parameter.grad
                    parameter.grad = None
        logits = self.model(tokens)
        return nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


class TokenSequences(torch.utils.data.Dataset):
    """Sequences of token ids, the next token their label; `data_files` picks another
    deterministic set (a fork's validation files)."""

    def __init__(self, tokenizer: Any = None, data_files: Optional[str] = None, **_: Any) -> None:
        from porter.demo.model import MODEL_ARGS

        generator = torch.Generator().manual_seed(1 if data_files else 0)
        self.tokens = torch.randint(0, MODEL_ARGS["vocab_size"], (SEQUENCES, SEQUENCE_LENGTH + 1), generator=generator)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        return {"tokens": self.tokens[index, :-1], "labels": self.tokens[index, 1:]}


class NoTokenizer:
    """The sequences are token ids already."""


class TorchCheckpointer:
    def __init__(self, output_dir: str) -> None:
        self.output_dir = Path(output_dir)

    def save_checkpoint(self, state: Dict[str, Any], epoch: int, intermediate_checkpoint: bool = False) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        torch.save(state[MODEL_KEY], self.output_dir / f"epoch_{epoch}.pt")


class JsonlLogger:
    def __init__(self, log_dir: str) -> None:
        self.path = Path(log_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def log_dict(self, payload: Dict[str, Any], step: int) -> None:
        with self.path.open("a") as stream:
            stream.write(json.dumps({"step": step, **payload}) + "\n")

    def log_config(self, cfg: Any) -> None:
        pass

    def close(self) -> None:
        pass


def config(output_dir: Path):
    """The config every fixture trains with, as `tune run` would give it."""
    return OmegaConf.create(
        {
            "output_dir": str(output_dir),
            "model": {"_component_": "helpers.fork_components.TinyLM"},
            "tokenizer": {"_component_": "helpers.fork_components.NoTokenizer"},
            "dataset": {"_component_": "helpers.fork_components.TokenSequences"},
            "checkpointer": {"_component_": "helpers.fork_components.TorchCheckpointer", "output_dir": "${output_dir}"},
            "metric_logger": {"_component_": "helpers.fork_components.JsonlLogger", "log_dir": "${output_dir}/logs"},
            "batch_size": 4,
            "epochs": 2,
            "log_every_n_steps": 1,
        }
    )
