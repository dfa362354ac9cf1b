"""Fixtures: the shapes of teams' forks of torchtune recipes that porter must port
correctly, with a reviewer note where behaviour moves, or refuse naming the rule and
the line; written for porter's tests (issue: "fail closed on the shapes real recipes
have"). Each is a whole recipe module, made from the small recipe of shapes.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict

from helpers.shapes import HEADER, recipe, SETUP_DATA, train


@dataclass(frozen=True)
class ForkShape:
    source: str
    status: str  # converted, partial (an assisted port, with holes), failed or skipped
    expect: str  # in the reason (failed, skipped), a hole (partial) or a reviewer note (converted)


HELPER_THAT_PRUNES = """
def save_intermediate(self, epoch: int) -> None:
    self.save_checkpoint(epoch=epoch)
    for old in sorted(self._output_dir.glob("epoch_*"))[:-2]:
        shutil.rmtree(old)
"""

HELPER_THAT_SAVES = '''
def save_intermediate(self, epoch: int) -> None:
    """Save, and say so."""
    log.info("saving epoch %d", epoch)
    self.save_checkpoint(epoch=epoch)
'''

# No save method: the checkpointer saves every N steps and at each epoch's end.
INLINE_SAVES = """
def train(self) -> None:
    t0 = time.perf_counter()
    for curr_epoch in range(self.epochs_run, self.total_epochs):
        for batch in self._dataloader:
            self.global_step += 1
            if self.global_step % self._log_every_n_steps == 0:
                time_per_step = time.perf_counter() - t0
                log_dict = {"loss": 1.0, "lr": 1e-3}
                self._metric_logger.log_dict(log_dict, step=self.global_step)
            if self.global_step % self._save_every_n_steps == 0:
                self._checkpointer.save_checkpoint(
                    {training.MODEL_KEY: self._model.state_dict()},
                    epoch=curr_epoch,
                    intermediate_checkpoint=True,
                )
            t0 = time.perf_counter()
        self.epochs_run += 1
        self._checkpointer.save_checkpoint({training.MODEL_KEY: self._model.state_dict()}, epoch=curr_epoch)
"""

STEP_LOOP_IN_A_HELPER = dict(
    train_method=(
        "def train(self) -> None:\n"
        "    for curr_epoch in range(self.epochs_run, self.total_epochs):\n"
        "        self._train_epoch(curr_epoch)\n"
        "        self.epochs_run += 1\n"
        "        self.save_checkpoint(epoch=curr_epoch)\n"
    ),
    extra_methods=(
        train("")
        .replace("def train(self)", "def _train_epoch(self, epoch: int)")
        .replace("    for curr_epoch in range(self.epochs_run, self.total_epochs):\n", "    if True:\n")
        .replace("        self.epochs_run += 1\n", "")
    ),
)

# torchtune 0.1 (early 2024): `total_training_steps`, a logged dict literal, no step
# clock, no ListConfig branch.
OLDER_LOOP = dict(
    train_method="""
def train(self) -> None:
    for curr_epoch in range(self.epochs_run, self.total_epochs):
        for idx, batch in enumerate(self._dataloader):
            loss = self._model(**batch)
            if self.total_training_steps % self._log_every_n_steps == 0:
                self._metric_logger.log_dict(
                    {"loss": loss.item(), "lr": 1e-3},
                    step=self.total_training_steps,
                )
            self.total_training_steps += 1
        self.epochs_run += 1
        self.save_checkpoint(epoch=curr_epoch)
""",
    setup_data="""
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    ds = config.instantiate(cfg_dataset, tokenizer=self._tokenizer)
    return DataLoader(ds, batch_size=batch_size)
""",
)

# An epoch loop in a function nested in `train`, which only calls it.
NESTED_EPOCH_LOOP = """
def train(self) -> None:
    t0 = time.perf_counter()

    def run_loop():
        for curr_epoch in range(self.epochs_run, self.total_epochs):
            for batch in self._dataloader:
                loss = self._model(**batch)
                self.global_step += 1
                if self.global_step % self._log_every_n_steps == 0:
                    time_per_step = time.perf_counter() - t0
                    log_dict = {"loss": loss.item(), "lr": 1e-3}
                    self._metric_logger.log_dict(log_dict, step=self.global_step)
            self.epochs_run += 1
            self.save_checkpoint(epoch=curr_epoch)

    run_loop()
"""


def setup_data(*lines: str, after: str = "") -> str:
    """A `_setup_data` whose config branch ends with `lines`, and `after` it."""
    body = "".join(f"        {line}\n" for line in lines) + "".join(f"    {line}\n" for line in after.splitlines())
    return (
        "def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:\n"
        "    if isinstance(cfg_dataset, ListConfig):\n"
        "        ds = config.instantiate(cfg_dataset[0], self._tokenizer)\n"
        "    else:\n"
        "        ds = config.instantiate(cfg_dataset, self._tokenizer)\n"
        f"{body}"
        "    return DataLoader(ds, batch_size=batch_size)\n"
    )


# Early 2024: every batch logs, with a dict literal and no block around the call.
LOGS_EVERY_BATCH = """
def train(self) -> None:
    for curr_epoch in range(self.epochs_run, self.total_epochs):
        for idx, batch in enumerate(self._dataloader):
            loss = self._model(**batch)
            loss.backward()
            self.global_step += 1
            self._metric_logger.log_dict({"loss": loss.item(), "lr": 1e-3}, step=self.global_step)
        self.epochs_run += 1
        self.save_checkpoint(epoch=curr_epoch)
"""

# `_setup_data`s in shapes other than upstream's: the set the loader gets is made by
# statements porter follows back from the loader (porter/dataset_flow.py).
DATASET_BRANCH_ON_A_PLAIN_LIST = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    if isinstance(cfg_dataset, list):
        ds = config.instantiate(cfg_dataset[0], self._tokenizer)
    else:
        ds = config.instantiate(cfg_dataset, self._tokenizer)
    return DataLoader(ds, batch_size=batch_size)
"""

DATASET_CONCAT_OF_A_COMPREHENSION = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    configs = cfg_dataset if isinstance(cfg_dataset, ListConfig) else [cfg_dataset]
    datasets = [config.instantiate(c, self._tokenizer) for c in configs]
    ds = ConcatDataset(datasets)
    return DataLoader(ds, batch_size=batch_size)
"""

DATASET_FROM_A_NESTED_HELPER = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    def build(node):
        return config.instantiate(node, self._tokenizer)

    log.info("building the dataset")
    train_set = build(cfg_dataset)
    return DataLoader(dataset=train_set, batch_size=batch_size)
"""

DATASET_WITH_BUILDER_ARGUMENTS = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    ds = config.instantiate(cfg_dataset, self._tokenizer, split="train")
    return DataLoader(ds, batch_size=batch_size)
"""

ALREADY_PORTED = """\
from {module} import RecipeBase


class TeamRecipe(RecipeBase):
    def _train(self) -> None:
        pass
"""

OTHER_INTERFACE = """\
from torchtune.recipe_interfaces import {base}


class Other({base}):
    def run(self) -> None:
        pass
"""

FORK_SHAPES: Dict[str, ForkShape] = {
    "save_in_try_finally.py": ForkShape(
        recipe(train("try:\n    self.save_checkpoint(epoch=curr_epoch)\nfinally:\n    log.info('epoch done')")),
        "converted",
        "the epoch save (`self.save_checkpoint(...)`) is now the runtime's epoch hook, in its place",
    ),
    "save_in_else_branch.py": ForkShape(
        recipe(
            train("if self._skip_save:\n    log.info('no save')\nelse:\n    self.save_checkpoint(epoch=curr_epoch)"),
            init_extra="self._skip_save = False\n",
        ),
        "converted",
        "the epoch save (`self.save_checkpoint(...)`) is now the runtime's epoch hook, in its place",
    ),
    "step_save_in_with_block.py": ForkShape(
        recipe(
            train("").replace(
                "            t0 = time.perf_counter()\n",
                "            with self._timer('save'):\n                self.save_checkpoint(epoch=curr_epoch)\n            t0 = time.perf_counter()\n",
            ),
            header=HEADER + "from contextlib import nullcontext\n",
            extra_methods="def _timer(self, what: str):\n    return nullcontext()\n",
        ),
        "converted",
        "the save every N steps (`self.save_checkpoint(...)`) is now the runtime's step hook, in its place",
    ),
    "final_save_alone_in_with_block.py": ForkShape(
        recipe(
            train("").replace(
                "        self.epochs_run += 1\n",
                "        self.epochs_run += 1\n    with self._timer('save'):\n        self.save_checkpoint(epoch=curr_epoch)\n",
            ),
            header=HEADER + "from contextlib import nullcontext\n",
            extra_methods="def _timer(self, what: str):\n    return nullcontext()\n",
        ),
        "converted",
        "every save stays the recipe's (line 56), with its arguments and schedule, since the runtime's save hook "
        "cannot take this one over: the final save is all that its `with` block holds",
    ),
    "users_condition_around_save.py": ForkShape(
        recipe(
            train("if curr_epoch >= self._warmup_epochs:\n    self.save_checkpoint(epoch=curr_epoch)"),
            init_extra="self._warmup_epochs = 1\n",
        ),
        "converted",
        "it stays under the recipe's own `if curr_epoch >= self._warmup_epochs:`",
    ),
    "helper_that_saves_and_prunes.py": ForkShape(
        recipe(
            train("self.save_intermediate(curr_epoch)"),
            extra_methods=HELPER_THAT_PRUNES,
            header=HEADER + "import shutil\nfrom pathlib import Path\n",
            init_extra="self._output_dir = Path(cfg.output_dir)\n",
        ),
        "converted",
        "which the runtime does when `porter.keep_last_n_checkpoints` is set (it kept 2)",
    ),
    "helper_that_saves_and_cleans_up_more.py": ForkShape(
        recipe(
            train("self.save_intermediate(curr_epoch)"),
            extra_methods=HELPER_THAT_PRUNES
            + "    self._upload(epoch)\n\n"
            + "def _upload(self, epoch: int) -> None:\n    log.info('uploaded epoch %d', epoch)\n",
            header=HEADER + "import shutil\nfrom pathlib import Path\n",
            init_extra="self._output_dir = Path(cfg.output_dir)\n",
        ),
        "converted",
        "since the runtime's save hook cannot take this one over: `self.save_intermediate(...)` saves a checkpoint",
    ),
    "helper_that_only_saves.py": ForkShape(
        recipe(train("self.save_intermediate(curr_epoch)"), extra_methods=HELPER_THAT_SAVES),
        "converted",
        "which saves in `save_intermediate`; that method stays, unused",
    ),
    "inline_step_and_epoch_saves.py": ForkShape(
        recipe(INLINE_SAVES, save_checkpoint=None, init_extra="self._save_every_n_steps = 3\n"),
        "converted",
        "this save moved into a new `_save_checkpoint(epoch)`",
    ),
    "renamed_metric_keys.py": ForkShape(
        recipe(train().replace('{"loss": loss.item(), "lr": 1e-3}', '{"train/loss": loss.item(), "train/lr": 1e-3}')),
        "converted",
        "",
    ),
    "renamed_step_timer.py": ForkShape(
        recipe(train().replace("t0", "t_step").replace("time_per_step", "elapsed")), "converted", ""
    ),
    "step_loop_in_a_helper.py": ForkShape(recipe(**STEP_LOOP_IN_A_HELPER), "converted", ""),
    "older_loop.py": ForkShape(
        recipe(**OLDER_LOOP, init_extra="self.total_training_steps = 0\n"), "converted", "the recipe has no step clock"
    ),
    "subclass_of_a_stock_recipe.py": ForkShape(
        recipe(
            base="FullFinetuneRecipeDistributed",
            header=HEADER + "from recipes.full_finetune_distributed import FullFinetuneRecipeDistributed\n",
        ),
        "skipped",
        "subclass of FullFinetuneRecipeDistributed (from recipes.full_finetune_distributed): port that recipe",
    ),
    "subclass_in_the_same_file.py": ForkShape(
        recipe(after_class="class Child(ForkRecipe):\n    def train(self) -> None:\n        pass\n\n\n"),
        "failed",
        "class Child subclasses the recipe class ForkRecipe",
    ),
    "timed_training_in_recipe_main.py": ForkShape(
        recipe(train('log.info("epoch %d done", curr_epoch)\nself.save_checkpoint(epoch=curr_epoch)')).replace(
            "    recipe.train()\n",
            '    start = time.time()\n    recipe.train()\n    log.info(f"Training time {time.time() - start}")\n',
        ),
        "converted",
        "ran between `recipe.train()` and `recipe.cleanup()`; it now runs after `run_recipe(...)`",
    ),
    "training_inside_a_with_in_recipe_main.py": ForkShape(
        recipe(header=HEADER + "import torch\n").replace(
            "    recipe.train()\n", "    with torch.autograd.detect_anomaly():\n        recipe.train()\n"
        ),
        "converted",
        "`run_recipe(...)` takes its place there, so the recipe's construction, setup and cleanup run inside it too",
    ),
    "train_or_evaluate_in_recipe_main.py": ForkShape(
        recipe().replace(
            "    recipe.train()\n",
            '    if cfg.mode == "train":\n        recipe.train()\n    else:\n        recipe.evaluate()\n',
        ),
        "failed",
        "P002 `recipe.train()` is called under `if` in `recipe_main`",
    ),
    "setup_with_extra_parameters.py": ForkShape(
        recipe().replace(
            "def setup(self, cfg: DictConfig) -> None:",
            "def setup(self, cfg: DictConfig, model=None, adapter=None) -> None:",
        ),
        "converted",
        "`setup` takes `model`, `adapter` beyond what the runtime passes (`_setup(cfg)`)",
    ),
    "dataset_wrapped_in_the_config_branch.py": ForkShape(
        recipe(setup_data=setup_data("ds = PreferenceWithReference(ds, self._ref_model)")),
        "partial",
        "P008 `ds = PreferenceWithReference(ds, self._ref_model)` post-processes the dataset the config builds",
    ),
    "validation_set_from_the_edited_training_config.py": ForkShape(
        recipe(
            setup_data=setup_data(
                after='cfg_dataset["data_files"] = self._val_files\nself._val = config.instantiate(cfg_dataset, self._tokenizer)'
            ),
            init_extra='self._val_files = "validation.jsonl"\n',
        ),
        "converted",
        "builds from `cfg_dataset`, the config node the job's dataset replaces",
    ),
    "dataset_branch_on_a_plain_list.py": ForkShape(
        recipe(setup_data=DATASET_BRANCH_ON_A_PLAIN_LIST),
        "converted",
        "`ds`, the set the data loader receives (line 33), is made by line 29",
    ),
    "dataset_concat_of_a_comprehension.py": ForkShape(
        recipe(
            setup_data=DATASET_CONCAT_OF_A_COMPREHENSION,
            header=HEADER + "from torch.utils.data import ConcatDataset\n",
        ),
        "converted",
        "`ds`, the set the data loader receives (line 33), is made by lines 30, 31, 32",
    ),
    "dataset_from_a_nested_helper.py": ForkShape(
        recipe(setup_data=DATASET_FROM_A_NESTED_HELPER),
        "converted",
        "`train_set`, the set the data loader receives (line 34), is made by line 33",
    ),
    "dataset_with_builder_arguments.py": ForkShape(
        recipe(setup_data=DATASET_WITH_BUILDER_ARGUMENTS),
        "converted",
        'the recipe builds its dataset with `split="train"`; the job\'s dataset is built from its own config without them',
    ),
    "dataset_wrapped_in_the_same_expression.py": ForkShape(
        recipe(
            setup_data=DATASET_WITH_BUILDER_ARGUMENTS.replace(
                'config.instantiate(cfg_dataset, self._tokenizer, split="train")',
                "PreferenceWithReference(config.instantiate(cfg_dataset, self._tokenizer), self._ref_model)",
            )
        ),
        "partial",
        "P008 `PreferenceWithReference(config.instantiate(cfg_dataset, self._tokenizer), self._ref_model)` wraps the "
        "dataset the config builds in `PreferenceWithReference(...)`",
    ),
    "dataset_collate_bound_only_in_the_branch.py": ForkShape(
        recipe(
            setup_data=setup_data("collate = None  # the default collate").replace(
                "DataLoader(ds, batch_size=batch_size)", "DataLoader(ds, batch_size=batch_size, collate_fn=collate)"
            )
        ),
        "partial",
        "P008 `collate` is bound only in what the job's dataset replaces (line 29) and read at line 34",
    ),
    "dataset_splits_of_one_config.py": ForkShape(
        recipe(
            setup_data=SETUP_DATA.replace("batch_size: int)", "batch_size: int, split: str = 'train')"),
        ).replace(
            "        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)\n",
            "        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)\n"
            "        self._val = self._setup_data(cfg.dataset, 1, split='validation')\n",
        ),
        "partial",
        "P008 `_setup_data` is called with `cfg.dataset` at lines 26, 27: splits of one config would all get the job's dataset",
    ),
    "epoch_loop_in_a_nested_function.py": ForkShape(
        recipe(NESTED_EPOCH_LOOP), "failed", "P004, P005, P006 the epoch loop is in `run_loop`, defined inside `train`"
    ),
    "public_setup_data_and_log_every.py": ForkShape(
        recipe(setup_data=SETUP_DATA.replace("def _setup_data(", "def setup_data("))
        .replace("self._setup_data(", "self.setup_data(")
        .replace("self._log_every_n_steps", "self.log_every_n_steps"),
        "converted",
        "",
    ),
    "logs_every_batch_inline.py": ForkShape(recipe(LOGS_EVERY_BATCH), "converted", "the recipe has no step clock"),
    "merged_metric_dict.py": ForkShape(
        recipe(
            train().replace('{"loss": loss.item(), "lr": 1e-3}', '{"loss": loss.item(), **self._lr_log()}'),
            extra_methods='def _lr_log(self) -> dict:\n    return {"lr": 1e-3}\n',
        ),
        "converted",
        'merges another dict (`**...`) porter cannot read: the step event reads the learning rate as `log_dict.get("lr")`',
    ),
    "already_ported_by_the_team.py": ForkShape(
        ALREADY_PORTED.format(module="runtime"),
        "skipped",
        "already ported (TeamRecipe inherits RecipeBase from runtime)",
    ),
    "a_third_party_recipe_base.py": ForkShape(
        ALREADY_PORTED.format(module="somelib.trainers"),
        "skipped",
        "not a training recipe: TeamRecipe inherits a RecipeBase from somelib.trainers, which is not the runtime's",
    ),
    "evaluation_recipe.py": ForkShape(
        OTHER_INTERFACE.format(base="EvalRecipeInterface"),
        "skipped",
        "an evaluation recipe: Other subclasses EvalRecipeInterface",
    ),
    "orchestration_recipe.py": ForkShape(
        OTHER_INTERFACE.format(base="OrchestrationRecipeInterface"),
        "skipped",
        "an orchestration recipe (it starts and drives other processes)",
    ),
}
