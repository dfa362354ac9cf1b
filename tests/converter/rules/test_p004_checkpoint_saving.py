"""P004 checkpoint-saving: every save of the training loop goes to the runtime, in its place
and with its own conditions, or the recipe is refused; every routed save is noted."""

from __future__ import annotations

import textwrap

import pytest

from helpers.fork_shapes import HELPER_THAT_PRUNES, HELPER_THAT_SAVES, INLINE_SAVES
from helpers.shapes import method, note_data, notes_of, ported_by, recipe, train
from porter.rules import CheckpointSaving

# A whole recipe, before and after this rule alone: the epoch's save becomes the runtime's epoch hook, in its place, with a note.
WHOLE_BEFORE = """\
from omegaconf import DictConfig
from torchtune import training
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def __init__(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._steps_per_epoch = cfg.max_steps_per_epoch
        self._log_every_n_steps = cfg.log_every_n_steps

    def save_checkpoint(self, epoch: int) -> None:
        self._checkpointer.save_checkpoint({training.MODEL_KEY: self._model.state_dict()}, epoch=epoch)

    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for batch in self._dataloader:
                self._model(**batch).backward()
                self.global_step += 1
            self.epochs_run += 1
            self.save_checkpoint(epoch=curr_epoch)
"""

WHOLE_AFTER = """\
from omegaconf import DictConfig
from torchtune import training
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def __init__(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs
        self.global_step = 0
        self._steps_per_epoch = cfg.max_steps_per_epoch
        self._log_every_n_steps = cfg.log_every_n_steps

    def save_checkpoint(self, epoch: int) -> None:
        self._checkpointer.save_checkpoint({training.MODEL_KEY: self._model.state_dict()}, epoch=epoch)

    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for batch in self._dataloader:
                self._model(**batch).backward()
                self.global_step += 1
            self.epochs_run += 1
            self.save_checkpoint_if_due(
                epoch=curr_epoch, total_epochs=self.total_epochs
            )
"""


def test_a_whole_recipe_before_and_after():
    assert ported_by(CheckpointSaving, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(CheckpointSaving, WHOLE_BEFORE) == [
        "P004 line 23: the epoch save (`self.save_checkpoint(...)`) is now the runtime's epoch hook, in its place: `porter.save_every_n_epochs` sets how often (default: every epoch), and the last epoch always saves",
    ]
    (note,) = note_data(CheckpointSaving, WHOLE_BEFORE)
    assert (note.rule, note.line, note.kind) == ("P004", 23, "moved")


EPOCH_HOOK = """\
self.save_checkpoint_if_due(
    epoch=curr_epoch, total_epochs=self.total_epochs
)"""


def epoch_end(code: str) -> str:
    """What follows the epoch count in the ported `train`, dedented to its block."""
    body = method(code, "train")
    return textwrap.dedent(body[body.index("        self.epochs_run += 1\n") + len("        self.epochs_run += 1\n") :])


def kept_because(source: str) -> str:
    """Why the runtime's save hook cannot take a save of `source` over: then every save
    stays the recipe's, untouched (P001 renames the calls), with one note saying why."""
    assert ported_by(CheckpointSaving, source) == source
    (note,) = notes_of(CheckpointSaving, source)
    assert note.endswith("; the runtime's own save settings (`porter.save_every_n_*`) do not apply to this recipe")
    return note.split(" cannot take this one over: ", 1)[1].rsplit("; the runtime's own save settings", 1)[0]


def test_the_epoch_save_with_its_timing_and_log_lines_becomes_the_epoch_hook():
    before = recipe(
        train("""
        start = time.perf_counter()
        log.info("Starting checkpoint save...")
        self.save_checkpoint(epoch=curr_epoch)
        log.info("Checkpoint saved in {:.2f} seconds.".format(time.perf_counter() - start))
    """)
    )
    assert epoch_end(ported_by(CheckpointSaving, before)) == EPOCH_HOOK + "\n"
    (note,) = notes_of(CheckpointSaving, before)
    assert (
        "the epoch save (`self.save_checkpoint(...)`), with its timing and log lines, is now the runtime's epoch hook, in its place"
        in note
    )


@pytest.mark.parametrize(
    "shape, after",
    [
        (
            "try:\n    self.save_checkpoint(epoch=curr_epoch)\nfinally:\n    log.info('epoch done')",
            "try:\n" + textwrap.indent(EPOCH_HOOK, "    ") + "\nfinally:\n    log.info('epoch done')\n",
        ),
        (
            "if self._skip_save:\n    log.info('no save')\nelse:\n    self.save_checkpoint(epoch=curr_epoch)",
            "if self._skip_save:\n    log.info('no save')\nelse:\n" + textwrap.indent(EPOCH_HOOK, "    ") + "\n",
        ),
        (
            "with self._save_timer():\n    self.save_checkpoint(epoch=curr_epoch)",
            "with self._save_timer():\n" + textwrap.indent(EPOCH_HOOK, "    ") + "\n",
        ),
    ],
    ids=["try-finally", "else-branch", "with-block"],
)
def test_a_save_inside_a_compound_statement_gets_the_hook_in_its_place(shape, after):
    assert epoch_end(ported_by(CheckpointSaving, recipe(train(shape)))) == after


def test_a_users_condition_around_the_save_is_kept_and_noted():
    before = recipe(train("if curr_epoch >= self._warmup_epochs:\n    self.save_checkpoint(epoch=curr_epoch)"))
    assert (
        epoch_end(ported_by(CheckpointSaving, before))
        == "if curr_epoch >= self._warmup_epochs:\n" + textwrap.indent(EPOCH_HOOK, "    ") + "\n"
    )
    (note,) = notes_of(CheckpointSaving, before)
    assert note.endswith("it stays under the recipe's own `if curr_epoch >= self._warmup_epochs:`")


def test_the_saves_own_schedule_is_the_runtimes_policy_now_and_a_users_part_of_it_stays():
    schedule = "if (curr_epoch + 1) % self._save_every_n_epochs == 0:\n    self.save_checkpoint(epoch=curr_epoch)"
    assert epoch_end(ported_by(CheckpointSaving, recipe(train(schedule)))) == EPOCH_HOOK + "\n"
    (note,) = notes_of(CheckpointSaving, recipe(train(schedule)))
    assert "its condition `(curr_epoch + 1) % self._save_every_n_epochs == 0` is the runtime's policy now" in note
    mixed = "if curr_epoch % self._save_every_n_epochs == 0 and self._is_rank_zero:\n    self.save_checkpoint(epoch=curr_epoch)"
    assert (
        epoch_end(ported_by(CheckpointSaving, recipe(train(mixed))))
        == "if self._is_rank_zero:\n" + textwrap.indent(EPOCH_HOOK, "    ") + "\n"
    )


def test_a_save_every_n_steps_becomes_the_step_hook_in_its_place():
    before = recipe(
        train("").replace(
            "            t0 = time.perf_counter()\n",
            "            with self._timer('save'):\n"
            "                if self.global_step % self._save_every_n_steps == 0:\n"
            "                    self.save_checkpoint(epoch=curr_epoch)\n"
            "            t0 = time.perf_counter()\n",
        )
    )
    body = method(ported_by(CheckpointSaving, before), "train")
    assert (
        "            with self._timer('save'):\n                self.save_checkpoint_if_due(epoch=curr_epoch, step=self.global_step)\n"
        in body
    )
    # No epoch save in the epoch loop: the epoch hook goes right after the count.
    assert epoch_end(ported_by(CheckpointSaving, before)) == EPOCH_HOOK + "\n"
    step_note, epoch_note = notes_of(CheckpointSaving, before)  # in line order
    assert (
        "the save every N steps (`self.save_checkpoint(...)`) is now the runtime's step hook, in its place" in step_note
    )
    assert "its condition `self.global_step % self._save_every_n_steps == 0` is the runtime's policy now" in step_note
    assert (
        "the epoch loop saved no checkpoint of its own; the runtime's epoch hook, added after `self.epochs_run += 1`, saves every epoch"
        in epoch_note
    )


def test_the_final_save_after_the_loop_goes_and_is_noted():
    before = recipe(train("pass").replace("        pass\n", "    self.save_checkpoint(epoch=self.total_epochs - 1)\n"))
    body = method(ported_by(CheckpointSaving, before), "train")
    assert "self.save_checkpoint(" not in body.replace("save_checkpoint_if_due(", "")
    assert any(
        "the final save after the loop (`self.save_checkpoint(...)`) goes: the runtime saves the final weights" in n
        for n in notes_of(CheckpointSaving, before)
    )


def test_a_final_save_that_is_all_its_with_block_holds_stays_the_recipes():
    before = recipe(
        train("pass").replace(
            "        pass\n", "    with self._timer('save'):\n        self.save_checkpoint(epoch=curr_epoch)\n"
        )
    )
    assert kept_because(before) == (
        "the final save is all that its `with` block holds; porter cannot remove it without removing the block"
    )


def test_a_helper_that_saves_and_rotates_is_routed_with_a_note_on_the_runtimes_rotation():
    before = recipe(train("self.save_intermediate(curr_epoch)"), extra_methods=HELPER_THAT_PRUNES)
    assert epoch_end(ported_by(CheckpointSaving, before)) == EPOCH_HOOK + "\n"
    rotation = before.splitlines().index('        for old in sorted(self._output_dir.glob("epoch_*"))[:-2]:') + 1
    (note,) = notes_of(CheckpointSaving, before)
    assert note.endswith(
        f"that method stays, unused; it also deleted old checkpoints (line {rotation}), which the runtime does when "
        "`porter.keep_last_n_checkpoints` is set (it kept 2)) is now the runtime's epoch hook, in its place: "
        "`porter.save_every_n_epochs` sets how often (default: every epoch), and the last epoch always saves"
    )


def test_a_helper_that_saves_and_does_more_stays_the_recipes_naming_both_lines():
    before = recipe(
        train("self.save_intermediate(curr_epoch)"), extra_methods=HELPER_THAT_PRUNES + "    self._upload(epoch)\n"
    )
    lines = before.splitlines()
    save, other = (
        lines.index("        self.save_checkpoint(epoch=epoch)") + 1,
        lines.index("        self._upload(epoch)") + 1,
    )
    assert kept_because(before) == (
        f"`self.save_intermediate(...)` saves a checkpoint (line {save}) and does more in `save_intermediate` (line {other}); "
        "porter cannot give only the save to the runtime: move the other work out of it, or save through the save method"
    )


def test_a_helper_that_only_saves_is_routed_and_stays_unused():
    before = recipe(train("self.save_intermediate(curr_epoch)"), extra_methods=HELPER_THAT_SAVES)
    code = ported_by(CheckpointSaving, before)
    assert epoch_end(code) == EPOCH_HOOK + "\n"
    assert "def save_intermediate(self, epoch: int) -> None:" in code
    (note,) = notes_of(CheckpointSaving, before)
    assert (
        "the epoch save (`self.save_intermediate(...)`, which saves in `save_intermediate`; that method stays, unused) is now the runtime's epoch hook"
        in note
    )


def test_inline_saves_without_a_save_method_the_epoch_one_moves_into_save_checkpoint():
    before = recipe(INLINE_SAVES, save_checkpoint=None)
    code = ported_by(CheckpointSaving, before)
    assert method(code, "_save_checkpoint") == textwrap.dedent('''\
        def _save_checkpoint(self, epoch: int) -> None:
            """Porter moved this save here from the training loop; the runtime calls it."""
            self._checkpointer.save_checkpoint(
                {training.MODEL_KEY: self._model.state_dict()}, epoch=epoch
            )
        ''')
    body = method(code, "train")
    assert "            self.save_checkpoint_if_due(epoch=curr_epoch, step=self.global_step)\n" in body
    assert epoch_end(code) == EPOCH_HOOK + "\n"
    step_note, epoch_note, moved_note = notes_of(CheckpointSaving, before)
    epoch_save = next(
        n
        for n, line in enumerate(before.splitlines(), 1)
        if line.endswith("self._model.state_dict()}, epoch=curr_epoch)")
    )
    assert step_note.endswith(
        "it passed `{training.MODEL_KEY: self._model.state_dict()}, epoch=curr_epoch, intermediate_checkpoint=True`; "
        f"the runtime's saves pass what line {epoch_save} passed"
    )
    assert "this save moved into a new `_save_checkpoint(epoch)`, which the runtime calls at every save" in moved_note


def test_an_inline_save_that_reads_a_local_cannot_move_and_stays_the_recipes():
    before = recipe(INLINE_SAVES.replace("epoch=curr_epoch)", "epoch=curr_epoch, loss=batch)"), save_checkpoint=None)
    assert kept_because(before).startswith("the inline save reads `batch`, a local of `train`")


def test_a_recipe_that_saves_nothing_and_has_no_save_method_saves_nothing_still():
    assert kept_because(recipe(train("pass"), save_checkpoint=None)) == (
        "class ForkRecipe has no `save_checkpoint` method and its training loop saves no checkpoint: the runtime could not save its weights"
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (
            dict(save_checkpoint="def save_checkpoint(self, epoch: int, tag: str) -> None:\n    pass\n"),
            "`save_checkpoint` requires `tag`, which the runtime cannot pass (it passes epoch, step, full_tensors, is_intermediate_checkpoint)",
        ),
        (
            dict(train_method=train("saved = self.save_checkpoint(epoch=curr_epoch)")),
            "the result of `self.save_checkpoint(...)` is used; porter moves only save statements",
        ),
        (
            dict(
                train_method=train("pass").replace(
                    "    for curr_epoch", "    self.save_checkpoint(epoch=0)\n    for curr_epoch"
                )
            ),
            "a checkpoint save before the epoch loop: porter cannot tell what it is for",
        ),
        (
            dict(
                save_checkpoint="def _save_checkpoint(self, epoch: int) -> None:\n    pass\n",
                train_method=train("self._checkpointer.save_checkpoint({}, epoch=curr_epoch)"),
            ),
            "the class has a private `_save_checkpoint` and no `save_checkpoint`: RecipeBase would call it as the recipe's save method; rename it, or make it the recipe's `save_checkpoint`",
        ),
        (
            dict(
                save_checkpoint=None,
                train_method=train(
                    "if curr_epoch:\n    self._checkpointer.save_checkpoint({}, epoch=curr_epoch)\nelse:\n    self._checkpointer.save_checkpoint({}, epoch=0)"
                ),
            ),
            "2 different inline saves (the epoch save) and no save method: porter moves one save into `_save_checkpoint`; give the recipe a save method",
        ),
    ],
    ids=["needs-an-argument", "result-used", "before-the-loop", "private-save-method", "two-inline-epoch-saves"],
)
def test_saves_porter_cannot_hand_to_the_runtime_stay_the_recipes(change, message):
    assert kept_because(recipe(**change)) == message


@pytest.mark.parametrize(
    "passed, difference",
    [
        ("full_tensors=True", None),  # torchtune main's end-of-training save: what the runtime passes at an epoch's end
        (
            "full_tensors=False",
            "it passed `full_tensors=False`, where the runtime passes False at step saves and True at an epoch's end, as torchtune main's loops do",
        ),
        ("full_tensors=True, tag='x'", "it passed `tag='x'`, which the runtime does not pass"),
    ],
)
def test_what_a_save_passed_that_the_runtime_does_not_is_noted(passed, difference):
    before = recipe(
        train(f"self.save_checkpoint(epoch=curr_epoch, {passed})"),
        save_checkpoint="def save_checkpoint(self, epoch: int, full_tensors: bool, tag: str = '') -> None:\n    pass\n",
    )
    (note,) = notes_of(CheckpointSaving, before)
    if difference is None:
        assert "it passed" not in note
    else:
        assert note.endswith(difference)


# -- a runtime contract without a save hook: the recipe keeps its saves ------------------------


def test_without_a_save_hook_the_epoch_save_stays_with_its_timing_and_is_noted():
    before = recipe(
        train("""
        start = time.perf_counter()
        self.save_checkpoint(epoch=curr_epoch)
        log.info("Checkpoint saved in {:.2f} seconds.".format(time.perf_counter() - start))
    """)
    )
    after = ported_by(CheckpointSaving, before, contract="guide")
    assert after == before  # P001 renames the call; this rule moves and drops nothing
    (note,) = notes_of(CheckpointSaving, before, contract="guide")
    assert note == (
        "P004 line 52: the epoch save (`self.save_checkpoint(...)`) stays the recipe's, with its arguments and "
        "schedule: the runtime of contract `guide` has no save hook; it calls the renamed `_save_checkpoint`"
    )


def test_without_a_save_hook_a_step_save_keeps_its_schedule():
    schedule = "if self.global_step % self._save_every_n_steps == 0:\n"
    before = recipe(
        train("").replace(
            "            t0 = time.perf_counter()\n",
            "            "
            + schedule
            + "                self.save_checkpoint(epoch=curr_epoch)\n            t0 = time.perf_counter()\n",
        )
    )
    from porter.pipeline import port
    from porter.settings import Settings
    from runtime.contract import GUIDE

    ported = port(before, Settings(contract=GUIDE)).code
    assert "            " + schedule + "                self._save_checkpoint(epoch=curr_epoch)\n" in method(
        ported, "_train"
    )
    assert "save_checkpoint_if_due" not in ported
