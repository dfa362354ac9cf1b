"""The team's launcher: `python -m guide_runtime.launch RECIPE.py CONFIG.yaml [key=value ...]`
calls the generated module's `recipe_main(job_id, user_id, cfg, dataset)`."""

from __future__ import annotations

import importlib.util
import sys

from omegaconf import OmegaConf


def main(recipe: str, config: str, *overrides: str) -> None:
    cfg = OmegaConf.merge(OmegaConf.load(config), OmegaConf.from_dotlist(list(overrides)))
    spec = importlib.util.spec_from_file_location("generated_recipe", recipe)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.recipe_main("job-1", "team-user", cfg, None)


if __name__ == "__main__":
    main(*sys.argv[1:])
