"""The contract between generated recipes and the runtime, declared once.

`PortedRecipe` is what RecipeBase gives the code porter inserts: the templates read
these names on `self` and no others, and porter refuses a port whose inserted code
reads a `self.<name>` that neither this contract nor the recipe provides.
`SAVE_ARGUMENTS` are the keyword arguments the runtime may pass to a recipe's
`_save_checkpoint` (those its signature names). Imports nothing heavy: the converter
reads it without loading torch.
"""

from __future__ import annotations

from typing import Any, FrozenSet, Optional, Protocol

SAVE_ARGUMENTS = ("epoch", "step", "full_tensors", "is_intermediate_checkpoint")


class PortedRecipe(Protocol):
    job_logger: Any  # runtime.job_logger.JobLogger: log_step(...), log_epoch(...)
    dataset: Any  # the job's dataset, or None
    job_dataset_config: Any  # the config node the job's dataset replaces
    rank: int
    world_size: int

    def save_checkpoint_if_due(
        self, epoch: int, total_epochs: Optional[int] = None, step: Optional[int] = None
    ) -> None: ...


def provided_attributes() -> FrozenSet[str]:
    """Every name generated code may read on `self` from the runtime."""
    methods = {name for name, value in vars(PortedRecipe).items() if callable(value) and not name.startswith("_")}
    return frozenset(PortedRecipe.__annotations__) | methods
