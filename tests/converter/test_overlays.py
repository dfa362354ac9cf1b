"""Overlays: a team's edits to generated recipes as patches, applied whole or not at all."""

from __future__ import annotations

import shutil
from pathlib import PurePosixPath

import pytest

from conftest import FIXTURES, run_porter
from porter.overlays import apply, make_patch, OverlayError

TEXT = "".join(f"line {n}\n" for n in range(1, 31))


def edited(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


def test_a_patch_turns_the_output_into_the_edited_one():
    mine = edited(edited(TEXT, "line 5\n", "line five\n"), "line 25\n", "line 25\nmore\n")
    patch = make_patch(TEXT, mine, PurePosixPath("r.py"))
    assert apply(TEXT, patch, "r.patch") == mine


def test_hunks_still_apply_when_upstream_moved_their_lines():
    mine = edited(TEXT, "line 20\n", "line twenty\n")
    patch = make_patch(TEXT, mine, PurePosixPath("r.py"))
    moved = "new first line\nanother\n" + TEXT
    assert apply(moved, patch, "r.patch") == "new first line\nanother\n" + mine


def test_a_hunk_whose_lines_changed_upstream_is_a_conflict_and_nothing_is_applied():
    mine = edited(edited(TEXT, "line 5\n", "line five\n"), "line 25\n", "line twenty-five\n")
    patch = make_patch(TEXT, mine, PurePosixPath("r.py"))
    upstream = edited(TEXT, "line 24\n", "line 24 changed upstream\n")
    with pytest.raises(OverlayError) as raised:
        apply(upstream, patch, "r.patch")
    assert str(raised.value).startswith("r.patch: hunk 2 (-22,7 +22,7) does not apply")
    assert "+line twenty-five" in raised.value.hunk and "line five" not in raised.value.hunk


def test_a_file_without_a_final_newline_round_trips():
    mine = TEXT + "tail without newline"
    patch = "".join(
        line if not line.startswith("+tail") else line + "\\ No newline at end of file\n"
        for line in make_patch(TEXT, mine + "\n", PurePosixPath("r.py")).splitlines(keepends=True)
    )
    assert apply(TEXT, patch, "r.patch") == mine


@pytest.mark.parametrize(
    "patch, message",
    [
        ("", "r.patch: no hunks"),
        ("hello\n", "r.patch: line 1: not a unified diff"),
        ("--- a\n+++ b\n@@ nonsense @@\n", "r.patch: line 3: expected a hunk header"),
        ("--- a\n+++ b\n@@ -1,3 +1,3 @@\n line 1\n", "r.patch: line 3: hunk is shorter than its header says"),
        ("--- a\n+++ b\n@@ -1,2 +1,2 @@\n line 1\n?line 2\n", "r.patch: line 5: unexpected line in a hunk"),
    ],
)
def test_a_malformed_patch_is_refused_with_its_line(patch, message):
    with pytest.raises(OverlayError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        apply(TEXT, patch, "r.patch")


# -- the round trip, as a team runs it ------------------------------------------------------


@pytest.fixture
def project(tmp_path):
    """A repository that generates recipes from its own sources, with [tool.porter]."""
    (tmp_path / "recipes").mkdir()
    shutil.copy(FIXTURES / "recipes" / "sft_recipe.py", tmp_path / "recipes")
    (tmp_path / "pyproject.toml").write_text('[tool.porter]\nsource = ["recipes"]\noutput = "generated"\n')
    done = run_porter("convert", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return tmp_path


def porter(project, *args):
    return run_porter(*args, cwd=project)


def replace_in(path, old, new):
    path.write_text(edited(path.read_text(), old, new))


def test_overlay_round_trip_apply_conflict_resolve(project):
    generated = project / "generated" / "sft_recipe.py"
    source = project / "recipes" / "sft_recipe.py"
    # A team's edit, kept as an overlay.
    replace_in(generated, '"""The training loop."""', '"""The training loop (our tuning)."""')
    saved = porter(project, "overlay", "sft_recipe")
    assert saved.returncode == 0, saved.stderr
    assert saved.stderr.strip() == "porter: saved overlays/sft_recipe.patch (1 hunk)"
    patch = (project / "overlays" / "sft_recipe.patch").read_text()
    assert '+        """The training loop (our tuning)."""' in patch
    assert "# overlay: sft_recipe.patch\n" in generated.read_text()
    assert porter(project, "convert", "--check").returncode == 0

    # Applied again after an upstream change elsewhere in the file.
    replace_in(source, "Trains a model", "Trains a small model")
    assert porter(project, "convert").returncode == 0
    text = generated.read_text()
    assert "Trains a small model" in text and "(our tuning)" in text

    # A conflict: upstream changed the lines the overlay edits.
    replace_in(source, '"""The training loop."""', '"""The loop, upstream\'s new words."""')
    before = generated.read_bytes()
    check = porter(project, "convert", "--check")
    assert check.returncode == 2
    conflict = porter(project, "convert")
    assert conflict.returncode == 2
    assert "failed     recipes/sft_recipe.py: overlays/sft_recipe.patch: hunk 1 (-" in conflict.stderr
    assert '+        """The training loop (our tuning)."""' in conflict.stderr  # the hunk
    assert generated.read_bytes() == before  # never applied half-way
    assert "Traceback" not in conflict.stderr

    # Resolve: the plain port, the edit made again, the overlay saved afresh.
    plain = porter(project, "convert", "--no-overlays")
    assert plain.returncode == 0, plain.stderr
    assert "upstream's new words" in generated.read_text()
    replace_in(
        generated, '"""The loop, upstream\'s new words."""', '"""The loop, upstream\'s new words (our tuning)."""'
    )
    assert porter(project, "overlay", "sft_recipe").returncode == 0
    again = porter(project, "convert")
    assert again.returncode == 0 and "0 converted, 1 unchanged" in again.stderr
    assert porter(project, "convert", "--check").returncode == 0
    assert "(our tuning)" in generated.read_text()


def test_an_edit_without_an_overlay_is_refused_and_points_at_porter_overlay(project):
    generated = project / "generated" / "sft_recipe.py"
    replace_in(generated, '"""The training loop."""', '"""Ours."""')
    refused = porter(project, "convert")
    assert refused.returncode == 2
    assert "`porter overlay sft_recipe` keeps the edits as an overlay" in refused.stderr


def test_an_overlay_that_breaks_the_recipe_is_refused(project):
    overlays = project / "overlays"
    overlays.mkdir()
    generated = (project / "generated" / "sft_recipe.py").read_text()
    from porter.outputs import split_header

    body = split_header(generated)
    broken = edited(body, "    def _train(self) -> None:\n", "    def _train(self) -> None\n")
    (overlays / "sft_recipe.patch").write_text(make_patch(body, broken, PurePosixPath("sft_recipe.py")))
    done = porter(project, "convert")
    assert done.returncode == 2
    assert "overlays/sft_recipe.patch: the patched recipe does not compile: line" in done.stderr


def test_overlay_of_an_unknown_recipe_or_a_missing_output_exits_2(project):
    unknown = porter(project, "overlay", "no_such_recipe")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "porter: error: no_such_recipe: no source generates no_such_recipe.py"
    (project / "generated" / "sft_recipe.py").unlink()
    missing = porter(project, "overlay", "sft_recipe")
    assert missing.returncode == 2
    assert "no generated recipe to take edits from; run `porter convert` first" in missing.stderr
    assert not (project / "overlays").exists()


def test_edits_that_do_not_compile_are_not_saved_as_an_overlay(project):
    generated = project / "generated" / "sft_recipe.py"
    replace_in(generated, "    def _train(self) -> None:\n", "    def _train(self) -> None\n")
    done = porter(project, "overlay", "sft_recipe")
    assert done.returncode == 2
    assert done.stderr.startswith(f"porter: error: {generated.relative_to(project)}: line ")
    assert "fix it before saving an overlay" in done.stderr
    assert not (project / "overlays").exists()
