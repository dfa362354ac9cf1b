"""Checkpoints are the runtime's: when to save, what was saved, how to resume.

The recipe's own save method writes the files (in its checkpointer's format); the
runtime decides when it runs, keeps each intermediate checkpoint's recipe state beside
its weights (torchtune overwrites one `recipe_state.pt` in place, so a crash during
the next save would corrupt the last good one), records every save as a `weights`
event, and on resume points the checkpointer at the last complete intermediate save.
"""

from __future__ import annotations

import os
import re
import shutil
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
    keep_last_n: Optional[int] = None  # epoch checkpoints kept; None keeps every one

    def epoch_due(self, epoch: int, total_epochs: int) -> bool:
        """Intermediate saves every N epochs; the last epoch always saves."""
        return epoch + 1 >= total_epochs or (epoch + 1) % self.every_n_epochs == 0

    def step_due(self, step: int) -> bool:
        return self.every_n_steps is not None and step % self.every_n_steps == 0


Snapshot = Dict[str, Tuple[int, int]]
_EPOCH_FOLDER = re.compile(r"epoch_(\d+)")


def rotate(checkpoints: Path, keep: int, mirror=None) -> List[Path]:
    """Delete the epoch checkpoints (`epoch_<n>` folders) but the newest `keep`, ordered
    by epoch number, never by name; never the newest one with its recipe state (what a
    resume needs), nor, on a remote output root, one whose upload has not finished
    (`mirror.remove` deletes the remote copy, or declines). The deleted folders."""
    folders = sorted(
        (int(match.group(1)), path)
        for path in (checkpoints.iterdir() if checkpoints.exists() else ())
        if path.is_dir() and (match := _EPOCH_FOLDER.fullmatch(path.name))
    )
    resumable = [path for _, path in folders if (path / "recipe_state.pt").exists()]
    needed = resumable[-1] if resumable else None
    removed = []
    for _, path in folders[: max(len(folders) - keep, 0)]:
        if path == needed or (mirror is not None and not mirror.remove(path)):
            continue
        shutil.rmtree(path)
        removed.append(path)
    return removed


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


def can_resume(events: List[Event]) -> bool:
    """Whether an attempt of the job saved state it can resume from, and it is not done."""
    save = last_resumable_save(events)
    done = any(event.get("operation") == "job_completed" for event in events)
    return (
        save is not None and save["data"]["kind"] == "intermediate" and bool(save["data"].get("resumable")) and not done
    )


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
            if path.suffix in _WEIGHT_SUFFIXES
            and path.name != "recipe_state.pt"
            and not path.name.startswith("adapter")
        )
        if not weights:
            raise JobError(f"resume_from_checkpoint: no model weights in {folder}")
        overrides["checkpoint_files"] = [f"{folder.name}/{name}" for name in weights]
    resumed = OmegaConf.merge(cfg, {"checkpointer": overrides, "resume_from_checkpoint": True})
    return resumed
