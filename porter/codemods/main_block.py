"""MainBlock (porter/rules/main_block.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class MainBlock(RuleCodemod):
    RULE = rules.MainBlock
