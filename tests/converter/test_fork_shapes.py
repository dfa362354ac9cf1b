"""The shapes of teams' forks (tests/helpers/fork_shapes.py): each one ports, with a reviewer note
where behaviour moves, or ports with explicit holes (partial), or is refused naming the
rule and the line, or skipped saying what it is; never a crash, never a silent change."""

from __future__ import annotations

import ast
import re
from collections import Counter

import pytest
from pyflakes.checker import Checker

from conftest import run_porter
from helpers.fork_shapes import FORK_SHAPES
from porter.pipeline import port


def findings(code: str) -> Counter:
    return Counter((type(m).__name__, m.message_args[0]) for m in Checker(ast.parse(code)).messages if m.message_args)


@pytest.mark.parametrize("name", FORK_SHAPES)
def test_each_fork_shape_is_ported_with_its_notes_refused_or_skipped_saying_why(name):
    shape = FORK_SHAPES[name]
    result = port(shape.source)
    assert result.status == shape.status, result.reason
    if result.status == "partial":  # an assisted port: written, with its hole marked and guarded
        compile(result.code, name, "exec")
        assert "class ForkRecipe(RecipeBase):" in result.code and "# TODO(porter P" in result.code
        assert any(shape.expect in f"{h['rule']} {h['message']}" for h in result.holes), result.holes
        return
    if result.status == "converted":
        compile(result.code, name, "exec")
        assert not findings(result.code) - findings(shape.source)
        assert "class ForkRecipe(RecipeBase):" in result.code
        assert any(shape.expect in str(note) for note in result.notes), result.notes
        return
    assert "\n" not in result.reason and shape.expect in result.reason
    if result.status == "failed":
        assert re.match(r"line \d+: P\d{3}", result.reason), result.reason


def test_convert_of_a_folder_of_forks_converts_the_good_and_refuses_the_rest_in_one_line_each(tmp_path):
    folder = tmp_path / "forks"
    folder.mkdir()
    for name, shape in FORK_SHAPES.items():
        (folder / name).write_text(shape.source)
    out = tmp_path / "out"
    done = run_porter("convert", folder, "-o", out)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    for name, shape in FORK_SHAPES.items():
        (line,) = [line for line in done.stderr.splitlines() if f"/{name}" in line]
        assert line.startswith(shape.status)
        assert (out / name).exists() == (shape.status in ("converted", "partial")), name
        if shape.status == "failed":
            assert re.search(rf"{name}: line \d+: P\d{{3}}", line), line
