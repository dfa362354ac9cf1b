"""`porter diff`: reviews of a port and of a torchtune upgrade, unified or markdown."""

from __future__ import annotations

import shutil

import pytest

from conftest import FIXTURES, GOLDEN, run_porter, torchtune_wheel


def test_markdown_review_of_the_fixtures_matches_golden(golden):
    done = run_porter("diff", "tests/fixtures/recipes", "--format", "markdown", "--no-overlays")
    assert done.returncode == 0, done.stderr
    golden.check(GOLDEN / "review" / "fixtures.md", done.stdout)
    assert done.stderr.strip() == "porter: 5 recipe diffs, 0 failed, 0 skipped"


def test_markdown_review_has_rules_counts_follow_ups_and_a_folded_diff():
    done = run_porter("diff", FIXTURES / "recipes" / "main_recipe.py", "--format", "markdown")
    text = done.stdout
    assert "| `main_recipe.py` | converted | +45 −36 | 0 | 5 |" in text
    assert "Rules applied: P001 recipe-class, P002 recipe-main" in text
    assert (
        "- [ ] P004 line 100: the save every N steps (`self.save_checkpoint(...)`) is now the runtime's step hook, in its place"
        in text
    )
    assert (
        "- [ ] P004 line 115: the final save after the loop (`self.save_checkpoint(...)`), with its timing and log lines, goes"
        in text
    )
    assert "- [ ] P008 line 51: `_setup_data` also builds another set (validation)" in text
    assert "<details><summary>diff: +45 −36</summary>\n\n```diff\n--- upstream/recipes/main_recipe.py\n" in text
    assert text.rstrip().endswith("```\n\n</details>")


def test_unified_review_is_the_plain_diff_of_several_recipes():
    done = run_porter("diff", FIXTURES / "recipes" / "sft_recipe.py", FIXTURES / "recipes" / "rl_recipe.py")
    assert done.returncode == 0
    headers = [line for line in done.stdout.splitlines() if line.startswith("+++ ")]
    assert headers == ["+++ generated/sft_recipe.py", "+++ generated/rl_recipe.py"]


def test_review_of_every_installed_recipe_lists_the_skipped_files():
    done = run_porter("diff", "--installed", "--format", "markdown")
    assert done.returncode == 0, done.stderr
    assert "| `full_finetune_distributed.py` | converted |" in done.stdout
    assert "Skipped: " in done.stdout and "`generate.py` (not a training recipe" in done.stdout
    assert done.stderr.strip().endswith("15 recipe diffs, 0 failed, 6 skipped")


def test_a_failing_recipe_is_reported_and_exits_2(tmp_path):
    (tmp_path / "broken.py").write_text("def f(:\n")
    done = run_porter("diff", tmp_path / "broken.py", FIXTURES / "recipes" / "sft_recipe.py")
    assert done.returncode == 2
    assert "+++ generated/sft_recipe.py" in done.stdout
    assert f"failed {tmp_path / 'broken.py'}: line 1: syntax error" in done.stderr


# -- upgrades ------------------------------------------------------------------------------


@pytest.fixture
def upgrade(tmp_path):
    """Two versions of a recipes folder: sft_recipe changes, mix_recipe goes, rl_recipe comes."""
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    for name in ("sft_recipe.py", "mix_recipe.py"):
        shutil.copy(FIXTURES / "recipes" / name, old / name)
    for name in ("sft_recipe.py", "rl_recipe.py"):
        shutil.copy(FIXTURES / "recipes" / name, new / name)
    recipe = new / "sft_recipe.py"
    text = recipe.read_text()
    for before, after in [
        # a change away from anything the port rewrites: not flagged
        ("                loss.backward()\n", "                (loss * 1.0).backward()\n"),
        # the anchor the step event is inserted after
        ("log_dict(log_dict, step=self.global_step)", "log_dict(log_dict, step=self.global_step + 1)"),
        # a new save, which the runtime may need to own
        (
            "    def cleanup(self) -> None:\n",
            "    def cleanup(self) -> None:\n        self._checkpointer.save_checkpoint({}, epoch=-1)\n",
        ),
    ]:
        assert before in text
        text = text.replace(before, after)
    recipe.write_text(text)
    return old, new


def test_upgrade_review_flags_changes_to_ported_code_first(upgrade, tmp_path):
    old, new = upgrade
    done = run_porter("diff", "--between", old, new, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    flags = [line for line in done.stderr.splitlines() if line.startswith("look first")]
    assert flags == [
        "look first mix_recipe.py: removed upstream: its generated recipe goes",
        "look first rl_recipe.py: new upstream recipe: review its whole port",
        "look first sft_recipe.py: upstream line 77 (new line 77, in `TinyRecipe.train`) changed code the port rewrites",
        "look first sft_recipe.py: upstream after line 92 (new line 93, in `TinyRecipe.cleanup`) changed code the port rewrites",
        "look first sft_recipe.py: new checkpoint or logging call `self._checkpointer.save_checkpoint(...)` in `TinyRecipe.cleanup` (new line 93)",
    ]
    # the generated recipe's own diff, old port to new port
    assert "--- unknown/sft_recipe.py\n+++ unknown/sft_recipe.py\n" in done.stdout
    assert "-                loss.backward()\n+                (loss * 1.0).backward()\n" in done.stdout
    assert done.stderr.strip().endswith("porter: 2 recipe diffs, 0 failed, 0 skipped, 1 removed upstream")


def test_upgrade_review_in_markdown_puts_the_flags_before_the_diff(upgrade, tmp_path):
    old, new = upgrade
    done = run_porter("diff", "--between", old, new, "sft_recipe", "--format", "markdown", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith(f"## porter: upgrade {old} -> {new}\n")
    assert "| `sft_recipe.py` | converted | +6 −5 | 3 | 2 |" in text
    assert text.index("Look here first:") < text.index("<details>")
    assert "rl_recipe" not in text and "mix_recipe" not in text  # only the recipe asked for


def test_upgrade_from_the_0_5_0_wheel_to_the_installed_torchtune(tmp_path):
    wheel = torchtune_wheel("0.5.0")
    done = run_porter("diff", "--between", wheel, "installed", "--format", "markdown", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    # 0.6.1's full_finetune_distributed saves through a checkpoint client
    section = text[text.index("### `full_finetune_distributed.py`") :]
    section = section[: section.index("<details>")]
    assert (
        "new checkpoint or logging call `CheckpointClient(...)` in `FullFinetuneRecipeDistributed.__init__`" in section
    )
    assert "in `FullFinetuneRecipeDistributed.train`) changed code the port rewrites" in section
    assert "| `dev/grpo_full_finetune_distributed.py` | converted |" in text
    assert "- new upstream recipe: review its whole port" in text
    assert "--- 0.5.0/lora_finetune_single_device.py\n+++ 0.6.1/lora_finetune_single_device.py\n" in text


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no/such/place", "no/such/place: not 'installed', a folder of recipes, nor a torchtune .whl file"),
        ("missing.whl", "missing.whl: no such file"),
    ],
)
def test_an_upgrade_side_that_is_no_source_exits_2_with_one_line(spec, message, tmp_path):
    done = run_porter("diff", "--between", spec, "installed", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == f"porter: error: {message}"


def test_a_file_that_is_no_wheel_exits_2(tmp_path):
    (tmp_path / "fake.whl").write_text("not a zip")
    done = run_porter("diff", "--between", "fake.whl", "installed", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "porter: error: fake.whl: cannot read the wheel: File is not a zip file"


def test_upgrade_review_applies_the_team_overlay_to_both_sides(upgrade, tmp_path):
    old, new = upgrade
    assert run_porter("convert", old, "-o", "gen", cwd=tmp_path).returncode == 0
    generated = tmp_path / "gen" / "sft_recipe.py"
    generated.write_text(generated.read_text().replace('"""The training loop."""', '"""The training loop (ours)."""'))
    assert run_porter("overlay", "sft_recipe", old, "-o", "gen", cwd=tmp_path).returncode == 0
    done = run_porter("diff", "--between", old, new, "sft_recipe", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    changed = [line for line in done.stdout.splitlines() if line[:1] in "+-" and "(ours)" in line]
    assert changed == []  # the team's edit is on both sides: not an upgrade change
    assert "+                (loss * 1.0).backward()" in done.stdout


def test_a_recipe_that_no_longer_ports_after_the_upgrade_is_flagged_and_exits_2(upgrade, tmp_path):
    old, new = upgrade
    recipe = new / "sft_recipe.py"
    recipe.write_text(recipe.read_text().replace("            self.epochs_run += 1\n", ""))
    done = run_porter("diff", "--between", old, new, "sft_recipe", cwd=tmp_path)
    assert done.returncode == 2
    assert "look first sft_recipe.py: was converted, now failed: line " in done.stderr
    assert "P004, P005 expected one `self.epochs_run += 1`" in done.stderr
    assert done.stdout == ""  # no diff against a port that does not exist
