"""P008 dataset-injection: `_setup_data` takes the job's dataset first."""

from __future__ import annotations

import textwrap

from helpers.shapes import method, note_data, notes_of, ported_by, recipe, refusal, SETUP_DATA
from porter.rules import DatasetInjection

# A whole recipe, before and after this rule alone: the job's dataset first; the ListConfig branch becomes its `elif`.
WHOLE_BEFORE = """\
from omegaconf import DictConfig, ListConfig
from torch.utils.data import ConcatDataset, DataLoader
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
        if isinstance(cfg_dataset, ListConfig):
            datasets = [config.instantiate(single, self._tokenizer) for single in cfg_dataset]
            ds = ConcatDataset(datasets=datasets)
            packed = getattr(ds, "packed", False)
        else:
            ds = config.instantiate(cfg_dataset, self._tokenizer)
            packed = cfg_dataset.get("packed", False)
        return DataLoader(ds, batch_size=batch_size, drop_last=packed)
"""

WHOLE_AFTER = """\
from omegaconf import DictConfig, ListConfig
from torch.utils.data import ConcatDataset, DataLoader
from torchtune import config
from torchtune.recipe_interfaces import FTRecipeInterface


class TinyRecipe(FTRecipeInterface):
    def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
        if self.dataset:
            ds = self.dataset
            packed = cfg_dataset.get("packed", False)
        elif isinstance(cfg_dataset, ListConfig):
            datasets = [config.instantiate(single, self._tokenizer) for single in cfg_dataset]
            ds = ConcatDataset(datasets=datasets)
            packed = getattr(ds, "packed", False)
        else:
            ds = config.instantiate(cfg_dataset, self._tokenizer)
            packed = cfg_dataset.get("packed", False)
        return DataLoader(ds, batch_size=batch_size, drop_last=packed)
"""


def test_a_whole_recipe_before_and_after():
    assert ported_by(DatasetInjection, WHOLE_BEFORE) == WHOLE_AFTER
    assert notes_of(DatasetInjection, WHOLE_BEFORE) == []


def test_the_list_config_branch_becomes_the_elif_of_the_jobs_dataset():
    assert method(ported_by(DatasetInjection, recipe()), "_setup_data") == textwrap.dedent("""\
        def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
            if self.dataset:
                ds = self.dataset
            elif isinstance(cfg_dataset, ListConfig):
                ds = config.instantiate(cfg_dataset[0], self._tokenizer)
            else:
                ds = config.instantiate(cfg_dataset, self._tokenizer)
            return DataLoader(ds, batch_size=batch_size)
        """)


def test_an_older_recipe_without_a_list_config_branch_gets_an_else():
    older = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    # The dataset from the config
    ds = config.instantiate(cfg_dataset, tokenizer=self._tokenizer)
    return DataLoader(ds, batch_size=batch_size)
"""
    assert method(ported_by(DatasetInjection, recipe(setup_data=older)), "_setup_data") == textwrap.dedent("""\
        def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
            # The dataset from the config
            if self.dataset:
                ds = self.dataset
            else:
                ds = config.instantiate(cfg_dataset, tokenizer=self._tokenizer)
            return DataLoader(ds, batch_size=batch_size)
        """)


def test_the_branchs_own_dataset_variable_and_packed_are_kept():
    packed = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    if isinstance(cfg_dataset, ListConfig):
        dataset = config.instantiate(cfg_dataset[0], self._tokenizer)
        packed = False
    else:
        dataset = config.instantiate(cfg_dataset, self._tokenizer)
        packed = cfg_dataset.get("packed", False)
    return DataLoader(dataset, batch_size=batch_size, drop_last=not packed)
"""
    body = method(ported_by(DatasetInjection, recipe(setup_data=packed)), "_setup_data")
    assert body.startswith(
        textwrap.dedent("""\
        def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
            if self.dataset:
                dataset = self.dataset
                packed = cfg_dataset.get("packed", False)
            elif isinstance(cfg_dataset, ListConfig):
        """)
    )


def test_a_validation_set_built_by_the_same_method_keeps_its_config_and_is_noted():
    before = recipe().replace(
        "        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)\n",
        "        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)\n        self._val = self._setup_data(cfg.dataset_val, 1)\n",
    )
    assert "    if self.dataset and cfg_dataset is self.job_dataset_config:\n" in ported_by(DatasetInjection, before)
    (data,) = note_data(DatasetInjection, before)
    assert (data.rule, data.kind) == ("P008", "changed")
    assert data.line == before.splitlines().index("        if isinstance(cfg_dataset, ListConfig):") + 1
    (note,) = notes_of(DatasetInjection, before)
    assert note.endswith(
        "`_setup_data` also builds another set (validation): the job's dataset replaces the training set only, "
        "the set whose config is `self.job_dataset_config`"
    )


def test_no_dataset_branch_is_refused():
    none = "def _setup_data(self, cfg_dataset, batch_size):\n    return self._loader\n"
    assert refusal(DatasetInjection, recipe(setup_data=none)).endswith(
        "P008 expected, directly in `_setup_data`, one `if isinstance(<dataset config>, ListConfig):`, or one "
        "`ds = config.instantiate(<dataset config>, ...)`, or a loop over the dataset configs filling a `datasets` and a "
        "`weights` dict (a mix), or a set handed to a data loader or sampler that a statement of it binds, found 0 "
        "ListConfig branches"
    )


def test_under_the_guides_contract_the_training_set_is_the_one_built_from_cfg_dataset():
    before = recipe().replace(
        "        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)\n",
        "        self._dataloader = self._setup_data(cfg.dataset, cfg.batch_size)\n        self._val = self._setup_data(cfg.dataset_val, 1)\n",
    )
    assert "    if self.dataset and cfg_dataset is self.cfg.dataset:\n" in ported_by(
        DatasetInjection, before, contract="guide"
    )
    # A contract that gives neither the replaced config node nor the config: refused, saying what is missing.
    from dataclasses import replace

    from runtime.contract import GUIDE

    bare = replace(GUIDE, name="bare", attributes=GUIDE.attributes - {"cfg"})
    assert refusal(DatasetInjection, before, contract=bare) == (
        "line 29: P008 `_setup_data` builds several sets; porter tells the training set by the config node the "
        "runtime replaced, which the runtime contract `bare` gives neither as `self.job_dataset_config` nor as "
        "`self.cfg.dataset` (with a `_setup_data(cfg.dataset, ...)` call)"
    )


def test_a_wrapper_the_config_branch_puts_around_its_dataset_is_refused_naming_it():
    before = recipe(
        setup_data="""
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    if isinstance(cfg_dataset, ListConfig):
        ds = config.instantiate(cfg_dataset[0], self._tokenizer)
    else:
        ds = config.instantiate(cfg_dataset, self._tokenizer)
        ds = PreferenceWithReference(ds, self._ref_model)
    return DataLoader(ds, batch_size=batch_size)
"""
    )
    line = before.splitlines().index("            ds = PreferenceWithReference(ds, self._ref_model)") + 1
    assert refusal(DatasetInjection, before) == (
        f"line {line}: P008 `ds = PreferenceWithReference(ds, self._ref_model)` post-processes the dataset the config "
        "builds, inside the branch the job's dataset replaces, which would bypass it: move it after the `if`/`else`, "
        "where every dataset `ds` goes through it"
    )
    # After the branch, the job's dataset goes through it too.
    after_the_branch = before.replace("            ds = PreferenceWithReference(ds, self._ref_model)\n", "", 1).replace(
        "        return DataLoader",
        "        ds = PreferenceWithReference(ds, self._ref_model)\n        return DataLoader",
    )
    assert "        ds = self.dataset\n" in ported_by(DatasetInjection, after_the_branch)


def test_another_set_built_from_the_replaced_config_is_noted():
    before = recipe(
        setup_data="""
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    if isinstance(cfg_dataset, ListConfig):
        ds = config.instantiate(cfg_dataset[0], self._tokenizer)
    else:
        ds = config.instantiate(cfg_dataset, self._tokenizer)
    cfg_dataset["data_files"] = self._val_files
    self._val = config.instantiate(cfg_dataset, self._tokenizer)
    return DataLoader(ds, batch_size=batch_size)
"""
    )
    line = before.splitlines().index("        self._val = config.instantiate(cfg_dataset, self._tokenizer)") + 1
    (note,) = notes_of(DatasetInjection, before)
    assert note == (
        f"P008 line {line}: `self._val = config.instantiate(cfg_dataset, self._tokenizer)` builds from `cfg_dataset`, the "
        "config node the job's dataset replaces: with a job dataset, it is built from the job dataset's config"
    )


def test_any_other_shape_is_followed_back_from_the_loader_to_the_statements_that_make_its_set():
    before = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    def build(node):
        return config.instantiate(node, self._tokenizer)

    configs = cfg_dataset if isinstance(cfg_dataset, ListConfig) else [cfg_dataset]
    # one set per config
    datasets = [build(c) for c in configs]
    ds = ConcatDataset(datasets)
    return DataLoader(ds, batch_size=batch_size)
"""
    after = method(ported_by(DatasetInjection, recipe(setup_data=before)), "_setup_data")
    assert after == textwrap.dedent("""\
        def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
            def build(node):
                return config.instantiate(node, self._tokenizer)

            if self.dataset:
                ds = self.dataset
            else:
                configs = cfg_dataset if isinstance(cfg_dataset, ListConfig) else [cfg_dataset]
                # one set per config
                datasets = [build(c) for c in configs]
                ds = ConcatDataset(datasets)
            return DataLoader(ds, batch_size=batch_size)
        """)


def test_an_if_on_anything_that_makes_the_set_becomes_the_elif():
    before = SETUP_DATA.replace("if isinstance(cfg_dataset, ListConfig):", 'if "sources" in cfg_dataset:')
    after = method(ported_by(DatasetInjection, recipe(setup_data=before)), "_setup_data")
    assert after.startswith(
        textwrap.dedent("""\
        def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
            if self.dataset:
                ds = self.dataset
            elif "sources" in cfg_dataset:
        """)
    )


def test_what_follows_the_builder_and_changes_the_set_is_noted():
    before = SETUP_DATA.replace("    return DataLoader(", "    ds = Subset(ds, range(8))\n    return DataLoader(")
    notes = notes_of(DatasetInjection, recipe(setup_data=before))
    assert any(
        note.endswith("`ds = Subset(ds, range(8))` changes the set after it is built: it changes the job's dataset too")
        for note in notes
    ), notes
