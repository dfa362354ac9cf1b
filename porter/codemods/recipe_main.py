"""RecipeMain (porter/rules/recipe_main.py) as a libcst codemod."""

from porter import rules
from porter.codemods import RuleCodemod


class RecipeMain(RuleCodemod):
    RULE = rules.RecipeMain
