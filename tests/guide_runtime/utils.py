"""The team's run_recipe: build, setup, train, cleanup. It saves nothing itself."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from guide_runtime.job_logger import JobLogger

# The team's job system says where a job's log goes; here, the test that launches it.
EVENTS = "GUIDE_RUNTIME_EVENTS"


def run_recipe(recipe_class: type, job_id: str, user_id: str, cfg: Any, dataset: Any) -> None:
    logger = JobLogger(Path(os.environ[EVENTS]))
    recipe = recipe_class(job_id, user_id, cfg, dataset, job_logger=logger)
    recipe.setup(cfg=cfg)
    recipe.train()
    recipe.cleanup()
