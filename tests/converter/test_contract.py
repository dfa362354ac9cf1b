"""The runtime contract: declared by name, file or table; chosen by setting or flag; read
off a team's runtime by `porter contract check`; named in every generated header."""

from __future__ import annotations

import pytest

from conftest import run_porter
from runtime.contract import ContractError, GUIDE, load, PORTER, WRAPPED_METHODS, Wrapper

STRICT_RUNTIME = ("guide_runtime.recipes.recipe_base", "guide_runtime.utils")


def test_the_guides_contract_is_the_guides():
    assert dict(GUIDE.imports) == {"Dataset": "torch.utils.data", "RecipeBase": "runtime", "run_recipe": "runtime"}
    assert len(GUIDE.log_step) == 11 and "step_tokens_per_s" not in GUIDE.log_step
    assert GUIDE.log_epoch == ("gpu_rank", "epoch_num", "epoch_len", "epoch_time_elapsed_s")
    assert GUIDE.attributes == {"job_id", "user_id", "cfg", "dataset", "job_logger", "rank"}
    assert GUIDE.save_hook is None and GUIDE.wrappers == ()


def test_runtime_module_renames_only_porters_runtime_module():
    renamed = GUIDE.with_runtime_module("team.runtime")
    assert dict(renamed.imports) == {
        "Dataset": "torch.utils.data",
        "RecipeBase": "team.runtime",
        "run_recipe": "team.runtime",
    }
    assert dict(PORTER.with_runtime_module("team.runtime").imports) == dict.fromkeys(
        ("Dataset", "RecipeBase", "run_recipe"), "team.runtime"
    )


def test_a_contract_file_round_trips_and_a_table_starts_from_the_guide(tmp_path):
    path = tmp_path / "team.toml"
    path.write_text(PORTER.toml())
    assert load(str(path)).table() == PORTER.table()
    team = load(
        {"imports": {"RecipeBase": "team.recipes.recipe_base", "run_recipe": "team.utils"}}, where="pyproject.toml"
    )
    assert dict(team.imports) == {
        "Dataset": "torch.utils.data",
        "RecipeBase": "team.recipes.recipe_base",
        "run_recipe": "team.utils",
    }
    assert team.log_step == GUIDE.log_step and team.save_hook is None


@pytest.mark.parametrize(
    "table, message",
    [
        (
            {"log_step": ["gpu_rank", "step_flops"]},
            "c.toml: log_step: porter has no value for `step_flops` (it can pass gpu_rank, ",
        ),
        (
            {"imports": {"Trainer": "x"}},
            "c.toml: imports.Trainer: generated code imports only Dataset, RecipeBase, run_recipe",
        ),
        (
            {"imports": {"RecipeBase": "not a module"}},
            "c.toml: imports.RecipeBase: 'not a module' is not a module path",
        ),
        ({"save_hook": 3}, "c.toml: save_hook: expected a method name, or false for none, got 3"),
        ({"base": "mine"}, "c.toml: base: expected one of porter, guide, got 'mine'"),
        ({"hooks": []}, "c.toml: hooks: unknown key (known: base, imports, "),
    ],
)
def test_a_bad_contract_is_one_line_naming_the_key(table, message):
    with pytest.raises(ContractError) as error:
        load(table, where="c.toml")
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


def test_convert_with_a_missing_contract_exits_2_with_one_line(tmp_path):
    done = run_porter(
        "convert", "tests/fixtures/recipes/sft_recipe.py", "-o", tmp_path / "out", "--contract", "nosuch.toml"
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "porter: error: --contract: 'nosuch.toml' is neither `porter`, `guide` nor a contract file (nosuch.toml does not exist)"
    ]
    assert not (tmp_path / "out").exists()


def test_the_setting_chooses_the_contract_and_the_header_and_review_name_it(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.porter]\ncontract = "guide"\nruntime_module = "team.runtime"\n')
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "sft_recipe.py").write_text(open("tests/fixtures/recipes/sft_recipe.py").read())
    done = run_porter("convert", "recipes", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    generated = (tmp_path / "out" / "sft_recipe.py").read_text()
    assert "# runtime-contract: guide\n" in generated
    assert "from team.runtime import RecipeBase, run_recipe\n" in generated
    assert "from torch.utils.data import DataLoader, Dataset\n" in generated
    assert "step_tokens_per_s" not in generated and "save_checkpoint_if_due" not in generated
    review = run_porter("diff", "recipes", "--format", "markdown", cwd=tmp_path)
    assert "Generated for the runtime contract `guide`." in review.stdout
    # A flag wins over the setting.
    done = run_porter("convert", "recipes", "-o", "out-porter", "--contract", "porter", cwd=tmp_path)
    assert "# runtime-contract: porter\n" in (tmp_path / "out-porter" / "sft_recipe.py").read_text()


def test_check_reads_a_teams_runtime_and_says_where_it_differs_from_the_guide(tmp_path):
    target = tmp_path / "team.toml"
    done = run_porter("contract", "check", *STRICT_RUNTIME, "-o", target, env={"PYTHONPATH": "tests"})
    assert done.returncode == 0, done.stderr
    contract = load(str(target))
    assert dict(contract.imports) == {
        "Dataset": "torch.utils.data",
        "RecipeBase": STRICT_RUNTIME[0],
        "run_recipe": STRICT_RUNTIME[1],
    }
    assert contract.log_step == GUIDE.log_step and contract.log_epoch == GUIDE.log_epoch
    assert contract.attributes == GUIDE.attributes and contract.save_hook is None
    # Its public wrappers return `self._<method>(*args, **kwargs)`: the recipe's own calls may go through them.
    passing_on = Wrapper(("*args", "**kwargs"), "arguments", returns=True)
    assert contract.wrappers == tuple((method, passing_on) for method in WRAPPED_METHODS)
    differences = [line for line in done.stderr.splitlines() if line.startswith("differs from the guide:")]
    assert differences == [
        "differs from the guide: imports: Dataset from torch.utils.data, RecipeBase from guide_runtime.recipes.recipe_base, "
        "run_recipe from guide_runtime.utils (the guide's: Dataset from torch.utils.data, RecipeBase from runtime, run_recipe from runtime)",
        "differs from the guide: wrappers: load_checkpoint hands `_load_checkpoint` its arguments; setup hands `_setup` "
        "its arguments; train hands `_train` its arguments; save_checkpoint hands `_save_checkpoint` its arguments; "
        "cleanup hands `_cleanup` its arguments (the guide's: none)",
    ]


def test_check_refuses_a_logger_whose_keywords_cannot_be_read(tmp_path):
    (tmp_path / "loose_runtime.py").write_text(
        "class JobLogger:\n"
        "    def log_step(self, **fields): ...\n"
        "    def log_epoch(self, *, gpu_rank, epoch_num, epoch_len, epoch_time_elapsed_s, flops): ...\n"
        "class RecipeBase:\n"
        "    job_logger: JobLogger\n"
        "    def __init__(self, job_id, user_id, cfg, dataset):\n"
        "        self.job_logger = JobLogger()\n"
        "def run_recipe(recipe_class, job_id, user_id, cfg, dataset): ...\n"
    )
    done = run_porter("contract", "check", "loose_runtime", cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("porter: error:")]
    assert errors == [
        "porter: error: JobLogger.log_step(self, **fields) takes **kwargs: which keywords it accepts cannot be read; declare them in a contract file",
        "porter: error: JobLogger.log_epoch requires `flops`, which porter has no value for",
    ]


def test_wrappers_round_trip_through_a_contract_file_and_the_earlier_shorthand_still_reads(tmp_path):
    from dataclasses import replace

    declared = replace(
        GUIDE,
        name="team",
        wrappers=(
            ("load_checkpoint", Wrapper(("cfg_checkpointer",), "self.cfg.checkpointer", returns=True)),
            ("save_checkpoint", Wrapper(("epoch", "/", "step=", "*", "tag="), "arguments", returns=False)),
        ),
    )
    (tmp_path / "team.toml").write_text(declared.toml())
    assert load("team.toml", base=tmp_path).wrappers == declared.wrappers
    (tmp_path / "old.toml").write_text("wrappers_forward_arguments = true\n")
    passing_on = Wrapper(("*args", "**kwargs"), "arguments", returns=True)
    assert load("old.toml", base=tmp_path).wrappers == tuple((method, passing_on) for method in WRAPPED_METHODS)


@pytest.mark.parametrize(
    "table, message",
    [
        (
            "[wrappers.fit]\nparameters = []\npasses = 'arguments'\nreturns = true\n",
            "wrappers.fit: not an interface method",
        ),
        (
            "[wrappers.train]\nparameters = []\npasses = 'self.config'\nreturns = true\n",
            "wrappers.train.passes: expected",
        ),
        ("[wrappers.train]\nparameters = []\n", "wrappers.train: expected the keys parameters, passes and returns"),
        (
            "[wrappers.train]\nparameters = ['a=', 'b']\npasses = 'arguments'\nreturns = true\n",
            "wrappers.train.parameters: expected the parameters after `self` as Python orders them",
        ),
    ],
)
def test_a_bad_wrapper_is_one_line_naming_its_key(tmp_path, table, message):
    (tmp_path / "team.toml").write_text(table)
    with pytest.raises(ContractError, match=message) as error:
        load("team.toml", base=tmp_path)
    assert "\n" not in str(error.value)


def test_check_says_which_methods_a_runtime_declares_abstract_in_one_line(tmp_path):
    (tmp_path / "abstract_runtime.py").write_text(
        "import abc\n"
        "class JobLogger:\n"
        "    def log_step(self, *, gpu_rank, step_num): ...\n"
        "    def log_epoch(self, *, gpu_rank, epoch_num): ...\n"
        "class RecipeBase(abc.ABC):\n"
        "    def __init__(self, job_id, user_id, cfg, dataset, job_logger: JobLogger):\n"
        "        self.job_logger = job_logger\n"
        "    @abc.abstractmethod\n"
        "    def _setup(self, cfg): ...\n"
        "    @abc.abstractmethod\n"
        "    def _load_checkpoint(self, cfg_checkpointer): ...\n"
        "def run_recipe(recipe_class, job_id, user_id, cfg, dataset): ...\n"
    )
    done = run_porter("contract", "check", "abstract_runtime", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "declares abstract" in line] == [
        "read: RecipeBase declares abstract: `_load_checkpoint`, `_setup`; a port defines only the methods its recipe "
        "has, and one that lacks any of these cannot be built on this runtime"
    ]
    assert "read: job logger: abstract_runtime.JobLogger (`__init__`'s parameter `job_logger`)" in done.stderr
