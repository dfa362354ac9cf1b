"""P002 recipe-main: the job's entry point, handing the recipe class to run_recipe."""

from __future__ import annotations

import textwrap

from helpers.shapes import ENTRY, function, note_data, notes_of, ported_by, recipe, refusal
from porter.rules import RecipeMain

# A whole recipe, before and after this rule alone: recipe_main takes the job's arguments and hands the class to run_recipe; what it did before the recipe stays.
WHOLE_BEFORE = '''\
import sys

from omegaconf import DictConfig
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self.epochs_run += 1


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    """Entry point for the recipe."""
    config.log_config(recipe_name="TinyRecipe", cfg=cfg)
    recipe = TinyRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
'''

WHOLE_AFTER = '''\
import sys

from omegaconf import DictConfig
from runtime import Dataset, run_recipe
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self.epochs_run += 1


def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
    """Entry point for the recipe."""
    config.log_config(recipe_name="TinyRecipe", cfg=cfg)
    run_recipe(TinyRecipe, job_id, user_id, cfg, dataset)


if __name__ == "__main__":
    sys.exit(recipe_main())
'''


def test_a_whole_recipe_before_and_after():
    assert ported_by(RecipeMain, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(RecipeMain, WHOLE_BEFORE) == []


def test_recipe_main_takes_the_job_and_calls_run_recipe():
    before = recipe().replace(
        "    recipe = ForkRecipe(cfg=cfg)",
        '    config.log_config(recipe_name="ForkRecipe", cfg=cfg)\n    recipe = ForkRecipe(cfg=cfg)',
    )
    code = ported_by(RecipeMain, before)
    assert function(code, "recipe_main") == textwrap.dedent("""\
        def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
            config.log_config(recipe_name="ForkRecipe", cfg=cfg)
            run_recipe(ForkRecipe, job_id, user_id, cfg, dataset)
        """)
    assert "from runtime import Dataset, run_recipe\n" in code


def test_recipe_main_that_uses_the_recipe_beyond_run_recipe_is_refused():
    before = recipe().replace("    recipe.train()\n", "    recipe.train()\n    recipe.evaluate()\n")
    assert refusal(RecipeMain, before).endswith(
        "P002 `recipe_main` uses `recipe` beyond building it and calling setup, train and cleanup, which is all run_recipe does"
    )


def test_missing_or_repeated_driver_calls_are_refused_with_their_line():
    assert refusal(RecipeMain, recipe().replace("    recipe.train()\n", "")).endswith(
        "P002 expected one `recipe.train(...)` call in `recipe_main`, found 0"
    )
    twice = recipe().replace(
        "    recipe.setup(cfg=cfg)\n", "    recipe.setup(cfg=cfg)\n    recipe = ForkRecipe(cfg=cfg)\n"
    )
    reason = refusal(RecipeMain, twice)
    line = recipe().splitlines().index("    recipe.setup(cfg=cfg)") + 2
    assert reason == f"line {line}: P002 expected `recipe_main` to build ForkRecipe once, found 2 constructions"


def test_no_entry_point_is_refused():
    assert refusal(RecipeMain, recipe().replace(ENTRY, "")).endswith(
        "P002 expected one module-level `recipe_main`, found 0"
    )


def test_the_contracts_names_come_from_where_the_contract_imports_them():
    code = ported_by(RecipeMain, recipe(), contract="guide")
    assert "from runtime import run_recipe\n" in code
    assert "from torch.utils.data import DataLoader, Dataset\n" in code


def test_statements_between_lifecycle_calls_run_before_or_after_run_recipe_as_they_did_around_training():
    before = recipe().replace(
        "    recipe.train()\n",
        '    start = time.time()\n    recipe.train()\n    log.info(f"Training time {time.time() - start}")\n',
    )
    code = ported_by(RecipeMain, before)
    assert function(code, "recipe_main") == textwrap.dedent("""\
        def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
            start = time.time()
            run_recipe(ForkRecipe, job_id, user_id, cfg, dataset)
            log.info(f"Training time {time.time() - start}")
        """)
    assert [(note.rule, note.kind) for note in note_data(RecipeMain, before)] == [("P002", "moved")] * 2
    first, second = notes_of(RecipeMain, before)
    assert first.endswith(
        "`start = time.time()` ran between `recipe.setup(cfg=cfg)` and `recipe.train()`; it now runs before "
        "`run_recipe(...)`, which builds the recipe and runs its setup, train and cleanup"
    )
    assert (
        '`log.info(f"Training time {time.time() - start}")` ran between `recipe.train()` and `recipe.cleanup()`; it now runs after'
        in second
    )


def test_a_lifecycle_call_under_a_condition_is_refused_saying_where_it_is():
    before = recipe().replace(
        "    recipe.train()\n",
        '    if cfg.mode == "train":\n        recipe.train()\n    else:\n        recipe.evaluate()\n',
    )
    line = before.splitlines().index('    if cfg.mode == "train":') + 1
    assert refusal(RecipeMain, before) == (
        f"line {line}: P002 `recipe.train()` is called under `if` in `recipe_main`, not as one of its statements; "
        "run_recipe would run the recipe's whole life unconditionally: move the condition out of `recipe_main` "
        "(the job system decides what runs)"
    )


def test_a_lifecycle_call_passing_what_run_recipe_does_not_is_refused():
    before = recipe().replace("    recipe.setup(cfg=cfg)\n", "    recipe.setup(cfg=cfg, model=build_model(cfg))\n")
    assert refusal(RecipeMain, before).endswith(
        "P002 `recipe.setup(cfg=cfg, model=build_model(cfg))` passes `cfg=cfg, model=build_model(cfg)`, and run_recipe "
        "passes the recipe only the job's config (`R(cfg)`, `setup(cfg)`, `train()`, `cleanup()`)"
    )


def test_training_inside_a_with_runs_run_recipe_inside_it_noted():
    before = recipe().replace(
        "    recipe.train()\n",
        "    with torch.autograd.detect_anomaly():\n        recipe.train()\n        log.info('trained')\n",
    )
    code = ported_by(RecipeMain, "import torch\n" + before)
    assert function(code, "recipe_main") == textwrap.dedent("""\
        def recipe_main(job_id: str, user_id: str, cfg: DictConfig, dataset: Dataset) -> None:
            with torch.autograd.detect_anomaly():
                run_recipe(ForkRecipe, job_id, user_id, cfg, dataset)
                log.info('trained')
        """)
    (note,) = notes_of(RecipeMain, "import torch\n" + before)
    assert note.endswith(
        "`recipe.train()` ran inside `with torch.autograd.detect_anomaly():`; `run_recipe(...)` takes its place "
        "there, so the recipe's construction, setup and cleanup run inside it too"
    )
