"""The whole port of a recipe: golden outputs, problems reported once, and every rule
that can be left out leaving a module that compiles with no new pyflakes finding."""

from __future__ import annotations

import ast
import re
from collections import Counter

import libcst as cst
import pytest
from pyflakes.checker import Checker

from conftest import fixture_text, GOLDEN
from porter.pipeline import port
from porter.rules import refused_skip, RULES
from porter.settings import Settings
from helpers.shapes import recipe, train

FIXTURES = ["sft_recipe.py", "inline_save_recipe.py", "main_recipe.py", "rl_recipe.py", "mix_recipe.py"]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_whole_port_matches_golden(fixture, golden):
    result = port(fixture_text(fixture))
    assert result.status == "converted", result.reason
    golden.check(GOLDEN / "pipeline" / fixture, result.code)


def test_rule_ids_are_unique_and_stable():
    assert [rule.RULE_ID for rule in RULES] == ["P001", "P002", "P003", "P004", "P005", "P006", "P008"]
    assert len({rule.NAME for rule in RULES}) == len(RULES)


def pyflakes_findings(code: str) -> Counter:
    return Counter((type(m).__name__, m.message_args[0]) for m in Checker(ast.parse(code)).messages if m.message_args)


# rule -> the rule whose output needs it (README, Architecture).
NEEDED_BY_ANOTHER = {"P001": "P002 recipe-main", "P002": "P001 recipe-class", "P003": "P002 recipe-main"}


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.RULE_ID)
def test_skipping_any_one_rule_compiles_cleanly_or_is_refused_naming_what_needs_it(rule, fixture):
    skipped = frozenset({rule.RULE_ID})
    refusal = refused_skip(skipped)
    if rule.RULE_ID in NEEDED_BY_ANOTHER:
        # Refused in one line that names the rule needing it.
        assert refusal is not None and "\n" not in refusal
        assert refusal.startswith(f"{NEEDED_BY_ANOTHER[rule.RULE_ID]} needs {rule.RULE_ID} {rule.NAME}: ")
        return
    assert refusal is None
    source = fixture_text(fixture)
    result = port(source, Settings(skip_rules=skipped))
    assert result.status == "converted", result.reason
    compile(result.code, fixture, "exec")
    assert not pyflakes_findings(result.code) - pyflakes_findings(source)
    assert all(not applied.startswith(rule.RULE_ID) for applied in result.rules)


def test_every_rule_some_rule_depends_on_is_refused_alone_and_allowed_with_its_dependents():
    refused = {rule.RULE_ID for rule in RULES if refused_skip(frozenset({rule.RULE_ID}))}
    assert refused == {"P001", "P002", "P003"}
    assert refused_skip(frozenset({"P001", "P002", "P004", "P005", "P006", "P008"})) is None
    assert refused_skip(frozenset({"P004", "P005", "P006", "P008"})) is None


def failure(source: str) -> str:
    """Why `source` is refused, were no step left as a hole (tests/converter/test_holes.py)."""
    result = port(source, Settings(assisted=False))
    assert result.status == "failed"
    return result.reason


def test_a_missing_anchor_is_one_problem_naming_every_rule_that_needs_it():
    source = recipe(train().replace("range(self.epochs_run, self.total_epochs)", "range(3)"))
    reason = failure(source)
    assert reason.count("expected one epoch loop") == 1
    assert re.fullmatch(
        r"line \d+: P004, P005, P006 expected one epoch loop `for <epoch> in range\(self.epochs_run, self.total_epochs\)` in `train` or the methods it calls, found 0",
        reason,
    )


def test_every_problem_is_listed_each_with_its_line():
    source = (
        recipe(train().replace("        self.epochs_run += 1\n", ""))
        .replace("if isinstance(cfg_dataset, ListConfig):", "if cfg_dataset is None:")
        .replace("return DataLoader(ds, batch_size=batch_size)", "return self._loader_of(ds)")
    )
    problems = failure(source).split("; ")
    assert [re.sub(r"^line \d+: ", "", p).split(" ")[0] for p in problems] == ["P008", "P004,"]
    assert all(re.match(r"line \d+: P00", p) for p in problems)


def test_module_code_reassembles_exactly_what_libcst_prints():
    from conftest import installed_recipes
    from porter.syntax import module_code

    sources = [p.read_text() for p in installed_recipes().rglob("*.py")]
    sources += ["", "\n", "x = 1", "# only a comment", "x = 1\n\n# trailing comment\n"]
    for text in sources:
        module = cst.parse_module(text)
        assert module_code(module, module.code_for_node) == module.code == text


def test_a_rule_run_as_a_codemod_reports_a_refusal_as_a_skipped_file():
    from libcst.codemod import CodemodContext, SkipFile

    from porter.codemods.epoch_event import EpochEvent

    source = recipe(train().replace("        self.epochs_run += 1\n", ""))
    with pytest.raises(SkipFile, match="P005 expected one `self.epochs_run \\+= 1`"):
        EpochEvent(CodemodContext()).transform_module(cst.parse_module(source))


SFT = fixture_text("sft_recipe.py")
LOG_CALL = "                    self._metric_logger.log_dict(log_dict, step=self.global_step)\n"
COUNT = "            self.epochs_run += 1\n"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda s: s + "\n\nclass Other(FTRecipeInterface):\n    pass\n",
            "P001, P002, P004, P005, P006, P008 expected one FTRecipeInterface subclass, found 2 (TinyRecipe, Other)",
        ),
        (
            lambda s: s.replace("    def train(self)", "    def fit(self)"),
            "P004, P005, P006 class TinyRecipe has no `train` method",
        ),
        (
            lambda s: s.replace("range(self.epochs_run, self.total_epochs)", "range(3)"),
            "P004, P005, P006 expected one epoch loop",
        ),
        (
            lambda s: s.replace(COUNT, ""),
            "P004, P005 expected one `self.epochs_run += 1` directly in the epoch loop, found 0",
        ),
        (
            lambda s: s.replace(COUNT, COUNT + COUNT),
            "P004, P005 expected one `self.epochs_run += 1` directly in the epoch loop, found 2",
        ),
        (
            lambda s: s.replace("self.global_step % self._log_every_n_steps == 0", "self.global_step > 0").replace(
                LOG_CALL, LOG_CALL + LOG_CALL
            ),
            "P006 expected one step-logging block `if self.global_step % self._log_every_n_steps == 0:` (or one `self._metric_logger.log_dict(..., step=self.<counter>)` in the step loop, logging every step) in the epoch loop or the methods it calls, found 0 blocks and 2 calls outside one",
        ),
        (
            lambda s: s.replace(
                "                running_loss = 0\n",
                "                if self.global_step % self._log_every_n_steps == 0:\n                    pass\n                running_loss = 0\n",
            ),
            "P006 expected one step-logging block `if self.global_step % self._log_every_n_steps == 0:` (or one `self._metric_logger.log_dict(..., step=self.<counter>)` in the step loop, logging every step) in the epoch loop or the methods it calls, found 2 blocks and 0 calls outside one",
        ),
        (
            lambda s: s.replace(LOG_CALL, "                    pass\n"),
            "P006 expected one `self._metric_logger.log_dict(...)` or `self.log_metrics(...)` call in the step-logging block, found 0",
        ),
        (
            lambda s: s.replace(LOG_CALL, LOG_CALL + LOG_CALL),
            "P006 expected one `self._metric_logger.log_dict(...)` or `self.log_metrics(...)` call in the step-logging block, found 2",
        ),
        (
            lambda s: s.replace("if isinstance(cfg_dataset, ListConfig):", "if cfg_dataset is None:").replace(
                "return DataLoader(", "return self._loader_of("
            ),
            "P008 expected, directly in `_setup_data`, one `if isinstance(<dataset config>, ListConfig):`",
        ),
        (
            lambda s: s.replace(
                "        return DataLoader(",
                "        if isinstance(cfg_dataset, ListConfig):\n            pass\n        return self._loader_of(",
            ),
            "P008 expected, directly in `_setup_data`, one `if isinstance(<dataset config>, ListConfig):`, or one `ds = config.instantiate(<dataset config>, ...)`, or a loop over the dataset configs filling a `datasets` and a `weights` dict (a mix), or a set handed to a data loader or sampler that a statement of it binds, found 2 ListConfig branches",
        ),
        (
            lambda s: s.replace("    recipe.train()\n", ""),
            "P002 expected one `recipe.train(...)` call in `recipe_main`, found 0",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_missing_or_repeated_anchor_fails_once_with_its_rules_and_line(mutate, expected):
    reason = failure(mutate(SFT))
    assert re.search(r"(^|; )line \d+: " + re.escape(expected), reason), reason
    assert reason.count(expected) == 1
