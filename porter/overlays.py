"""Overlays: a team's own edits to generated recipes, kept as unified-diff patch files
(`overlays/<recipe>.patch`) and re-applied after every conversion.

A patch applies whole or not at all. Each hunk's context and removed lines must match
the new output exactly (a hunk may have moved, as `patch` allows, but never fuzzily):
after a torchtune upgrade, a hunk whose lines changed is a conflict, reported with the
hunk, and the file is left as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import List, Optional

from porter.outputs import unified_diff

_HUNK_HEADER = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_NO_NEWLINE = "\\ No newline at end of file"


class OverlayError(Exception):
    """An overlay that cannot be read or applied; `hunk` is the text of the hunk that
    did not apply, when one did not."""

    def __init__(self, message: str, hunk: Optional[str] = None) -> None:
        super().__init__(message)
        self.hunk = hunk


@dataclass
class Hunk:
    header: str
    old_start: int  # 1-based, as the patch says
    old: List[str]  # context and removed lines, with their line ends
    new: List[str]  # context and added lines
    text: str  # the hunk as written in the patch

    @property
    def number_hint(self) -> str:
        return self.header.split("@@")[1].strip()


def overlay_path(overlays: Path, output_name: PurePosixPath) -> Path:
    """Where the overlay of a generated recipe lives: its output name, `.patch` for `.py`."""
    return overlays / output_name.with_suffix(".patch")


def make_patch(generated: str, edited: str, output_name: PurePosixPath) -> str:
    """The overlay turning porter's output into the team's edited version ('' if equal)."""
    return unified_diff(generated, edited, f"a/{output_name}", f"b/{output_name}")


def parse(patch: str, name: str) -> List[Hunk]:
    lines = patch.splitlines(keepends=True)
    hunks: List[Hunk] = []
    index = 0
    while index < len(lines) and not lines[index].startswith("@@"):
        if not lines[index].startswith(("---", "+++", "diff ", "index ")) and lines[index].strip():
            raise OverlayError(f"{name}: line {index + 1}: not a unified diff")
        index += 1
    while index < len(lines):
        match = _HUNK_HEADER.match(lines[index])
        if not match:
            raise OverlayError(f"{name}: line {index + 1}: expected a hunk header '@@ -a,b +c,d @@'")
        old_length = int(match.group(2) if match.group(2) is not None else 1)
        new_length = int(match.group(4) if match.group(4) is not None else 1)
        start = index
        old: List[str] = []
        new: List[str] = []
        last: List[List[str]] = []  # the blocks the previous line went to
        index += 1
        while index < len(lines) and (
            len(old) < old_length or len(new) < new_length or lines[index].startswith(_NO_NEWLINE)
        ):
            line = lines[index]
            if line.startswith(_NO_NEWLINE):
                for block in last:
                    block[-1] = block[-1].rstrip("\n")
            elif line[:1] in (" ", "\n"):
                content = line[1:] if line[:1] == " " else "\n"
                old.append(content)
                new.append(content)
                last = [old, new]
            elif line[:1] == "-":
                old.append(line[1:])
                last = [old]
            elif line[:1] == "+":
                new.append(line[1:])
                last = [new]
            else:
                raise OverlayError(f"{name}: line {index + 1}: unexpected line in a hunk")
            index += 1
        if len(old) != old_length or len(new) != new_length:
            raise OverlayError(f"{name}: line {start + 1}: hunk is shorter than its header says")
        hunks.append(Hunk(lines[start].rstrip("\n"), int(match.group(1)), old, new, "".join(lines[start:index])))
    if not hunks:
        raise OverlayError(f"{name}: no hunks")
    return hunks


def apply(text: str, patch: str, name: str) -> str:
    """`text` with every hunk of `patch` applied, or OverlayError naming the first hunk
    that does not apply; `text` itself is never changed half-way."""
    lines = text.splitlines(keepends=True)
    result: List[str] = []
    position = 0  # lines[:position] are consumed
    offset = 0  # how far the hunks found so far sit from where the patch put them
    for number, hunk in enumerate(parse(patch, name), start=1):
        expected = max(hunk.old_start - 1 + offset, position) if hunk.old else hunk.old_start + offset
        found = _find(lines, hunk.old, expected, position)
        if found is None:
            raise OverlayError(
                f"{name}: hunk {number} ({hunk.number_hint}) does not apply: "
                "the lines it changes or its context differ in the new output",
                hunk.text,
            )
        offset = found - (hunk.old_start - 1)
        result += lines[position:found] + hunk.new
        position = found + len(hunk.old)
    return "".join(result + lines[position:])


def _find(lines: List[str], block: List[str], expected: int, start: int) -> Optional[int]:
    """Where `block` occurs in `lines` at or after `start`, nearest to `expected`."""
    if not block:
        return min(max(expected, start), len(lines))
    candidates = range(start, len(lines) - len(block) + 1)
    for candidate in sorted(candidates, key=lambda at: (abs(at - expected), at)):
        if lines[candidate : candidate + len(block)] == block:
            return candidate
    return None
