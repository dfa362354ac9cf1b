"""Every generated recipe passes torchtune's own formatting check: ufmt, which is black
(22.12, target py38) then usort (1.0.5, first-party detection off), as torchtune's
pre-commit and pyproject set them."""

from __future__ import annotations

import black
from usort import Config, usort

from conftest import fixture_text
from porter.pipeline import port

TORCHTUNE_BLACK = black.Mode(target_versions={black.TargetVersion.PY38})
TORCHTUNE_USORT = Config(first_party_detection=False)


def ufmt_problems(name: str, text: str) -> list:
    problems = []
    if black.format_str(text, mode=TORCHTUNE_BLACK) != text:
        problems.append(f"{name}: black would reformat it")
    sorted_imports = usort(text.encode(), TORCHTUNE_USORT)
    if sorted_imports.error is not None or sorted_imports.output.decode() != text:
        problems.append(f"{name}: usort would reorder its imports")
    return problems


def test_every_generated_recipe_of_the_installed_torchtune_passes_ufmt(generated):
    files = sorted(generated.rglob("*.py"))
    assert len([f for f in files if f.name != "__init__.py"]) == 15
    problems = [
        problem for path in files for problem in ufmt_problems(str(path.relative_to(generated)), path.read_text())
    ]
    assert problems == []


def test_the_fixtures_ports_pass_ufmt():
    for name in ("sft_recipe.py", "inline_save_recipe.py", "main_recipe.py", "rl_recipe.py", "mix_recipe.py"):
        assert ufmt_problems(name, port(fixture_text(name)).code) == []
