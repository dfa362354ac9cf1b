"""One golden before/after pair per rule, and the failures each rule must report."""

from __future__ import annotations

import re

import libcst as cst
import pytest
from libcst.codemod import CodemodContext, SkipFile

from conftest import fixture_text, GOLDEN
from porter.pipeline import port
from porter.rules import RULES

FIXTURES = ["sft_recipe.py", "inline_save_recipe.py", "main_recipe.py", "rl_recipe.py", "mix_recipe.py"]


def run_rule(rule, source: str) -> str:
    return rule(CodemodContext()).transform_module(cst.parse_module(source)).code


@pytest.mark.parametrize("fixture", FIXTURES)
@pytest.mark.parametrize("rule", RULES, ids=lambda rule: f"{rule.RULE_ID}-{rule.NAME}")
def test_rule_alone_matches_golden(rule, fixture, golden):
    after = run_rule(rule, fixture_text(fixture))
    golden.check(GOLDEN / f"{rule.RULE_ID}_{rule.NAME}" / fixture, after)


@pytest.mark.parametrize("fixture", FIXTURES)
def test_whole_port_matches_golden(fixture, golden):
    result = port(fixture_text(fixture))
    assert result.status == "converted", result.reason
    golden.check(GOLDEN / "pipeline" / fixture, result.code)


def test_rule_ids_are_unique_and_stable():
    assert [rule.RULE_ID for rule in RULES] == [f"P00{i}" for i in range(1, 10)]
    assert len({rule.NAME for rule in RULES}) == len(RULES)


def failure(source: str) -> str:
    result = port(source)
    assert result.status == "failed"
    return result.reason


SFT = fixture_text("sft_recipe.py")
T0 = "        t0 = time.perf_counter()\n        running_loss = 0\n"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        # P001: two recipe classes in one file
        (lambda s: s + "\n\nclass Other(FTRecipeInterface):\n    pass\n", "P001 expected one FTRecipeInterface subclass, found 2"),
        # P001: a private twin of an interface method
        (lambda s: s.replace("    def cleanup(self)", "    def _setup(self):\n        pass\n\n    def cleanup(self)"), "P001 class TinyRecipe defines both `setup` and `_setup`"),
        # P002: recipe_main builds the recipe twice / never calls train
        (lambda s: s.replace("    recipe.setup(cfg=cfg)\n", "    recipe.setup(cfg=cfg)\n    recipe = TinyRecipe(cfg=cfg)\n"), "P002 expected `recipe_main` to build TinyRecipe once, found 2"),
        (lambda s: s.replace("    recipe.train()\n", ""), "P002 expected one `recipe.train(...)` call in `recipe_main`, found 0"),
        # P003: two __main__ blocks
        (lambda s: s + '\nif __name__ == "__main__":\n    pass\n', "P003 found more than one `__main__` block"),
        # P005: t0 missing, t0 declared twice
        (lambda s: s.replace(T0, "        running_loss = 0\n"), "P005 expected one `t0 = time.perf_counter()` directly in `train`, found 0"),
        (lambda s: s.replace(T0, T0 + "        t0 = time.perf_counter()\n"), "P005 expected one `t0 = time.perf_counter()` directly in `train`, found 2"),
        # P006: no metric-logger call, two logging blocks
        (lambda s: s.replace("                    self._metric_logger.log_dict(log_dict, step=self.global_step)\n", "                    pass\n"), "P006 expected one `self._metric_logger.log_dict(...)` call directly in the step-logging block, found 0"),
        (lambda s: s.replace("                running_loss = 0\n", "                if self.global_step % self._log_every_n_steps == 0:\n                    pass\n                running_loss = 0\n"), "P006 expected one `if self.global_step % self._log_every_n_steps == 0` block (`self._steps_run` in RL loops) in the epoch loop, found 2"),
        (lambda s: s.replace("                    time_per_step = time.perf_counter() - t0\n", ""), "P006 the step-logging block does not assign time_per_step"),
        # P007: epoch counter missing, counted twice
        (lambda s: s.replace("            self.epochs_run += 1\n", ""), "P007 expected one `self.epochs_run += 1` directly in the epoch loop, found 0"),
        (lambda s: s.replace("            self.epochs_run += 1\n", "            self.epochs_run += 1\n            self.epochs_run += 1\n"), "P007 expected one `self.epochs_run += 1` directly in the epoch loop, found 2"),
        # P004 and the epoch loop: no epoch loop at all
        (lambda s: s.replace("range(self.epochs_run, self.total_epochs)", "range(3)"), "P004 expected one epoch loop"),
        # P008: no ListConfig branch, two of them
        (lambda s: s.replace("if isinstance(cfg_dataset, ListConfig):", "if cfg_dataset is None:"), "P008 expected one `if isinstance(<dataset config>, ListConfig):` directly in `_setup_data`, found 0"),
        (lambda s: s.replace("        return DataLoader(", "        if isinstance(cfg_dataset, ListConfig):\n            pass\n        return DataLoader("), "P008 expected one `if isinstance(<dataset config>, ListConfig):` directly in `_setup_data`, found 2"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_missing_or_repeated_anchor_fails_with_rule_and_line(mutate, expected):
    reason = failure(mutate(SFT))
    assert re.search(r"(^|; )line \d+: " + re.escape(expected), reason), reason


def test_failure_names_the_line_of_the_anchor():
    source = SFT.replace(T0, T0 + "        t0 = time.perf_counter()\n")
    lines = source.splitlines()
    second_t0 = [i for i, line in enumerate(lines, 1) if line == "        t0 = time.perf_counter()"][1]
    assert failure(source).startswith(f"line {second_t0}: P005")


def test_every_problem_is_listed_not_only_the_first():
    source = SFT.replace(T0, "        running_loss = 0\n").replace("            self.epochs_run += 1\n", "")
    reason = failure(source)
    assert "P005" in reason and "P007" in reason


def test_step_timer_reset_is_never_the_anchor():
    # Only the reset inside the loop is left: porter must refuse, not pick it.
    reason = failure(SFT.replace(T0, "        running_loss = 0\n"))
    assert "P005" in reason


def test_method_calls_on_other_objects_are_not_renamed():
    result = port(SFT)
    assert "self._model.train()" in result.code
    assert "self._load_checkpoint(cfg_checkpointer=cfg.checkpointer)" in result.code


def test_rule_alone_reports_a_failure_as_a_skipped_file():
    source = SFT.replace(T0, "        running_loss = 0\n")
    with pytest.raises(SkipFile, match="P005"):
        RULES[4](CodemodContext()).transform_module(cst.parse_module(source))


def test_module_code_reassembles_exactly_what_libcst_prints():
    from conftest import installed_recipes
    from porter.syntax import module_code

    sources = [p.read_text() for p in installed_recipes().rglob("*.py")]
    sources += ["", "\n", "x = 1", "# only a comment", "x = 1\n\n# trailing comment\n"]
    for text in sources:
        module = cst.parse_module(text)
        assert module_code(module, module.code_for_node) == module.code == text
