"""`porter.keep_last_n_checkpoints`: the runtime deletes old epoch checkpoints, by epoch
number, never the one a resume needs, nor one whose upload to a remote root is not done."""

from __future__ import annotations

from pathlib import Path

import fsspec

from runtime.checkpoints import rotate
from runtime.job import JobPaths
from runtime.storage import JobMirror


def make(checkpoints: Path, epoch: int, state: bool = True) -> Path:
    folder = checkpoints / f"epoch_{epoch}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"w" * epoch)
    if state:
        (folder / "recipe_state.pt").write_bytes(b"s")
    return folder


def test_the_oldest_go_by_epoch_number_not_by_name(tmp_path):
    for epoch in (2, 9, 10):
        make(tmp_path, epoch)
    assert [p.name for p in rotate(tmp_path, keep=2)] == ["epoch_2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_10", "epoch_9"]


def test_the_checkpoint_a_resume_needs_stays(tmp_path):
    make(tmp_path, 0)
    make(tmp_path, 1)
    make(tmp_path, 2, state=False)  # the final save: weights only
    assert [p.name for p in rotate(tmp_path, keep=1)] == ["epoch_0"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch_1", "epoch_2"]


def test_on_a_remote_root_the_remote_copy_goes_too_but_only_once_uploaded(tmp_path):
    paths = JobPaths(tmp_path / "staging" / "u" / "j")
    paths.create(0o700)
    mirror = JobMirror(paths, "memory://bucket/runs/u/j")
    remote = fsspec.filesystem("memory")
    for epoch in (0, 1, 2):
        make(paths.checkpoints, epoch)
    mirror.push()
    (paths.checkpoints / "epoch_1" / "model.safetensors").write_bytes(b"changed, not uploaded yet")
    removed = rotate(paths.checkpoints, keep=1, mirror=mirror)
    assert [p.name for p in removed] == ["epoch_0"]
    assert not remote.exists("/bucket/runs/u/j/checkpoints/epoch_0")
    assert remote.exists("/bucket/runs/u/j/checkpoints/epoch_1/model.safetensors")
    assert (paths.checkpoints / "epoch_1").exists()
    mirror.push()
    assert [p.name for p in rotate(paths.checkpoints, keep=1, mirror=mirror)] == ["epoch_1"]
    assert not remote.exists("/bucket/runs/u/j/checkpoints/epoch_1")
