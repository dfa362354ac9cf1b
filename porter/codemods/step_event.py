"""StepEvent (porter/rules/step_event.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class StepEvent(RuleCodemod):
    RULE = rules.StepEvent
