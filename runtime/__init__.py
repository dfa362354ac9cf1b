"""The runtime generated recipes run on: RecipeBase, run_recipe, the job's Dataset."""

from runtime.datasets import Dataset
from runtime.recipe_base import RecipeBase
from runtime.run import run_recipe

__all__ = ["Dataset", "RecipeBase", "run_recipe"]
