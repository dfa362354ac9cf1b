"""P006 step-event: a `step` event after the recipe logs a step, reading what it logs."""

from __future__ import annotations

import textwrap

import pytest

from helpers.fork_shapes import OLDER_LOOP, STEP_LOOP_IN_A_HELPER
from helpers.shapes import method, note_data, notes_of, ported_by, recipe, refusal, train
from porter.rules import StepEvent

# A whole recipe, before and after this rule alone: the step event after the metric logger's call, from the keys its dict has.
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
            for idx, batch in enumerate(self._dataloader):
                loss = self._model(**batch)
                loss.backward()
                self.global_step += 1
                if self.global_step % self._log_every_n_steps == 0:
                    time_per_step = time.perf_counter() - t0
                    log_dict = {
                        "loss": loss.item(),
                        "lr": self._optimizer.param_groups[0]["lr"],
                        "tokens_per_second_per_gpu": 1024 / time_per_step,
                    }
                    self._metric_logger.log_dict(log_dict, step=self.global_step)
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
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for idx, batch in enumerate(self._dataloader):
                loss = self._model(**batch)
                loss.backward()
                self.global_step += 1
                if self.global_step % self._log_every_n_steps == 0:
                    time_per_step = time.perf_counter() - t0
                    log_dict = {
                        "loss": loss.item(),
                        "lr": self._optimizer.param_groups[0]["lr"],
                        "tokens_per_second_per_gpu": 1024 / time_per_step,
                    }
                    self._metric_logger.log_dict(log_dict, step=self.global_step)
                    self.job_logger.log_step(
                        gpu_rank=self.rank,
                        step_num=self.global_step,
                        step_len=self._steps_per_epoch * self.total_epochs,
                        step_loss=float(log_dict["loss"]),
                        step_lr=log_dict["lr"],
                        step_peak_memory_active=log_dict.get("peak_memory_active"),
                        step_peak_memory_alloc=log_dict.get("peak_memory_alloc"),
                        step_peak_memory_reserved=log_dict.get("peak_memory_reserved"),
                        step_time_elapsed_s=time_per_step,
                        epoch_num=curr_epoch + 1,
                        epoch_len=self.total_epochs,
                        step_tokens_per_s=log_dict.get("tokens_per_second_per_gpu"),
                    )
                t0 = time.perf_counter()
            self.epochs_run += 1
"""


def test_a_whole_recipe_before_and_after():
    assert ported_by(StepEvent, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(StepEvent, WHOLE_BEFORE) == []


def event(
    metrics="log_dict", loss="loss", lr="lr", time="time_per_step", step="self.global_step", epoch="curr_epoch"
) -> str:
    return textwrap.dedent(f'''\
        self.job_logger.log_step(
            gpu_rank=self.rank,
            step_num={step},
            step_len=self._steps_per_epoch * self.total_epochs,
            step_loss=float({metrics}["{loss}"]),
            step_lr={metrics}["{lr}"],
            step_peak_memory_active={metrics}.get("peak_memory_active"),
            step_peak_memory_alloc={metrics}.get("peak_memory_alloc"),
            step_peak_memory_reserved={metrics}.get("peak_memory_reserved"),
            step_time_elapsed_s={time},
            epoch_num={epoch} + 1,
            epoch_len=self.total_epochs,
            step_tokens_per_s={metrics}.get("tokens_per_second_per_gpu"),
        )
        ''')


LOG_CALL = "self._metric_logger.log_dict(log_dict, step=self.global_step)\n"


def test_the_event_follows_the_metric_loggers_call():
    body = method(ported_by(StepEvent, recipe()), "train")
    assert " " * 16 + LOG_CALL + textwrap.indent(event(), " " * 16) in body


def test_renamed_metric_keys_are_the_keys_the_event_reads():
    before = recipe(
        train().replace('{"loss": loss.item(), "lr": 1e-3}', '{"train/loss": loss.item(), "train/lr": 1e-3}')
    )
    assert textwrap.indent(event(loss="train/loss", lr="train/lr"), " " * 16) in method(
        ported_by(StepEvent, before), "train"
    )


def test_throughput_logged_under_a_forks_own_key_is_read_from_it_and_noted():
    before = recipe(
        train().replace(
            '{"loss": loss.item(), "lr": 1e-3}', '{"loss": loss.item(), "lr": 1e-3, "tokens_per_second": 9.0}'
        )
    )
    assert '                    step_tokens_per_s=log_dict.get("tokens_per_second"),\n' in method(
        ported_by(StepEvent, before), "train"
    )
    (data,) = note_data(StepEvent, before)
    log_line = before.splitlines().index(" " * 20 + "self._metric_logger.log_dict(log_dict, step=self.global_step)") + 1
    assert (data.rule, data.line, data.kind) == ("P006", log_line, "changed")
    (note,) = notes_of(StepEvent, before)
    assert note.endswith(
        "the recipe logs its throughput as `tokens_per_second`: the step event's `step_tokens_per_s` reads it from "
        "there (upstream's key is `tokens_per_second_per_gpu`; check it is per process, as upstream's is)"
    )


def test_a_dict_without_throughput_gives_a_null_throughput_with_a_note():
    (note,) = notes_of(StepEvent, recipe())
    assert note.endswith(
        "`log_dict` has no throughput key (`tokens_per_second_per_gpu` or `tokens_per_second`, `tokens_per_sec`, "
        "`tokens_per_s`, `tokens_per_second_per_device`): the step event's `step_tokens_per_s` is null"
    )
    # Under a contract whose log_step takes no throughput, there is nothing to say.
    assert notes_of(StepEvent, recipe(), contract="guide") == []


def test_a_step_clock_under_another_name_is_the_events_step_time():
    before = recipe(train().replace("t0", "t_step").replace("time_per_step", "elapsed"))
    assert textwrap.indent(event(time="elapsed"), " " * 16) in method(ported_by(StepEvent, before), "train")


def test_the_step_loop_in_a_helper_gets_the_event_there_with_the_helpers_epoch():
    before = recipe(**STEP_LOOP_IN_A_HELPER)
    assert textwrap.indent(event(epoch="epoch"), " " * 16) in method(ported_by(StepEvent, before), "_train_epoch")


def test_a_helper_not_given_the_epoch_is_refused():
    helper = STEP_LOOP_IN_A_HELPER["extra_methods"].replace("(self, epoch: int)", "(self)")
    before = recipe(
        STEP_LOOP_IN_A_HELPER["train_method"].replace("self._train_epoch(curr_epoch)", "self._train_epoch()"),
        extra_methods=helper,
    )
    assert refusal(StepEvent, before).endswith(
        "P006 the step-logging block is in `_train_epoch`, which is not passed the epoch; the step event needs it"
    )


def test_an_older_loop_gets_its_dict_named_and_a_step_clock():
    before = recipe(**OLDER_LOOP)
    body = method(ported_by(StepEvent, before), "train")
    assert body.startswith(
        textwrap.dedent("""\
        def train(self) -> None:
            for curr_epoch in range(self.epochs_run, self.total_epochs):
                for idx, batch in enumerate(self._dataloader):
                    t_step_start = time.perf_counter()
                    loss = self._model(**batch)
                    if self.total_training_steps % self._log_every_n_steps == 0:
                        log_dict = {"loss": loss.item(), "lr": 1e-3}
                        self._metric_logger.log_dict(
                            log_dict,
                            step=self.total_training_steps,
                        )
        """)
    )
    assert (
        textwrap.indent(event(time="time.perf_counter() - t_step_start", step="self.total_training_steps"), " " * 16)
        in body
    )
    notes = notes_of(StepEvent, before)
    assert any("the recipe has no step clock: the step event times the iteration of the loop" in n for n in notes)


@pytest.mark.parametrize(
    "metrics, message",
    [
        ('{"nll": loss.item(), "lr": 1e-3}', "`log_dict` has no `loss` key (nll, lr); the step event needs one"),
        (
            '{"a/loss": loss.item(), "b/loss": 0.0, "lr": 1e-3}',
            "`log_dict` has more than one `loss` key (a/loss, b/loss, lr); the step event needs one",
        ),
        (
            "self._metrics(loss)",
            "porter cannot tell the keys of `log_dict`: it is not built from dict literals; the step event needs its loss and lr",
        ),
    ],
    ids=["no-loss", "two-losses", "not-a-literal"],
)
def test_metrics_whose_loss_porter_cannot_find_are_refused(metrics, message):
    before = recipe(train().replace('{"loss": loss.item(), "lr": 1e-3}', metrics))
    assert refusal(StepEvent, before).endswith("P006 " + message)


def test_the_rl_loop_logs_the_stats_loss_on_rank_zero_with_its_own_clock():
    from conftest import fixture_text

    code = ported_by(StepEvent, fixture_text("rl_recipe.py"))
    body = method(code, "train")
    # The clock goes below the blank lines and above the comment of the loop's first statement.
    assert (
        "        for idx, batch in enumerate(self._dataloader):\n\n            t_step_start = time.perf_counter()\n            # step 1"
        in body
    )
    assert "                if self.rank == 0:\n                    self.job_logger.log_step(\n" in body
    assert "step_loss=float(PPOStats(*map(torch.stack, zip(*ppo_stats))).loss.detach().mean())" in " ".join(
        part.strip() for part in body.splitlines()
    ).replace("( ", "(").replace(" )", ")").replace(" .", ".")


def test_the_event_passes_only_the_keywords_the_contracts_log_step_takes():
    body = method(ported_by(StepEvent, recipe(), contract="guide"), "train")
    guide_event = event().replace('    step_tokens_per_s=log_dict.get("tokens_per_second_per_gpu"),\n', "")
    assert " " * 16 + LOG_CALL + textwrap.indent(guide_event, " " * 16) in body


def test_a_contract_whose_runtime_gives_no_job_logger_is_refused_with_the_rule_line_and_missing_part():
    from dataclasses import replace

    from runtime.contract import GUIDE

    no_logger = replace(GUIDE, name="no-logger", attributes=GUIDE.attributes - {"job_logger"})
    reason = refusal(StepEvent, recipe(), contract=no_logger)
    assert reason == (
        "line 48: P006 the inserted code reads `self.job_logger`, which neither ForkRecipe sets nor the runtime "
        "contract `no-logger` provides"
    )
