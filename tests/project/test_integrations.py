"""porter where teams already work: GitHub Actions, pre-commit, libcst's codemod command,
and a command line that behaves on a terminal and in a pipe."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import FIXTURES, on_terminal, REPO, run_porter, torchtune_wheel
from porter.rules import RULES

COMMANDS = ["convert", "list", "diff", "overlay", "run", "demo"]


def test_the_workflow_runs_the_tests_the_check_and_publishes_the_review():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    triggers = workflow[True]  # YAML reads the key `on` as true
    assert "pull_request" in triggers and "push" in triggers
    (job,) = workflow["jobs"].values()
    steps = job["steps"]
    runs = [step.get("run", "") for step in steps]
    uses = [step.get("uses", "") for step in steps]
    assert any(use.startswith("actions/checkout@") for use in uses)
    (python,) = [step for step in steps if step.get("uses", "").startswith("actions/setup-python@")]
    assert python["with"]["python-version"].split() == ["3.10", "3.11"]  # 3.11 the default; 3.10 for its test
    assert "bash .ci/run" in runs  # the same test command as the README's
    check = runs.index("porter convert --installed --check")
    assert runs.index("porter convert --installed") < check
    summary = next(step for step in steps if "$GITHUB_STEP_SUMMARY" in step.get("run", ""))
    assert summary["run"] == 'porter diff --installed --format markdown >> "$GITHUB_STEP_SUMMARY"'
    assert summary["if"] == "always()"  # the review is published when the check fails too


@pytest.mark.slow
def test_the_pre_commit_hook_fails_a_commit_with_stale_generated_recipes(tmp_path):
    """The hook runs in its own environment (`language: python`), which has no torch: the
    team's forks are a folder, upstream's recipes a torchtune wheel the repository keeps."""
    if not (REPO / ".git").exists():
        pytest.skip("pre-commit try-repo needs porter's git repository")
    repo = tmp_path / "team"
    (repo / "recipes").mkdir(parents=True)
    shutil.copy(FIXTURES / "recipes" / "sft_recipe.py", repo / "recipes")
    wheel = torchtune_wheel("0.5.0")
    shutil.copy(wheel, repo)
    (repo / "pyproject.toml").write_text(f'[tool.porter]\nsource = ["recipes", "{wheel.name}"]\noutput = "generated"\n')
    # The hook's environment installs no torch: one that asked for any would fail to resolve.
    (tmp_path / "no-torch.txt").write_text("torch==0.0.0\ntorchtune==0.0.0\ntorchao==0.0.0\n")
    env = {
        **os.environ,
        "PIP_CONSTRAINT": str(tmp_path / "no-torch.txt"),
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }

    def git(*args):
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    def hook():
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), "porter-check", "--all-files"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    git("init", "-q")
    assert run_porter("convert", cwd=repo).returncode == 0
    git("add", ".")
    git("commit", "-qm", "recipes and their ports")
    fresh = hook()
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    assert "porter convert --check" in fresh.stdout and "Passed" in fresh.stdout

    recipe = repo / "recipes" / "sft_recipe.py"
    recipe.write_text(recipe.read_text().replace("Trains a model", "Trains a tiny model"))
    git("add", ".")
    stale = hook()
    assert stale.returncode == 1
    assert "Failed" in stale.stdout
    assert "pending    recipes/sft_recipe.py -> generated/sft_recipe.py" in stale.stdout


def test_each_rule_runs_as_a_libcst_codemod(tmp_path):
    recipe = tmp_path / "recipe.py"
    original = (FIXTURES / "recipes" / "sft_recipe.py").read_text()
    recipe.write_text(original)
    done = subprocess.run(
        [sys.executable, "-m", "libcst.tool", "codemod", "main_block.MainBlock", str(recipe)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Transformed 1 files successfully" in done.stderr
    # The block goes, and `sys`, which only the block used.
    assert (
        recipe.read_text()
        == original[: original.index('\n\n\nif __name__ == "__main__":')].replace("import sys\n", "") + "\n"
    )
    listed = subprocess.run([sys.executable, "-m", "libcst.tool", "list"], cwd=REPO, capture_output=True, text=True)
    for rule in RULES:
        assert f".{rule.__name__} - {rule.DESCRIPTION}" in listed.stdout


def test_a_rule_run_as_a_codemod_takes_the_runtime_module(tmp_path):
    recipe = tmp_path / "recipe.py"
    recipe.write_text((FIXTURES / "recipes" / "sft_recipe.py").read_text())
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "libcst.tool",
            "codemod",
            "recipe_main.RecipeMain",
            "--runtime-module",
            "my.rt",
            str(recipe),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "from my.rt import Dataset, run_recipe\n" in recipe.read_text()


# -- the command line on a terminal and in a pipe -------------------------------------------


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command):
    done = run_porter(command, "--help")
    assert done.returncode == 0
    assert "Examples:\n" in done.stdout and f"porter {command}" in done.stdout


def test_a_terminal_gets_colour_and_progress(tmp_path):
    code, output = on_terminal("convert", FIXTURES / "recipes", "-o", tmp_path / "out", cwd=tmp_path)
    assert code == 0
    assert "\x1b[32m" in output  # converted, in green
    assert "converting" in output  # the progress bar's label


def test_no_color_turns_colour_off_on_a_terminal(tmp_path):
    code, output = on_terminal(
        "convert", FIXTURES / "recipes", "-o", tmp_path / "out", env={"NO_COLOR": "1"}, cwd=tmp_path
    )
    assert code == 0
    assert "\x1b[3" not in output and "converted" in output


@pytest.mark.parametrize(
    "args",
    [
        ["convert", FIXTURES / "recipes", "-o", "out"],
        ["list", FIXTURES / "recipes"],
        ["diff", FIXTURES / "recipes"],
        ["convert", "no/such/file", "-o", "out"],
    ],
)
def test_piped_output_has_no_colour_and_no_progress(args, tmp_path):
    done = run_porter(*args, cwd=tmp_path)
    # The command ran and said what it does: what is absent below is absent from real output.
    assert "Traceback" not in done.stderr
    said = done.stdout + done.stderr
    assert (
        ("no/such/file" in said and done.returncode == 2)
        if "no/such/file" in args
        else (done.returncode == 0 and "sft_recipe.py" in said)
    )
    assert "\x1b[" not in done.stdout + done.stderr
    assert "converting" not in done.stderr and "reading" not in done.stderr
