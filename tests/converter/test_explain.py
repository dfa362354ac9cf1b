"""`porter explain`: what porter recognised in a recipe, and what porting it does."""

from __future__ import annotations

from conftest import FIXTURES, run_porter
from helpers.fork_shapes import FORK_SHAPES
from porter.explain import explain


def test_a_recipe_is_explained_part_by_part_with_the_ports_notes():
    done = run_porter("explain", FIXTURES / "recipes" / "sft_recipe.py")
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()[1:]]
    assert lines[0] == "outcome: converted (sft)"
    assert "recipe class: TinyRecipe (line 19), family sft" in lines
    assert "epoch loop: line 67 in train: `for curr_epoch in range(self.epochs_run, self.total_epochs)`" in lines
    assert "epoch count: line 82: `self.epochs_run += 1`; the epoch ends at line 85" in lines
    assert (
        "step logging: line 77 in train, sft, step counter `self.global_step`, metrics `log_dict` (loss, lr), "
        "step time `time_per_step`"
    ) in lines
    assert "save: line 85 in train: epoch save, `self.save_checkpoint(...)` (method)" in lines
    assert "dataset: line 45 in _setup_data: a ListConfig branch of `cfg_dataset`" in lines
    assert [line for line in lines if line.startswith("note: P004 line 85: the epoch save")]
    assert lines[-1] == "runtime contract: porter"


def test_a_refused_fork_says_what_porter_found_and_what_it_did_not():
    lines = explain(FORK_SHAPES["epoch_loop_in_a_nested_function.py"].source)
    assert lines[0] == "outcome: failed (sft+no-load-checkpoint)"
    assert [
        line for line in lines if line.startswith("epoch loop: not found: line 42: the epoch loop is in `run_loop`")
    ]
    assert "epoch count: not read (it needs the epoch loop)" in lines
    assert lines[-2].startswith("refused: line 42: P004, P005, P006 the epoch loop is in `run_loop`")


def test_a_skipped_file_says_why_and_a_missing_one_exits_2():
    assert explain(FORK_SHAPES["evaluation_recipe.py"].source) == [
        "outcome: skipped",
        "why: an evaluation recipe: Other subclasses EvalRecipeInterface; porter ports training recipes (FTRecipeInterface subclasses)",
    ]
    done = run_porter("explain", "no/such/recipe.py")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "porter: error: no/such/recipe.py: no such file or folder"
