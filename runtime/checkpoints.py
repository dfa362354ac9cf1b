"""Checkpoints are the runtime's: when to save, what was saved, how to resume.

The recipe's own save method writes the files (in its checkpointer's format); the
runtime decides when it runs, keeps each intermediate checkpoint's recipe state beside
its weights (torchtune overwrites one `recipe_state.pt` in place, so a crash during
the next save would corrupt the last good one), records every save as a `weights`
event, and on resume points the checkpointer at the last complete intermediate save.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from omegaconf import DictConfig, OmegaConf

from runtime.job import JobError, JobPaths
from runtime.sinks import Event

RECIPE_STATE = Path("recipe_state") / "recipe_state.pt"
ADAPTER = "adapter_model.pt"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class CheckpointPolicy:
    every_n_epochs: int = 1
    every_n_steps: Optional[int] = None

    def epoch_due(self, epoch: int, total_epochs: int) -> bool:
        """Intermediate saves every N epochs; the last epoch always saves."""
        return epoch + 1 >= total_epochs or (epoch + 1) % self.every_n_epochs == 0

    def step_due(self, step: int) -> bool:
        return self.every_n_steps is not None and step % self.every_n_steps == 0


Snapshot = Dict[str, Tuple[int, int]]


def snapshot(folder: Path) -> Snapshot:
    """Size and modification time of every file under `folder`."""
    files: Snapshot = {}
    for path in sorted(folder.rglob("*")) if folder.exists() else ():
        if path.is_file():
            stat = path.stat()
            files[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return files


def written_since(before: Snapshot, folder: Path) -> List[Path]:
    after = snapshot(folder)
    return [Path(path) for path, facts in after.items() if before.get(path) != facts]


def keep_recipe_state(checkpoints: Path, epoch: int) -> Optional[Path]:
    """Move the recipe state a save just wrote into that save's epoch folder."""
    state = checkpoints / RECIPE_STATE
    if not state.exists():
        return None
    target = checkpoints / f"epoch_{epoch}" / "recipe_state.pt"
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(state, target)
    return target


def last_resumable_save(events: List[Event]) -> Optional[Event]:
    saves = [
        event
        for event in events
        if event.get("operation") == "weights" and (event.get("data") or {}).get("kind") in ("intermediate", "final")
    ]
    if not saves:
        return None
    return saves[-1]


def resume_config(cfg: DictConfig, paths: JobPaths, events: List[Event]) -> DictConfig:
    """`cfg` with its checkpointer pointed at the job's last intermediate save."""
    save = last_resumable_save(events)
    if save is None:
        raise JobError(f"resume_from_checkpoint: job folder {paths.root} has no saved checkpoint to resume from")
    data = save["data"]
    if data["kind"] == "final":
        raise JobError(f"resume_from_checkpoint: job {paths.root.name} already finished (final weights saved)")
    folder = paths.checkpoints / f"epoch_{data['epoch']}"
    state = folder / "recipe_state.pt"
    if any(Path(name).suffix == ".distcp" for name in data.get("files") or ()):
        raise JobError(
            f"resume_from_checkpoint: the last save of job {paths.root.name} (step {data.get('step')}) is a "
            "distributed checkpoint (torch.distributed.checkpoint, torchtune main's step saves), which porter "
            "does not resume from; run it again under a new job id, or save every epoch only (no porter.save_every_n_steps)"
        )
    if not state.exists():
        raise JobError(f"resume_from_checkpoint: {state} is missing")
    overrides: Dict[str, object] = {"recipe_checkpoint": str(state.relative_to(paths.checkpoints))}
    if (folder / ADAPTER).exists():
        overrides["adapter_checkpoint"] = str((folder / ADAPTER).relative_to(paths.checkpoints))
    else:
        weights = sorted(
            path.name
            for path in folder.iterdir()
            if path.suffix in _WEIGHT_SUFFIXES and path.name != "recipe_state.pt" and not path.name.startswith("adapter")
        )
        if not weights:
            raise JobError(f"resume_from_checkpoint: no model weights in {folder}")
        overrides["checkpoint_files"] = [f"{folder.name}/{name}" for name in weights]
    resumed = OmegaConf.merge(cfg, {"checkpointer": overrides, "resume_from_checkpoint": True})
    return resumed
