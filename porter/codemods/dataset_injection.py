"""DatasetInjection (porter/rules/dataset_injection.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class DatasetInjection(RuleCodemod):
    RULE = rules.DatasetInjection
