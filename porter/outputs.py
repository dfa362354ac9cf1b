"""Generated files: their header, how they compare with what is on disk, atomic writes.

The header records where a file came from and the sha256 of the code under it, so
porter can tell a stale output (regenerate it) from one edited by hand (refuse to
overwrite it without --force).
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from porter import __version__, snippets
from porter.pipeline import HEADER_MARK
from porter.sources import SourceFile

_HEADER_FIELD = re.compile(r"^# ([a-z0-9-]+): (.*)$")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def generated_text(
    source: SourceFile,
    source_text: str,
    body: str,
    overlay: Optional[str] = None,
    overlay_text: str = "",
) -> str:
    """The header and `body`; `overlay` names the patch already applied to `body`."""
    header = snippets.render(
        "header.py.j2",
        porter_version=__version__,
        torchtune_version=source.torchtune_version,
        source=source.label,
        source_sha256=sha256(source_text),
        overlay=overlay,
        overlay_sha256=sha256(overlay_text),
        body_sha256=sha256(body),
    )
    return header + body


def read_header(text: str) -> Optional[Dict[str, str]]:
    """The header fields of a porter-generated text, None if it has no header."""
    if not text.startswith(HEADER_MARK):
        return None
    fields: Dict[str, str] = {}
    for line in text.splitlines()[1:]:
        match = _HEADER_FIELD.match(line)
        if not match:
            break
        fields[match.group(1)] = match.group(2)
    return fields


def split_header(text: str) -> str:
    """The body of a generated text: what follows its header lines."""
    lines = text.splitlines(keepends=True)
    count = 1
    while count < len(lines) and _HEADER_FIELD.match(lines[count].rstrip("\n")):
        count += 1
    return "".join(lines[count:])


@dataclass
class OnDisk:
    """What is at an output path now, compared with what porter would write."""

    current: Optional[str]  # None: no file
    edited_by_hand: bool = False
    foreign: bool = False  # a file porter did not generate


def inspect(path: Path) -> OnDisk:
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return OnDisk(None)
    except UnicodeDecodeError:
        return OnDisk("", foreign=True)
    header = read_header(current)
    if header is None:
        return OnDisk(current, foreign=True)
    recorded = header.get("body-sha256")
    return OnDisk(current, edited_by_hand=recorded != sha256(split_header(current)))


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    return "".join(
        difflib.unified_diff(
            old.splitlines(keepends=True),
            new.splitlines(keepends=True),
            fromfile=old_name,
            tofile=new_name,
        )
    )


def write_atomically(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old file or the new, never part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def ensure_package(folder: Path, root: Path) -> None:
    """Give `folder` and each folder above it, up to `root`, an `__init__.py`."""
    current = folder
    while True:
        init = current / "__init__.py"
        if not init.exists():
            write_atomically(init, "")
        if current == root or root not in current.parents:
            return
        current = current.parent
