"""P001 recipe-class: the base class, the renamed interface methods and their calls."""

from __future__ import annotations

import textwrap

from shapes import method, notes_of, ported_by, recipe, refusal
from porter.rules import RecipeClass


def test_the_recipe_inherits_recipe_base_and_imports_it():
    code = ported_by(RecipeClass, recipe())
    assert "class ForkRecipe(RecipeBase):" in code
    assert "from runtime import RecipeBase\n" in code
    # FTRecipeInterface's import went with its last use.
    assert "FTRecipeInterface" not in code


def test_interface_methods_get_a_leading_underscore_and_so_do_their_calls_on_self():
    code = ported_by(RecipeClass, recipe())
    for name in ("_init", "_setup", "_save_checkpoint", "_train", "_cleanup"):
        assert f"    def {name}(self" in code
    assert method(code, "_train").endswith("        self._save_checkpoint(epoch=curr_epoch)\n")


def test_calls_on_other_objects_keep_their_names():
    before = recipe(extra_methods="def evaluate(self) -> None:\n    self._model.train()\n    training.cleanup()\n")
    after = method(ported_by(RecipeClass, before), "evaluate")
    assert after == textwrap.dedent("""\
        def evaluate(self) -> None:
            self._model.train()
            training.cleanup()
        """)


def test_a_private_twin_of_an_interface_method_is_refused():
    reason = refusal(RecipeClass, recipe(extra_methods="def _setup(self):\n    pass\n"))
    assert reason.endswith(
        "P001 class ForkRecipe defines both `setup` and `_setup`; renaming `setup` would replace `_setup`"
    )
    assert reason.startswith("line ")


def test_two_recipe_classes_are_refused_once():
    reason = refusal(RecipeClass, recipe(after_class="class Other(FTRecipeInterface):\n    pass\n\n\n"))
    assert "P001 expected one FTRecipeInterface subclass, found 2 (ForkRecipe, Other)" in reason
    assert reason.count("expected one") == 1


def test_calls_go_through_the_runtimes_wrappers_where_the_contract_says_they_pass_arguments_on():
    from dataclasses import replace

    from runtime.contract import GUIDE

    forwarding = replace(GUIDE, name="team", wrappers_forward_arguments=True)
    before = recipe(extra_methods="def load_checkpoint(self, cfg_checkpointer):\n    return {}\n").replace(
        "        self._checkpointer = config.instantiate(cfg.checkpointer)\n",
        "        self._checkpointer = config.instantiate(cfg.checkpointer)\n        state = self.load_checkpoint(cfg.checkpointer)\n",
    )
    after = ported_by(RecipeClass, before, contract=forwarding)
    assert "    def _setup(self, cfg: DictConfig) -> None:\n" in after
    assert "        state = self.load_checkpoint(cfg.checkpointer)\n" in after
    (note,) = notes_of(RecipeClass, before, contract=forwarding)
    assert "go through the runtime's public wrappers (contract `team`: they pass their arguments on)" in note
    # Under a contract whose wrappers do not say so, the calls go to the renamed methods.
    assert "        state = self._load_checkpoint(cfg.checkpointer)\n" in ported_by(
        RecipeClass, before, contract="guide"
    )


def test_a_method_the_runtime_calls_with_parameters_it_does_not_pass_is_noted_or_refused():
    optional = recipe().replace(
        "def setup(self, cfg: DictConfig) -> None:",
        "def setup(self, cfg: DictConfig, model=None, adapter=None) -> None:",
    )
    assert "    def _setup(self, cfg: DictConfig, model=None, adapter=None) -> None:\n" in ported_by(
        RecipeClass, optional
    )
    (note,) = notes_of(RecipeClass, optional)
    assert note.endswith(
        "`setup` takes `model`, `adapter` beyond what the runtime passes (`_setup(cfg)`): they keep their defaults, "
        "and a caller that passed another value no longer does"
    )
    required = recipe().replace("def train(self) -> None:", "def train(self, steps: int) -> None:")
    assert refusal(RecipeClass, required).endswith(
        "P001 `train` requires `steps`, which the runtime does not pass: it calls `_train()`"
    )
