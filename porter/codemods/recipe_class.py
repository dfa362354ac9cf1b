"""RecipeClass (porter/rules/recipe_class.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class RecipeClass(RuleCodemod):
    RULE = rules.RecipeClass
