"""[tool.porter] in pyproject.toml: defaults for every command, overridden by flags."""

from __future__ import annotations

import shutil

import pytest

from conftest import FIXTURES, run_porter

SETTINGS = """\
[tool.porter]
source = ["recipes"]
output = "gen"
runtime-module = "my_platform.runtime"
skip_rules = ["P008"]
overlays = "patches"
"""


@pytest.fixture
def project(tmp_path):
    (tmp_path / "recipes").mkdir()
    shutil.copy(FIXTURES / "recipes" / "sft_recipe.py", tmp_path / "recipes")
    (tmp_path / "pyproject.toml").write_text(SETTINGS)
    return tmp_path


def test_convert_takes_sources_output_runtime_and_rules_from_the_settings(project):
    done = run_porter("convert", cwd=project)
    assert done.returncode == 0, done.stderr
    text = (project / "gen" / "sft_recipe.py").read_text()
    assert "from my_platform.runtime import Dataset, RecipeBase, run_recipe\n" in text
    assert "self.dataset" not in text  # P008 skipped
    assert "class TinyRecipe(RecipeBase):" in text


def test_settings_apply_from_a_subfolder_with_paths_relative_to_pyproject(project):
    (project / "sub").mkdir()
    done = run_porter("convert", cwd=project / "sub")
    assert done.returncode == 0, done.stderr
    assert (project / "gen" / "sft_recipe.py").is_file()
    assert not (project / "sub" / "gen").exists()


def test_flags_override_the_settings(project):
    done = run_porter("convert", "-o", "elsewhere", "--runtime-module", "other.rt", cwd=project)
    assert done.returncode == 0, done.stderr
    text = (project / "elsewhere" / "sft_recipe.py").read_text()
    assert "from other.rt import Dataset, RecipeBase, run_recipe\n" in text
    assert "self.dataset" not in text  # the setting's skip_rules still apply
    assert not (project / "gen").exists()
    # --skip-rule replaces the setting's list: P008 applies again, P006 does not.
    done = run_porter("convert", "-o", "mine", "--skip-rule", "P006", cwd=project)
    assert done.returncode == 0, done.stderr
    text = (project / "mine" / "sft_recipe.py").read_text()
    assert "self.dataset" in text
    assert "log_step" not in text


def test_list_and_diff_read_the_same_settings(project):
    listed = run_porter("list", cwd=project)
    assert listed.returncode == 0
    assert listed.stdout.startswith("in scope  recipes/sft_recipe.py  sft")
    reviewed = run_porter("diff", cwd=project)
    assert reviewed.returncode == 0
    assert "+from my_platform.runtime import Dataset, RecipeBase, run_recipe\n" in reviewed.stdout


def test_overlays_come_from_the_settings_folder(project):
    assert run_porter("convert", cwd=project).returncode == 0
    generated = project / "gen" / "sft_recipe.py"
    generated.write_text(generated.read_text().replace('"""The training loop."""', '"""Ours."""'))
    saved = run_porter("overlay", "sft_recipe", cwd=project)
    assert saved.returncode == 0, saved.stderr
    assert (project / "patches" / "sft_recipe.patch").is_file()
    assert run_porter("convert", "--check", cwd=project).returncode == 0
    plain = run_porter("convert", "--check", "--no-overlays", cwd=project)
    assert plain.returncode == 1  # without the overlay, the output would change
    (project / "patches").rename(project / "ours")
    assert run_porter("convert", "--check", cwd=project).returncode == 1
    assert run_porter("convert", "--check", "--overlays", "ours", cwd=project).returncode == 0


@pytest.mark.parametrize(
    "table, message",
    [
        (
            'sourc = ["recipes"]',
            "pyproject.toml: [tool.porter] sourc: unknown setting (known: assisted, contract, output, overlays, runtime_module, skip_rules, source)",
        ),
        (
            'skip_rules = ["P999"]',
            "pyproject.toml: [tool.porter] skip_rules: 'P999' is not a rule id (P001, P002, P003, P004, P005, P006, P008)",
        ),
        (
            'skip_rules = ["P009"]',
            "pyproject.toml: [tool.porter] skip_rules: 'P009' is not a rule id any more: P009 imports is no rule any more: each rule adds the imports it needs",
        ),
        (
            'skip_rules = ["P001"]',
            "pyproject.toml: [tool.porter] skip_rules: P001: P002 recipe-main needs P001 recipe-class: run_recipe builds RecipeBase subclasses only; skip ",
        ),
        (
            'runtime_module = "a-b"',
            "pyproject.toml: [tool.porter] runtime_module: 'a-b' is not a module path like my_platform.runtime",
        ),
        ("source = 3", "pyproject.toml: [tool.porter] source: expected a list of strings"),
        ("output = 3", "pyproject.toml: [tool.porter] output: expected a folder path"),
        ("source = [", "pyproject.toml: cannot read settings: "),
    ],
)
@pytest.mark.parametrize("command", ["convert", "list", "diff"])
def test_a_bad_setting_exits_2_with_one_line_naming_it(table, message, command, tmp_path):
    (tmp_path / "pyproject.toml").write_text(f"[tool.porter]\n{table}\n")
    done = run_porter(command, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"porter: error: {message}")
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "flag, message",
    [
        (["--skip-rule", "P999"], "--skip-rule: 'P999' is not a rule id"),
        (
            ["--skip-rule", "P003"],
            "--skip-rule: P003: P002 recipe-main needs P003 main-block: the `__main__` block would call recipe_main without the job's arguments",
        ),
        (["--runtime-module", "not a module"], "--runtime-module: 'not a module' is not a module path"),
    ],
)
def test_a_bad_flag_exits_2_with_one_line(flag, message, project):
    done = run_porter("convert", *flag, cwd=project)
    assert done.returncode == 2
    assert done.stderr.startswith(f"porter: error: {message}")
    assert not (project / "gen").exists()


def test_a_flag_given_on_the_command_line_beats_the_configs_porter_section_and_a_default_does_not():
    from omegaconf import OmegaConf

    from porter.running import porter_section

    flags = {"output_root": "runs", "save_every_n_epochs": 2, "heartbeat_s": 30.0}
    config = OmegaConf.create({"save_every_n_epochs": 3, "heartbeat_s": 5.0, "report": False})
    merged = porter_section(flags, {"save_every_n_epochs"}, config)
    assert merged == {"output_root": "runs", "save_every_n_epochs": 2, "heartbeat_s": 5.0, "report": False}
    assert porter_section(flags, set(), None) == flags
