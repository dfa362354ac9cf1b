"""A cache of ports, so `convert` and `--check` skip re-porting what is up to date.

An entry is keyed by everything that decides a generated file: the source's text and
where it comes from (its label and torchtune version, both in the header), the
settings, the overlay's name and text, and porter itself (a hash of its code and
templates and of the versions of the libraries that shape its output). Change any of
them and the key changes; an entry is never stale, only unused. Entries are small
JSON files written atomically; one that cannot be read is ignored and ported afresh,
and a cache folder that cannot be written costs speed, never a conversion.

Where: $PORTER_CACHE_DIR, else $XDG_CACHE_HOME/porter, else ~/.cache/porter. Delete
it at any time.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Optional

from porter.outcomes import PortResult
from runtime.files import write_atomically
from porter.settings import Settings

_LIBRARIES = ("libcst", "black", "pyflakes", "jinja2")
# The runtime modules porter's own code imports: their contents shape generated code.
_RUNTIME_MODULES = ("contract.py", "events.py", "families.py")


def default_folder() -> Path:
    if os.environ.get("PORTER_CACHE_DIR"):
        return Path(os.environ["PORTER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "porter"


@functools.lru_cache(maxsize=None)
def fingerprint() -> str:
    return fingerprint_of(Path(__file__).resolve().parents[1])


def fingerprint_of(root: Path) -> str:
    """porter's own code and templates under `root` (the project), the runtime modules
    the converter reads (the contracts, the event schema the step template renders, the
    recipe families), and the libraries that shape its output."""
    digest = hashlib.sha256()
    runtime = [root / "runtime" / name for name in _RUNTIME_MODULES]
    for path in sorted([*(root / "porter").rglob("*.py"), *(root / "templates").glob("*.j2"), *runtime]):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}={importlib.metadata.version(library)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(library.encode())
    return digest.hexdigest()


class PortCache:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(
        self, source_text: str, label: str, torchtune_version: str, settings: Settings, overlay: str, overlay_text: str
    ) -> str:
        digest = hashlib.sha256()
        for part in (
            fingerprint(),
            settings.contract.fingerprint(),
            ",".join(sorted(settings.skip_rules)),
            "assisted" if settings.assisted else "refusing",
            label,
            torchtune_version,
            overlay,
            hashlib.sha256(overlay_text.encode()).hexdigest(),
            hashlib.sha256(source_text.encode()).hexdigest(),
        ):
            digest.update(part.encode() + b"\0")
        return digest.hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / "ports" / key[:2] / f"{key}.json"

    def get(self, key: str) -> Optional[tuple]:
        """(port result, generated text or None), or None when not cached."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
            return PortResult.from_json(entry["result"]), entry["text"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, result: PortResult, text: Optional[str]) -> None:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, json.dumps({"result": asdict(result), "text": text}))
        except OSError:
            pass  # a cache that cannot be written only costs time
