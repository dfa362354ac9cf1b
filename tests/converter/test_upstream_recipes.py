"""Every in-scope recipe of torchtune 0.6.1 (installed), 0.5.0 and 0.1.1 (downloaded)
ports with every invariant; the other files are skipped saying what they are."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import installed_recipes, torchtune_wheel_recipes
from porter.outputs import generated_text
from porter.pipeline import port
from porter.settings import Settings
from runtime.contract import GUIDE, PORTER
from porter.sources import discover
from helpers.upstream_checks import check_port


def training_recipes(root: Path):
    """Files with a module-level FTRecipeInterface subclass, found with the stdlib ast."""
    found = []
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text())
        if any(
            isinstance(node, ast.ClassDef)
            and any(ast.unparse(base).endswith("FTRecipeInterface") for base in node.bases)
            for node in tree.body
        ):
            found.append(path.relative_to(root).as_posix())
    return found


ROOTS = {
    "0.6.1": installed_recipes,
    "0.5.0": lambda: torchtune_wheel_recipes("0.5.0"),
    # The oldest loop shapes: another step counter, a logged dict literal, no step
    # clock, no ListConfig branch in `_setup_data`.
    "0.1.1": lambda: torchtune_wheel_recipes("0.1.1"),
}
EXPECTED_COUNTS = {"0.6.1": 15, "0.5.0": 12, "0.1.1": 5}


@pytest.fixture(scope="module", params=sorted(ROOTS))
def release(request):
    return request.param, ROOTS[request.param]()


def test_every_training_recipe_is_found(release):
    version, root = release
    assert len(training_recipes(root)) == EXPECTED_COUNTS[version]


@pytest.mark.parametrize("contract", [PORTER, GUIDE], ids=["porter", "guide"])
def test_in_scope_recipes_port_with_every_invariant(release, contract):
    version, root = release
    names = training_recipes(root)
    for name in names:
        upstream = (root / name).read_text()
        result = port(upstream, Settings(contract=contract))
        assert result.status == "converted", (name, result.reason)
        try:
            check_port(upstream, result.code, contract)
        except AssertionError as error:
            raise AssertionError(f"torchtune {version} {name}, contract {contract.name}: {error!r}") from error
    assert len(names) == EXPECTED_COUNTS[version]


def test_ports_are_deterministic_and_a_port_is_never_ported_again(release):
    version, root = release
    for source in discover([root], installed=False, version=version):
        upstream = source.path.read_text()
        first = port(upstream)
        if first.status != "converted":
            continue
        assert port(upstream).code == first.code, source.label
        generated = generated_text(source, upstream, first.code, "porter")
        again = port(generated)
        assert again.status == "skipped" and "already ported" in again.reason
        # Even without porter's header, a ported module is recognised.
        assert "already ported" in port(first.code).reason


def test_other_files_are_skipped_saying_what_they_are(release):
    version, root = release
    for name in ("generate.py", "quantize.py"):
        result = port((root / name).read_text())
        assert result.status == "skipped"
        assert result.reason.startswith("not a training recipe: no FTRecipeInterface subclass (classes: ")
    evaluation = port((root / "eleuther_eval.py").read_text())
    assert evaluation.status == "skipped"
    assert evaluation.reason == (
        "an evaluation recipe: EleutherEvalRecipe subclasses EvalRecipeInterface; porter ports training recipes (FTRecipeInterface subclasses)"
    )


def test_each_recipe_is_labelled_with_its_family(release):
    version, root = release
    for name in training_recipes(root):
        family = port((root / name).read_text()).variant.split("+")[0]
        expected = "preference" if "dpo" in name else "rl" if ("ppo" in name or "grpo" in name) else "sft"
        assert family == expected, (version, name, family)
