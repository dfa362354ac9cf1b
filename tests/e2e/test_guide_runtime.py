"""Generated recipes run unchanged on a team's own runtime.

tests/guide_runtime is such a runtime, written from the porting guide's contract alone:
keyword-only logger methods, wrappers that record each call, no save hook. Every
single-device recipe of the installed torchtune, ported for the guide's contract, runs
on it for 2 epochs on the demo model, with upstream `tune run`'s per-step losses and
checkpoints; the same guide-contract output runs on porter's runtime with the same
losses. Each run is made once and read by every test that needs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import JOB_ENV, job_runner, REPO
from porter.convert import convert
from porter.settings import Settings
from porter.sources import discover
from runtime.contract import GUIDE, load
from test_training import ADAPTER_ONLY, assert_same_losses, losses, STEPS, upstream_losses

pytestmark = pytest.mark.slow

TEAM_IMPORTS = {"RecipeBase": "guide_runtime.recipes.recipe_base", "run_recipe": "guide_runtime.utils"}
# recipe: (overrides on every side, optimizer steps), for the reasons test_training's PARITY gives.
SINGLE_DEVICE = {
    "full_finetune_single_device": ((), STEPS),
    "lora_finetune_single_device": ((ADAPTER_ONLY,), STEPS),
    "knowledge_distillation_single_device": (("epochs=1",), 10),
    "lora_dpo_single_device": ((ADAPTER_ONLY,), STEPS),
    "ppo_full_finetune_single_device": ((), 4),
}


def generate(contract, folder: Path) -> Path:
    reports = convert(discover([], installed=True), folder, settings=Settings(contract=contract))
    assert not [r for r in reports if r.status == "failed"], [r.reason for r in reports if r.status == "failed"]
    return folder


class Runs:
    """Each side's run of a recipe, made once: the team's runtime, upstream, porter's."""

    def __init__(self, demo, root: Path) -> None:
        self.demo, self.root = demo, root
        self.team_recipes = generate(GUIDE.with_imports(TEAM_IMPORTS), root / "team-recipes")
        self.porter = job_runner(demo, generate(GUIDE, root / "guide-recipes"), root / "porter-runs")
        self._done: dict = {}

    def once(self, key, make):
        if key not in self._done:
            self._done[key] = make()
        return self._done[key]

    def team(self, recipe: str, recipes: Path = None, name: str = "guide", events: str = "GUIDE_RUNTIME_EVENTS"):
        """(process, log records, output folder) of the recipe on the team's runtime (or
        another runtime whose run_recipe writes its records where `events` says)."""

        def make():
            out = self.root / "team" / name / recipe
            log = self.root / "team" / name / f"{recipe}.jsonl"
            log.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "guide_runtime.launch",
                    str((recipes or self.team_recipes) / f"{recipe}.py"),
                    str(self.demo.config(recipe)),
                    f"output_dir={out}",
                    *SINGLE_DEVICE[recipe][0],
                ],
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, **JOB_ENV, events: str(log)},
            )
            records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
            return done, records, out

        return self.once(("team", name, recipe), make)

    def upstream(self, recipe: str):
        out = self.root / "upstream" / recipe
        return self.once(
            ("upstream", recipe),
            lambda: (upstream_losses(recipe, self.demo.config(recipe), out, *SINGLE_DEVICE[recipe][0]), out),
        )

    def porter_runtime(self, recipe: str):
        return self.once(("porter", recipe), lambda: self.porter(recipe, *SINGLE_DEVICE[recipe][0], job_id=recipe))


@pytest.fixture(scope="module")
def runs(demo, tmp_path_factory):
    return Runs(demo, tmp_path_factory.mktemp("guide-runtime"))


def team_losses(records) -> dict:
    return {r["step_num"]: r["step_loss"] for r in records if r["kind"] == "step"}


def checkpoint_files(folder: Path) -> set:
    """What a run saved: every file under its output folder but the metric logs."""
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and p.relative_to(folder).parts[0] != "logs"
    }


@pytest.mark.parametrize("recipe", sorted(SINGLE_DEVICE))
def test_on_the_teams_runtime_a_recipe_trains_as_upstream_with_the_guides_events(recipe, runs):
    done, records, out = runs.team(recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [r for r in records if r["kind"] == "step"]
    epochs = [r for r in records if r["kind"] == "epoch"]
    assert steps and all(set(r) - {"kind"} == set(GUIDE.log_step) for r in steps)
    assert epochs and all(set(r) - {"kind"} == set(GUIDE.log_epoch) for r in epochs)
    # The guide's contract calls the recipe's renamed methods; the runtime's wrappers
    # are the ones run_recipe calls.
    assert [r["method"] for r in records if r["kind"] == "call"] == ["setup", "train", "cleanup"]
    theirs, upstream_out = runs.upstream(recipe)
    assert_same_losses(team_losses(records), theirs, SINGLE_DEVICE[recipe][1])
    # The runtime saves nothing: what is saved, the recipe saved, as upstream does.
    assert checkpoint_files(out) == checkpoint_files(upstream_out)
    assert any(name.endswith(".safetensors") or name.endswith(".pt") for name in checkpoint_files(out))


@pytest.mark.parametrize("recipe", sorted(SINGLE_DEVICE))
def test_porters_runtime_runs_the_same_guide_contract_output(recipe, runs):
    done, events = runs.porter_runtime(recipe)
    assert done.returncode == 0, done.stderr[-3000:]
    _, records, _ = runs.team(recipe)
    assert_same_losses(losses(events), team_losses(records), SINGLE_DEVICE[recipe][1])
    # What the recipe's call does not pass is absent from its events, never made up.
    assert all(e["data"]["step_tokens_per_s"] is None for e in events if e["operation"] == "step")
    # The recipe's own saves are recorded as porter's are, the final one last.
    kinds = [e["data"]["kind"] for e in events if e["operation"] == "weights"]
    assert kinds[-2:] == ["final", "all"] and events[-1]["operation"] == "job_completed"


def test_a_contract_read_off_the_teams_runtime_sends_the_recipes_calls_through_its_wrappers(runs, tmp_path):
    from conftest import run_porter

    target = tmp_path / "team.toml"
    done = run_porter(
        "contract", "check", *TEAM_IMPORTS.values(), "-o", target, env={"PYTHONPATH": str(REPO / "tests")}
    )
    assert done.returncode == 0, done.stderr
    recipes = generate(load(str(target)), tmp_path / "forwarding")
    done, records, _ = runs.team("full_finetune_single_device", recipes, name="forwarding")
    assert done.returncode == 0, done.stderr[-3000:]
    calls = [r["method"] for r in records if r["kind"] == "call"]
    assert calls == ["setup", "load_checkpoint", "train", "save_checkpoint", "save_checkpoint", "cleanup"]
    _, guide_records, _ = runs.team("full_finetune_single_device")
    assert_same_losses(team_losses(records), team_losses(guide_records))


def test_on_porters_runtime_a_guide_contract_job_resumes_from_the_recipes_own_saves(runs):
    _, uninterrupted = runs.porter_runtime("full_finetune_single_device")
    crash = ("metric_logger._component_=helpers.faults.FailingLogger", "metric_logger.fail_at_step=15")
    crashed, _ = runs.porter("full_finetune_single_device", *crash, job_id="resumed")
    assert crashed.returncode == 1
    done, events = runs.porter("full_finetune_single_device", "resume_from_checkpoint=True", job_id="resumed")
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(e["data"]["step_num"] for e in events if e["operation"] == "step") == list(range(1, STEPS + 1))
    assert_same_losses(losses(events), losses(uninterrupted))


# -- a runtime shaped like a real platform's (tests/platform_runtime) -------------------------

PLATFORM = ("platform_runtime.recipes.recipe_base", "platform_runtime.utils")


@pytest.fixture(scope="module")
def platform_recipes(tmp_path_factory):
    """Its contract, read by `porter contract check` with no flags, and the installed
    torchtune's recipes ported for it."""
    from conftest import run_porter

    folder = tmp_path_factory.mktemp("platform")
    done = run_porter(
        "contract", "check", *PLATFORM, "-o", folder / "platform.toml", env={"PYTHONPATH": str(REPO / "tests")}
    )
    assert done.returncode == 0, done.stderr
    return done, generate(load(str(folder / "platform.toml")), folder / "recipes")


def test_contract_check_reads_a_platforms_runtime_without_flags(platform_recipes):
    done, _ = platform_recipes
    read = [line for line in done.stderr.splitlines() if line.startswith("read: ")]
    assert "read: job logger: platform_runtime.utils.LoggerAgent (`__init__`'s parameter `job_logger`)" in read
    assert (
        "read: RecipeBase.load_checkpoint(cfg_checkpointer) calls `_load_checkpoint` with `self.cfg.checkpointer` and "
        "returns its result: the port calls `self.load_checkpoint(...)` where the recipe passes that node "
        "(`cfg.checkpointer` of its `setup(cfg)`)"
    ) in read
    assert not [line for line in done.stderr.splitlines() if "abstract" in line]


# What a port by hand records on it: the runtime's calls, and the recipe's own calls of
# `load_checkpoint` and `save_checkpoint` (2 epochs) through the platform's wrappers.
HAND_PORT_HEARTBEATS = [
    ("setup", "start"),
    ("load_checkpoint", "start"),
    ("load_checkpoint", "finish"),
    ("setup", "finish"),
    ("train", "start"),
    ("save_checkpoint", "start"),
    ("save_checkpoint", "finish"),
    ("save_checkpoint", "start"),
    ("save_checkpoint", "finish"),
    ("train", "finish"),
    ("cleanup", "start"),
    ("cleanup", "finish"),
]


@pytest.mark.parametrize("recipe", ["full_finetune_single_device", "lora_finetune_single_device"])
def test_on_a_platforms_runtime_a_port_trains_as_upstream_and_runs_its_wrappers_as_a_hand_port(
    recipe, runs, platform_recipes
):
    _, recipes = platform_recipes
    done, records, out = runs.team(recipe, recipes, name="platform", events="PLATFORM_RUNTIME_EVENTS")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [(r["method"], r["phase"]) for r in records if r["kind"] == "heartbeat"] == HAND_PORT_HEARTBEATS
    theirs, upstream_out = runs.upstream(recipe)
    assert_same_losses(team_losses(records), theirs, SINGLE_DEVICE[recipe][1])
    assert checkpoint_files(out) == checkpoint_files(upstream_out)
