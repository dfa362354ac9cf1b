"""The runtime generated recipes run on: RecipeBase, run_recipe, the job's Dataset.

The three names load on first use, so that light modules of this package
(runtime.families) can be imported without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {"Dataset": "runtime.datasets", "RecipeBase": "runtime.recipe_base", "run_recipe": "runtime.run"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
