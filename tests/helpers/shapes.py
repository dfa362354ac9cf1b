"""Recipe-shaped sources written for porter's tests: one small recipe, in the shape of
torchtune's single-device recipes, whose parts a test replaces to make the shape it is
about (a fork's save in a `try`, renamed metric keys, a step loop in a helper, ...).
"""

from __future__ import annotations

import ast
import textwrap
from typing import Optional

HEADER = """\
import sys
import time

from omegaconf import DictConfig, ListConfig

from torch.utils.data import DataLoader
from torchtune import config, training, utils
from torchtune.recipe_interfaces import FTRecipeInterface

log = utils.get_logger("DEBUG")
"""

INIT = """\
def __init__(self, cfg: DictConfig) -> None:
    self.epochs_run = 0
    self.total_epochs = cfg.epochs
    self.global_step = 0
    self._log_every_n_steps = cfg.get("log_every_n_steps", 1)
    self._steps_per_epoch = 4
"""

SETUP = """\
def setup(self, cfg: DictConfig) -> None:
    self._checkpointer = config.instantiate(cfg.checkpointer)
    self._metric_logger = config.instantiate(cfg.metric_logger)
    self._model = config.instantiate(cfg.model)
    self._tokenizer = config.instantiate(cfg.tokenizer)
    self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)
"""

SETUP_DATA = """\
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    if isinstance(cfg_dataset, ListConfig):
        ds = config.instantiate(cfg_dataset[0], self._tokenizer)
    else:
        ds = config.instantiate(cfg_dataset, self._tokenizer)
    return DataLoader(ds, batch_size=batch_size)
"""

SAVE_CHECKPOINT = """\
def save_checkpoint(self, epoch: int) -> None:
    self._checkpointer.save_checkpoint({training.MODEL_KEY: self._model.state_dict()}, epoch=epoch)
"""

# The step loop every shape shares unless it replaces `train`: `{epoch_end}` is what
# follows the epoch count.
TRAIN = """\
def train(self) -> None:
    t0 = time.perf_counter()
    for curr_epoch in range(self.epochs_run, self.total_epochs):
        for batch in self._dataloader:
            loss = self._model(**batch)
            loss.backward()
            self.global_step += 1
            if self.global_step % self._log_every_n_steps == 0:
                time_per_step = time.perf_counter() - t0
                log_dict = {{"loss": loss.item(), "lr": 1e-3}}
                self._metric_logger.log_dict(log_dict, step=self.global_step)
            t0 = time.perf_counter()
        self.epochs_run += 1
{epoch_end}
"""

CLEANUP = """\
def cleanup(self) -> None:
    self._metric_logger.close()
"""

ENTRY = """\
@config.parse
def recipe_main(cfg: DictConfig) -> None:
    recipe = ForkRecipe(cfg=cfg)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()


if __name__ == "__main__":
    sys.exit(recipe_main())
"""


def train(epoch_end: str = "self.save_checkpoint(epoch=curr_epoch)") -> str:
    """The shared `train`, with `epoch_end` after the epoch count (8 spaces deep)."""
    return TRAIN.format(epoch_end=textwrap.indent(textwrap.dedent(epoch_end).strip("\n"), " " * 8))


def recipe(
    train_method: Optional[str] = None,
    extra_methods: str = "",
    save_checkpoint: Optional[str] = SAVE_CHECKPOINT,
    setup_data: str = SETUP_DATA,
    header: str = HEADER,
    base: str = "FTRecipeInterface",
    after_class: str = "",
    init_extra: str = "",
) -> str:
    """A whole recipe module: the shared parts, with the ones given replaced, and
    `init_extra` lines at the end of `__init__` (what a fork's loop reads)."""
    init = INIT + textwrap.indent(textwrap.dedent(init_extra), "    ")
    methods = [init, SETUP, setup_data, save_checkpoint, extra_methods, train_method or train(), CLEANUP]
    body = "\n".join(textwrap.indent(textwrap.dedent(m).strip("\n") + "\n", "    ") for m in methods if m)
    text = f"{header}\n\nclass ForkRecipe({base}):\n{body}\n\n{after_class}{ENTRY}"
    ast.parse(text)  # a test's fixture is valid Python, or the test itself is wrong
    return text


def method(code: str, name: str) -> str:
    """The source of method `name` of the module's first class, dedented."""
    tree = ast.parse(code)
    cls = next(node for node in tree.body if isinstance(node, ast.ClassDef))
    return _source(code, next(item for item in cls.body if isinstance(item, ast.FunctionDef) and item.name == name))


def function(code: str, name: str) -> str:
    """The source of the module-level function `name`, decorators included."""
    return _source(code, next(n for n in ast.parse(code).body if isinstance(n, ast.FunctionDef) and n.name == name))


def _source(code: str, node: ast.FunctionDef) -> str:
    lines = code.splitlines(keepends=True)
    start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    return textwrap.dedent("".join(lines[start : node.end_lineno]))


def ported_by(rule, text: str, contract="porter") -> str:
    """`text` ported by `rule` alone for the runtime `contract` (a name, or a
    RuntimeContract): the code, or the test fails with porter's reason."""
    from porter.pipeline import port_with

    result = port_with([rule(contract)], text)
    assert result.status == "converted", result.reason
    return result.code


def refusal(rule, text: str, contract="porter") -> str:
    """Why `rule` alone refuses `text` (were it not to leave a hole: tests/converter/test_holes.py)."""
    from porter.pipeline import port_with

    result = port_with([rule(contract)], text, assisted=False)
    assert result.status == "failed", "expected a refusal"
    return result.reason


def notes_of(rule, text: str, contract="porter") -> list:
    """The notes `rule` alone gives `text`, as a reviewer reads them."""
    return [str(note) for note in note_data(rule, text, contract)]


def note_data(rule, text: str, contract="porter") -> list:
    """The notes `rule` alone gives `text`: (rule, line, kind) each, and their words."""
    from porter.pipeline import port_with

    return port_with([rule(contract)], text).notes
