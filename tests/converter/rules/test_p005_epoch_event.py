"""P005 epoch-event: the epoch clock, and the `epoch` event where each epoch ends."""

from __future__ import annotations

import textwrap

from helpers.shapes import method, notes_of, ported_by, recipe, refusal, train
from porter.rules import EpochEvent

# A whole recipe, before and after this rule alone: an epoch clock above the loop; the epoch event and the clock's reset where the epoch ends.
WHOLE_BEFORE = """\
import time

from omegaconf import DictConfig
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def __init__(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._steps_per_epoch = cfg.max_steps_per_epoch
        self._log_every_n_steps = cfg.log_every_n_steps

    def train(self) -> None:
        t0 = time.perf_counter()
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for batch in self._dataloader:
                self._model(**batch).backward()
                t0 = time.perf_counter()
            self.epochs_run += 1
"""

WHOLE_AFTER = """\
import time

from omegaconf import DictConfig
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def __init__(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._steps_per_epoch = cfg.max_steps_per_epoch
        self._log_every_n_steps = cfg.log_every_n_steps

    def train(self) -> None:
        t0 = time.perf_counter()
        t_epoch_start = time.perf_counter()
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for batch in self._dataloader:
                self._model(**batch).backward()
                t0 = time.perf_counter()
            self.epochs_run += 1
            self.job_logger.log_epoch(
                gpu_rank=self.rank,
                epoch_num=curr_epoch + 1,
                epoch_len=self.total_epochs,
                epoch_time_elapsed_s=time.perf_counter() - t_epoch_start,
            )
            t_epoch_start = time.perf_counter()
"""


def test_a_whole_recipe_before_and_after():
    assert ported_by(EpochEvent, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(EpochEvent, WHOLE_BEFORE) == []


EVENT = """\
self.job_logger.log_epoch(
    gpu_rank=self.rank,
    epoch_num=curr_epoch + 1,
    epoch_len=self.total_epochs,
    epoch_time_elapsed_s=time.perf_counter() - t_epoch_start,
)
t_epoch_start = time.perf_counter()
"""


def test_the_clock_starts_above_the_step_clock_and_the_event_follows_the_epochs_save():
    body = method(ported_by(EpochEvent, recipe()), "train")
    assert body.startswith(
        "def train(self) -> None:\n    t_epoch_start = time.perf_counter()\n    t0 = time.perf_counter()\n"
    )
    assert body.endswith(
        "        self.epochs_run += 1\n        self.save_checkpoint(epoch=curr_epoch)\n"
        + textwrap.indent(EVENT, " " * 8)
    )


def test_the_event_comes_right_after_the_count_when_the_epoch_does_not_save():
    body = method(ported_by(EpochEvent, recipe(train("if done:\n    return"))), "train")
    assert "        self.epochs_run += 1\n" + textwrap.indent(EVENT, " " * 8) + "        if done:\n" in body


def test_without_a_step_clock_the_epoch_clock_starts_above_the_loop():
    before = recipe(
        train().replace(
            "    t0 = time.perf_counter()\n    for curr_epoch", "    self._model.train()\n    for curr_epoch"
        )
    )
    body = method(ported_by(EpochEvent, before), "train")
    assert "    self._model.train()\n    t_epoch_start = time.perf_counter()\n    for curr_epoch" in body


def test_the_step_clock_under_another_name_is_found():
    before = recipe(train().replace("t0", "t_step").replace("time_per_step", "elapsed"))
    assert method(ported_by(EpochEvent, before), "train").startswith(
        "def train(self) -> None:\n    t_epoch_start = time.perf_counter()\n    t_step = time.perf_counter()\n"
    )


def test_the_epoch_loop_in_a_helper_gets_the_event_there():
    before = recipe(
        "def train(self) -> None:\n    self._run()\n",
        extra_methods=train().replace("def train(self)", "def _run(self)"),
    )
    code = ported_by(EpochEvent, before)
    assert method(code, "train") == "def train(self) -> None:\n    self._run()\n"
    assert method(code, "_run").endswith(textwrap.indent(EVENT, " " * 8))


def test_a_recipe_with_its_own_t_epoch_start_is_refused():
    before = recipe(train().replace("    t0 = time.perf_counter()\n", "    t0 = t_epoch_start = time.perf_counter()\n"))
    assert refusal(EpochEvent, before).endswith("P005 `train` already has a `t_epoch_start`")


def test_a_missing_or_doubled_epoch_count_is_one_problem_with_its_line():
    reason = refusal(EpochEvent, recipe(train().replace("        self.epochs_run += 1\n", "")))
    assert reason.endswith("P005 expected one `self.epochs_run += 1` directly in the epoch loop, found 0")
    doubled = recipe(
        train().replace(
            "        self.epochs_run += 1\n", "        self.epochs_run += 1\n        self.epochs_run += 1\n"
        )
    )
    second = [n for n, line in enumerate(doubled.splitlines(), 1) if line.strip() == "self.epochs_run += 1"][1]
    assert (
        refusal(EpochEvent, doubled)
        == f"line {second}: P005 expected one `self.epochs_run += 1` directly in the epoch loop, found 2"
    )


def test_the_event_passes_only_the_keywords_the_contracts_log_epoch_takes():
    from dataclasses import replace

    from runtime.contract import GUIDE

    untimed = replace(GUIDE, name="untimed", log_epoch=("gpu_rank", "epoch_num", "epoch_len"))
    body = method(ported_by(EpochEvent, recipe(train("")), contract=untimed), "train")
    assert body.endswith(
        "        self.epochs_run += 1\n"
        "        self.job_logger.log_epoch(\n"
        "            gpu_rank=self.rank,\n"
        "            epoch_num=curr_epoch + 1,\n"
        "            epoch_len=self.total_epochs,\n"
        "        )\n"
    )
    # Nothing reads an epoch clock, so none starts.
    assert "t_epoch_start" not in body
