"""CheckpointSaving (porter/rules/checkpoint_saving.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class CheckpointSaving(RuleCodemod):
    RULE = rules.CheckpointSaving
