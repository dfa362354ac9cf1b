"""EpochEvent (porter/rules/epoch_event.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class EpochEvent(RuleCodemod):
    RULE = rules.EpochEvent
