"""P001 recipe-class: the base class, the renamed interface methods and their calls."""

from __future__ import annotations

import textwrap

from helpers.shapes import method, notes_of, ported_by, recipe, refusal
from porter.rules import RecipeClass

# A whole recipe, before and after this rule alone: the class inherits RecipeBase; `__init__` and the interface methods, and their calls on `self`, get a `_`.
WHOLE_BEFORE = """\
from omegaconf import DictConfig
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def __init__(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs

    def load_checkpoint(self, cfg_checkpointer: DictConfig) -> dict:
        self._checkpointer = config.instantiate(cfg_checkpointer)
        return self._checkpointer.load_checkpoint()

    def setup(self, cfg: DictConfig) -> None:
        self._model = config.instantiate(cfg.model)
        self._model.load_state_dict(self.load_checkpoint(cfg.checkpointer)["model"])

    def save_checkpoint(self, epoch: int) -> None:
        self._checkpointer.save_checkpoint({"model": self._model.state_dict()}, epoch=epoch)

    def train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self.epochs_run += 1
            self.save_checkpoint(epoch=curr_epoch)

    def cleanup(self) -> None:
        pass


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    recipe = TinyRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
"""

WHOLE_AFTER = """\
from omegaconf import DictConfig
from runtime import RecipeBase
from torchtune import config


class TinyRecipe(RecipeBase):
    def _init(self, cfg: DictConfig) -> None:
        self.epochs_run = 0
        self.total_epochs = cfg.epochs

    def _load_checkpoint(self, cfg_checkpointer: DictConfig) -> dict:
        self._checkpointer = config.instantiate(cfg_checkpointer)
        return self._checkpointer.load_checkpoint()

    def _setup(self, cfg: DictConfig) -> None:
        self._model = config.instantiate(cfg.model)
        self._model.load_state_dict(self._load_checkpoint(cfg.checkpointer)["model"])

    def _save_checkpoint(self, epoch: int) -> None:
        self._checkpointer.save_checkpoint({"model": self._model.state_dict()}, epoch=epoch)

    def _train(self) -> None:
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            self.epochs_run += 1
            self._save_checkpoint(epoch=curr_epoch)

    def _cleanup(self) -> None:
        pass


@config.parse
def recipe_main(cfg: DictConfig) -> None:
    recipe = TinyRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
"""


def test_a_whole_recipe_before_and_after():
    assert ported_by(RecipeClass, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(RecipeClass, WHOLE_BEFORE) == []


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


WRAPPED_CALLS = textwrap.dedent("""\
    from torchtune.recipe_interfaces import FTRecipeInterface


    class Recipe(FTRecipeInterface):
        def setup(self, cfg):
            state = self.load_checkpoint(cfg_checkpointer=cfg.checkpointer)
            teacher = self.load_checkpoint(cfg.teacher_checkpointer)
            self.save_checkpoint(epoch=0)

        def load_checkpoint(self, cfg_checkpointer):
            return {}

        def save_checkpoint(self, epoch):
            pass
    """)


def team(**wrappers):
    from dataclasses import replace

    from runtime.contract import GUIDE

    return replace(GUIDE, name="team", wrappers=tuple(wrappers.items()))


def test_calls_that_the_runtimes_wrappers_hand_on_unchanged_go_through_them():
    from runtime.contract import Wrapper

    contract = team(
        # `load_checkpoint(self, cfg_checkpointer)` calls `self._load_checkpoint(self.cfg.checkpointer)`
        load_checkpoint=Wrapper(("cfg_checkpointer",), "self.cfg.checkpointer", returns=True),
        # `save_checkpoint(self, *args, **kwargs)` calls `self._save_checkpoint(*args, **kwargs)`
        save_checkpoint=Wrapper(("*args", "**kwargs"), "arguments", returns=False),
    )
    assert method(ported_by(RecipeClass, WRAPPED_CALLS, contract=contract), "_setup") == textwrap.dedent("""\
        def _setup(self, cfg):
            state = self.load_checkpoint(cfg_checkpointer=cfg.checkpointer)
            teacher = self._load_checkpoint(cfg.teacher_checkpointer)
            self.save_checkpoint(epoch=0)
        """)
    assert notes_of(RecipeClass, WRAPPED_CALLS, contract=contract) == [
        "P001 line 6: `self.load_checkpoint(...)` goes through the runtime's public wrapper (contract `team`: "
        "load_checkpoint(cfg_checkpointer) calls `_load_checkpoint` with `self.cfg.checkpointer` and returns its "
        "result), so the wrapper's own work runs there too",
        "P001 line 7: `self.load_checkpoint(...)` calls the renamed `_load_checkpoint` directly, not the runtime's public "
        "wrapper (contract `team`), whose own work does not run there: it passes `cfg.teacher_checkpointer`, and "
        "RecipeBase.load_checkpoint(cfg_checkpointer) hands `_load_checkpoint` `self.cfg.checkpointer` instead",
        "P001 line 8: `self.save_checkpoint(...)` goes through the runtime's public wrapper (contract `team`: "
        "save_checkpoint(*args, **kwargs) calls `_save_checkpoint` with its own arguments and does not return its "
        "result), so the wrapper's own work runs there too",
    ]


def test_calls_a_wrapper_would_answer_otherwise_go_to_the_renamed_methods():
    from runtime.contract import Wrapper

    for contract in (
        "guide",  # no wrappers
        team(load_checkpoint=Wrapper(("cfg_checkpointer",), "arguments", returns=False)),  # drops the result
        team(load_checkpoint=Wrapper(("path",), "arguments", returns=True)),  # no such keyword
        team(load_checkpoint=Wrapper(("cfg_checkpointer", "/"), "arguments", returns=True)),  # positional only
        team(load_checkpoint=Wrapper(("cfg_checkpointer", "step"), "arguments", returns=True)),  # needs `step` too
    ):
        code = ported_by(RecipeClass, WRAPPED_CALLS, contract=contract)
        assert "state = self._load_checkpoint(cfg_checkpointer=cfg.checkpointer)\n" in code, contract


def test_a_config_rebound_in_setup_is_not_the_node_the_wrapper_passes():
    from runtime.contract import Wrapper

    rebound = WRAPPED_CALLS.replace("def setup(self, cfg):\n", "def setup(self, cfg):\n        cfg = cfg.trainer\n")
    contract = team(load_checkpoint=Wrapper(("cfg_checkpointer",), "self.cfg.checkpointer", returns=True))
    assert "state = self._load_checkpoint(" in ported_by(RecipeClass, rebound, contract=contract)


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
