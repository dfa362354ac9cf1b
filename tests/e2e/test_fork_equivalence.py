"""No silent change, shown by running: every fork-shape fixture that ports trains the
demo's tiny model for 2 epochs before and after its port (tests/helpers/fork_components.py), and
both runs log the same per-step losses, write the same checkpoints and log the
recipe's own lines in the same order.

Ported for the guide's contract, on a team's runtime (tests/guide_runtime), the port
keeps everything the recipe did. Ported for porter's, on porter's runtime, saves are the
runtime's; what that changes beyond the same checkpoints is announced by a note, and is
the only difference allowed. Runs are in this process: each takes well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from conftest import REPO
from helpers.fork_components import config
from helpers.fork_shapes import FORK_SHAPES
from porter.pipeline import port
from porter.settings import Settings
from runtime.contract import GUIDE, PORTER

pytestmark = pytest.mark.slow

# Assisted ports too: without a job dataset their holes never fire, and nothing else may
# change; but those whose dataset wrapper the fixture leaves undefined cannot train.
UNDEFINED_WRAPPER = {"dataset_wrapped_in_the_config_branch.py", "dataset_wrapped_in_the_same_expression.py"}
PORTED = sorted(
    name
    for name, shape in FORK_SHAPES.items()
    if shape.status == "converted" or (shape.status == "partial" and name not in UNDEFINED_WRAPPER)
)
TEAM_RUNTIME = GUIDE.with_imports(
    {"RecipeBase": "guide_runtime.recipes.recipe_base", "run_recipe": "guide_runtime.utils"}
)
# What a port for porter's runtime may log differently, each announced by a note the
# fork-shape test checks: the helper that saved, and said so, is no longer called.
PORTER_CONTRACT_DROPS = {"helper_that_only_saves.py": ["saving epoch 0", "saving epoch 1"]}


@dataclass
class Outcome:
    losses: Dict[int, float]
    checkpoints: Dict[str, Dict[str, torch.Tensor]]
    log_lines: List[str]


class _RecipeLines(logging.Handler):
    """The lines the recipe module itself logs, its floats (timings) masked."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path, self.lines = str(path), []

    def emit(self, record: logging.LogRecord) -> None:
        if record.pathname == self.path:
            self.lines.append(re.sub(r"\d+\.\d+(e-?\d+)?", "<float>", record.getMessage()))


def _run(code: str, path: Path, main) -> List[str]:
    """Load `code` as a module from `path` and run `main(module)`; the recipe's log lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code)
    spec = importlib.util.spec_from_file_location(f"fork_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = _RecipeLines(path)
    logger = logging.getLogger("torchtune.utils._logging")
    logger.addHandler(lines)
    try:
        main(module)
    finally:
        logger.removeHandler(lines)
    return lines.lines


def _outcome(lines: List[str], metrics: Path, checkpoints: Path) -> Outcome:
    losses = {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line)
        (loss,) = [value for key, value in record.items() if key.split("/")[-1] == "loss"]  # `train/loss` in a fork
        losses.setdefault(record["step"], loss)
    files = {path.name: torch.load(path) for path in sorted(checkpoints.glob("epoch_*.pt"))}
    return Outcome(losses, files, lines)


def original(source: str, folder: Path) -> Outcome:
    cfg = config(folder / "out")
    lines = _run(source, folder / "original.py", lambda module: module.recipe_main.__wrapped__(cfg))
    return _outcome(lines, folder / "out" / "logs" / "metrics.jsonl", folder / "out")


def on_porters_runtime(source: str, folder: Path) -> Outcome:
    result = port(source, Settings(contract=PORTER))
    cfg = config(folder / "unused")
    cfg.porter = {"output_root": str(folder / "runs"), "report": False, "console": False, "heartbeat_s": 0}
    lines = _run(result.code, folder / "ported.py", lambda module: module.recipe_main("job", "user", cfg, None))
    job = folder / "runs" / "user" / "job"
    return _outcome(lines, job / "logs" / "metrics.jsonl", job / "checkpoints")


def on_a_teams_runtime(source: str, folder: Path, monkeypatch) -> Outcome:
    result = port(source, Settings(contract=TEAM_RUNTIME))
    cfg = config(folder / "out")
    monkeypatch.setenv("GUIDE_RUNTIME_EVENTS", str(folder / "team-events.jsonl"))
    lines = _run(result.code, folder / "ported.py", lambda module: module.recipe_main("job", "user", cfg, None))
    return _outcome(lines, folder / "out" / "logs" / "metrics.jsonl", folder / "out")


def assert_same(before: Outcome, after: Outcome, dropped_lines=()) -> None:
    assert before.losses and after.losses == before.losses
    assert before.checkpoints and sorted(after.checkpoints) == sorted(before.checkpoints)
    for name, state in before.checkpoints.items():
        assert sorted(after.checkpoints[name]) == sorted(state), name
        assert all(torch.equal(after.checkpoints[name][key], tensor) for key, tensor in state.items()), name
    assert after.log_lines == [line for line in before.log_lines if line not in dropped_lines]


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "tests"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("name", PORTED)
def test_a_port_for_a_teams_runtime_does_everything_the_recipe_did(name, folder, monkeypatch):
    source = FORK_SHAPES[name].source
    assert_same(original(source, folder / "original"), on_a_teams_runtime(source, folder / "team", monkeypatch))


@pytest.mark.parametrize("name", PORTED)
def test_a_port_for_porters_runtime_trains_and_saves_the_same_and_logs_what_its_notes_say(name, folder):
    source = FORK_SHAPES[name].source
    dropped = PORTER_CONTRACT_DROPS.get(name, ())
    before = original(source, folder / "original")
    assert all(line in before.log_lines for line in dropped)
    assert_same(before, on_porters_runtime(source, folder / "porter"), dropped)
