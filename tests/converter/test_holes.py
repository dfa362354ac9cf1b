"""Assisted ports: a step porter cannot port safely is an explicit hole, not a refusal of
the whole file. The hole is marked where the step goes (`# TODO(porter P00N): ...`),
fails loudly on the path it affects only, is listed in the header, the JSON report and
the review, keeps `porter convert` (and `--check`) at exit 1 until a person fills it,
and an overlay that fills it makes the file converted."""

from __future__ import annotations

import importlib.util
import json
import textwrap
from types import SimpleNamespace

import pytest

from conftest import run_porter
from porter.pipeline import port
from porter.settings import Settings
from helpers.shapes import method, recipe

# A `_setup_data` whose dataset porter cannot follow: the loader is made by a helper.
UNREADABLE = """
def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
    \"\"\"The training loader.\"\"\"
    return self._loader_of(cfg_dataset, batch_size)
"""
FORK = recipe(
    setup_data=UNREADABLE,
    extra_methods=(
        "def _loader_of(self, cfg_dataset, batch_size):\n"
        "    return DataLoader(config.instantiate(cfg_dataset, self._tokenizer), batch_size=batch_size)\n"
    ),
)
LINE = FORK.splitlines().index("    def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:") + 1
MESSAGE = (
    "expected, directly in `_setup_data`, one `if isinstance(<dataset config>, ListConfig):`, or one "
    "`ds = config.instantiate(<dataset config>, ...)`, or a loop over the dataset configs filling a `datasets` and a "
    "`weights` dict (a mix), or a set handed to a data loader or sampler that a statement of it binds, found 0 "
    "ListConfig branches"
)
TODO = (
    "make `_setup_data` use the job's dataset (`self.dataset`) in place of the one the config builds, delete this "
    "guard, and keep the edit with `porter overlay`"
)


def test_the_hole_is_marked_where_the_step_goes_and_guards_only_the_path_it_affects():
    result = port(FORK)
    assert result.status == "partial"
    assert result.holes == [{"rule": "P008", "line": LINE, "message": MESSAGE, "todo": TODO}]
    assert method(result.code, "_setup_data") == textwrap.dedent(f'''\
        def _setup_data(self, cfg_dataset: DictConfig, batch_size: int) -> DataLoader:
            """The training loader."""
            if self.dataset:
                # TODO(porter P008): {TODO}
                raise NotImplementedError(
                    "porter P008 (source line {LINE}): {MESSAGE}; {TODO}"
                )
            return self._loader_of(cfg_dataset, batch_size)
        ''')
    # Every other step is ported as in a full port.
    assert "class ForkRecipe(RecipeBase):" in result.code and "self.job_logger.log_step(" in result.code


def test_the_guard_raises_only_when_a_job_brings_a_dataset(tmp_path):
    path = tmp_path / "ported.py"
    path.write_text(port(FORK).code)
    spec = importlib.util.spec_from_file_location("assisted_port", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setup_data = module.ForkRecipe._setup_data
    without = SimpleNamespace(dataset=None, _loader_of=lambda cfg, batch_size: ("loader", cfg, batch_size))
    assert setup_data(without, "cfg", 4) == ("loader", "cfg", 4)
    with pytest.raises(NotImplementedError, match=rf"^porter P008 \(source line {LINE}\): expected, directly"):
        setup_data(SimpleNamespace(dataset=["a job's record"]), "cfg", 4)


def test_without_assisted_ports_the_file_is_refused_with_the_rule_and_line():
    result = port(FORK, Settings(assisted=False))
    assert result.status == "failed" and result.reason == f"line {LINE}: P008 {MESSAGE}"


def test_convert_writes_an_assisted_port_says_so_and_exits_1_until_an_overlay_fills_the_hole(tmp_path):
    (tmp_path / "fork.py").write_text(FORK)
    done = run_porter("convert", "fork.py", "-o", "out", "--report", "json", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    (report,) = json.loads(done.stdout)["files"]
    assert report["status"] == "partial" and report["holes"][0]["rule"] == "P008" and report["holes"][0]["line"] == LINE
    assert done.stderr.strip().endswith("porter: 0 converted, 0 unchanged, 0 skipped, 0 failed, 1 partial")
    generated = (tmp_path / "out" / "fork.py").read_text()
    assert f"# hole: P008 line {LINE}: {MESSAGE}\n" in generated.split("# body-sha256:")[0]
    # Written again unchanged, the hole is still open: still 1, and so is --check.
    assert run_porter("convert", "fork.py", "-o", "out", cwd=tmp_path).returncode == 1
    assert run_porter("convert", "fork.py", "-o", "out", "--check", cwd=tmp_path).returncode == 1
    review = run_porter("diff", "fork.py", "--format", "markdown", cwd=tmp_path).stdout
    assert review.index("Holes to fill by hand") < review.index("Rules applied:")
    listed = run_porter("list", "fork.py", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.startswith(
        f"assisted  fork.py  sft+no-load-checkpoint; holes: P008 line {LINE}"
    )
    assert "porter: 1 in scope (1 with holes), 0 skipped, 0 failed" in listed.stderr
    explained = run_porter("explain", "fork.py", cwd=tmp_path).stdout
    assert f"  hole: P008 line {LINE}: {MESSAGE}; {TODO}\n" in explained

    # A person fills the hole and keeps the edit as an overlay.
    guard = generated[
        generated.index("        if self.dataset:\n") : generated.index("        return self._loader_of(")
    ]
    filled = generated.replace(
        guard, "        if self.dataset:\n            return DataLoader(self.dataset, batch_size=batch_size)\n"
    )
    (tmp_path / "out" / "fork.py").write_text(filled)
    done = run_porter("overlay", "fork", "fork.py", "-o", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_porter("convert", "fork.py", "-o", "out", "--report", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)["files"]
    assert report["status"] == "unchanged" and report["holes"] == []
    assert "# hole:" not in (tmp_path / "out" / "fork.py").read_text()


def test_a_project_that_wants_refusals_says_assisted_false(tmp_path):
    (tmp_path / "fork.py").write_text(FORK)
    (tmp_path / "pyproject.toml").write_text("[tool.porter]\nassisted = false\n")
    done = run_porter("convert", "fork.py", "-o", "out", cwd=tmp_path)
    assert done.returncode == 2 and not (tmp_path / "out" / "fork.py").exists()
    assert f"fork.py: line {LINE}: P008 expected, directly" in done.stderr
    # ... and a flag given beats it.
    assert run_porter("convert", "fork.py", "-o", "out", "--assisted", cwd=tmp_path).returncode == 1
    (tmp_path / "pyproject.toml").write_text("[tool.porter]\nassisted = 'no'\n")
    done = run_porter("convert", "fork.py", "-o", "out", cwd=tmp_path)
    assert done.returncode == 2 and "[tool.porter] assisted: expected true or false, got 'no'" in done.stderr
