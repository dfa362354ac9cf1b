"""Where job folders live: a local folder, or an fsspec URL (`s3://`, `gs://`,
`memory://`, `file://`).

A remote output root is reached through a staging folder on local disk: the job runs
in `<staging>/<user_id>/<job_id>` exactly as it would under a local root, and its files
are uploaded to `<output root>/<user_id>/<job_id>`:

- at each epoch and weights event, by the process that wrote it (a node's first
  training process): a checkpoint is on remote storage before training goes on;
- at the end, by each node's `porter run`, after the terminal event.

Staging rather than writing through fsspec, because torch and safetensors write
checkpoints to local files, and torchtune's checkpointers take local paths. A resumed
job downloads its folder first. An upload that fails (after the storage library's own
retries) fails the job; every file stays in the staging folder, which the last line
names. After a complete upload the staging folder is removed.

Credentials and endpoints are fsspec's own configuration: the environment
(`AWS_PROFILE`, `GOOGLE_APPLICATION_CREDENTIALS`, ...) or `FSSPEC_S3_ENDPOINT_URL`-style
variables.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple

from runtime.job import JobError, JobPaths
from runtime.files import write_atomically

# Files of a staging folder that are not the job's: its lock, the upload manifest,
# caches torchtune rebuilds, and files still being written.
_NOT_UPLOADED = (".lock", ".uploads.lock", ".uploaded.json")
_NOT_UPLOADED_FOLDERS = ("cache",)


class StorageError(Exception):
    """The job's files could not reach its output root (exit code 1: the job failed)."""


@dataclass(frozen=True)
class OutputRoot:
    """A job output root: a local folder, or a remote one reached through staging."""

    given: str
    protocol: Optional[str] = None  # None: a local folder

    @classmethod
    def parse(cls, value: str) -> "OutputRoot":
        """`value` checked: a URL is never turned into a local path; an unknown scheme or
        a missing fsspec backend is a JobError naming it."""
        if "://" not in value:
            return cls(value)
        protocol = value.split("://", 1)[0].lower()
        if protocol == "file":
            return cls(value[len("file://") :] or "/")
        import fsspec

        try:
            fsspec.get_filesystem_class(protocol)
        except ValueError:
            known = ", ".join(sorted(p for p in fsspec.available_protocols() if len(p) < 8)[:12])
            raise JobError(
                f"output_root {value}: unknown storage scheme {protocol}:// (fsspec knows {known}, ...)"
            ) from None
        except ImportError as error:
            raise JobError(
                f"output_root {value}: {protocol}:// needs a package that is not installed: {error}"
            ) from None
        return cls(value.rstrip("/"), protocol)

    @property
    def remote(self) -> bool:
        return self.protocol is not None

    def local_folder(self, staging_root: Path) -> Path:
        """Where job folders are on this machine: the root itself, or its staging."""
        if not self.remote:
            return Path(self.given)
        location = self.given.split("://", 1)[1]
        return staging_root / self.protocol / location


def default_staging_root() -> Path:
    """`$PORTER_STAGING_DIR`, else porter's folder in the user's cache."""
    given = os.environ.get("PORTER_STAGING_DIR")
    if given:
        return Path(given)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "porter" / "staging"


class JobMirror:
    """A job folder's copy on remote storage: pull before the job, push during it."""

    def __init__(self, paths: JobPaths, url: str) -> None:
        import fsspec

        self.paths = paths
        self.url = url
        self.fs, self.remote_root = fsspec.core.url_to_fs(url)
        self._manifest = paths.root / ".uploaded.json"

    # -- downloading ----------------------------------------------------------------

    def pull(self, everything: bool) -> None:
        """Download the job's event logs (for the rerun check) or, to resume, the whole
        folder; a job new to the root has nothing to download."""
        patterns = ["**"] if everything else ["events*.jsonl"]
        self._download(patterns)

    def pull_reports(self) -> None:
        """Download what the job's other nodes said: their states and error reports."""
        self._download(["nodes/*", "errors/*", "sinks/*"])

    def _download(self, patterns: Sequence[str]) -> None:
        """Download the remote files matching `patterns`, except those changed here
        since they were last uploaded (an earlier run whose upload failed): the copy
        here is then the newer one."""
        with self._manifest_lock():
            uploaded = self._read_manifest()
            local = self._local_files()
            try:
                remote_files = set()
                for pattern in patterns:
                    remote_files.update(self.fs.glob(f"{self.remote_root}/{pattern}"))
                for remote in sorted(remote_files):
                    relative = remote[len(self.remote_root) + 1 :]
                    if relative in local and local[relative] != uploaded.get(relative):
                        continue
                    if self.fs.isdir(remote):
                        continue
                    target = self.paths.root / relative
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self.fs.get_file(remote, str(target))
                    stat = target.stat()
                    uploaded[relative] = [stat.st_size, stat.st_mtime_ns]  # the same as there
            except Exception as error:
                raise StorageError(f"output_root {self.url}: cannot read: {_reason(error)}") from error
            finally:
                self._write_manifest(uploaded)

    # -- uploading ------------------------------------------------------------------

    def push(self) -> None:
        """Upload every file that changed since this node last uploaded it. Processes of
        one node take turns (a lock on the manifest)."""
        with self._manifest_lock():
            uploaded = self._read_manifest()
            try:
                for relative, stat in sorted(self._local_files().items()):
                    if uploaded.get(relative) == stat:
                        continue
                    target = f"{self.remote_root}/{relative}"
                    self.fs.put_file(str(self.paths.root / relative), target)
                    uploaded[relative] = stat
                    self._write_manifest(uploaded)
            except Exception as error:
                raise StorageError(
                    f"output_root {self.url}: upload failed: {_reason(error)}; "
                    f"the job's files are kept in {self.paths.root}"
                ) from error

    def remove(self, folder: Path) -> bool:
        """Delete the remote copy of `folder` (under the job folder), if every file of
        it is uploaded as it is here; False, deleting nothing, while one is not."""
        relative = folder.relative_to(self.paths.root).as_posix()
        with self._manifest_lock():
            uploaded = self._read_manifest()
            here = {name: stat for name, stat in self._local_files().items() if name.startswith(relative + "/")}
            if any(uploaded.get(name) != stat for name, stat in here.items()):
                return False
            try:
                if self.fs.exists(f"{self.remote_root}/{relative}"):
                    self.fs.rm(f"{self.remote_root}/{relative}", recursive=True)
            except Exception as error:
                raise StorageError(f"output_root {self.url}: cannot delete {relative}: {_reason(error)}") from error
            for name in here:
                uploaded.pop(name, None)
            self._write_manifest(uploaded)
        return True

    def remove_staging(self) -> None:
        """Once everything is uploaded, the staging folder goes."""
        shutil.rmtree(self.paths.root, ignore_errors=True)

    def _local_files(self) -> Dict[str, list]:
        files = {}
        for folder, folders, names in os.walk(self.paths.root):
            relative_folder = os.path.relpath(folder, self.paths.root)
            if relative_folder == ".":
                folders[:] = [f for f in folders if f not in _NOT_UPLOADED_FOLDERS]
            for name in names:
                if name in _NOT_UPLOADED or name.endswith(".partial"):
                    continue
                path = os.path.join(folder, name)
                try:
                    stat = os.stat(path)
                except FileNotFoundError:  # replaced meanwhile: the next push takes it
                    continue
                files[os.path.normpath(os.path.join(relative_folder, name))] = [stat.st_size, stat.st_mtime_ns]
        return files

    @contextlib.contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        self.paths.root.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.paths.root / ".uploads.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _read_manifest(self) -> Dict[str, list]:
        try:
            return json.loads(self._manifest.read_text())
        except (OSError, ValueError):
            return {}

    def _write_manifest(self, uploaded: Dict[str, list]) -> None:
        write_atomically(self._manifest, json.dumps(uploaded))


def _reason(error: BaseException) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return f"{type(error).__name__}: {text}"[:300] if text else type(error).__name__


def job_folder(
    output_root: str, staging_root: Optional[str], user_id: str, job_id: str
) -> Tuple[JobPaths, Optional[JobMirror]]:
    """The job's folder on this machine, and its mirror when the root is remote."""
    root = OutputRoot.parse(output_root)
    staging = Path(staging_root) if staging_root else default_staging_root()
    paths = JobPaths.for_job(root.local_folder(staging), user_id, job_id)
    if not root.remote:
        return paths, None
    return paths, JobMirror(paths, f"{root.given}/{user_id}/{job_id}")


def where(output_root: str, paths: JobPaths) -> Any:
    """How to show the job folder to a user: the remote URL, or the local folder."""
    root = OutputRoot.parse(output_root)
    if not root.remote:
        return paths.root
    return f"{root.given}/{paths.root.parent.name}/{paths.root.name}"
