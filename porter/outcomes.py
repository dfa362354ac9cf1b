"""How a conversion run reports: a status per file, a summary line, an exit code."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Dict, List, Optional, Sequence

CONVERTED, UNCHANGED, SKIPPED, FAILED = "converted", "unchanged", "skipped", "failed"
# Written, with holes a person fills (porter/errors.py, Hole): an assisted port.
PARTIAL = "partial"
# The marker of an open hole in a generated recipe; an overlay that removes it fills it.
HOLE_MARK = "# TODO(porter "
# An output no source generates any more; pruned when --prune removes it.
ORPHAN, PRUNED = "orphan", "pruned"


class Mode(Enum):
    WRITE = "write"
    CHECK = "check"  # write nothing; report what is missing or stale
    DIFF = "diff"  # write nothing; show what would change


@dataclass
class PortResult:
    """What porting one source gave: the ported code, or why there is none."""

    status: str  # CONVERTED, PARTIAL, SKIPPED or FAILED (UNCHANGED is decided against outputs)
    code: Optional[str] = None  # the ported module, without porter's header
    rules: List[str] = field(default_factory=list)  # each rule applied: its id and name
    notes: List[str] = field(default_factory=list)  # "<rule id> line 912: ..." for reviewers
    reason: Optional[str] = None
    variant: Optional[str] = None
    holes: List[Dict[str, object]] = field(default_factory=list)  # PARTIAL: {rule, line, message, todo} each


@dataclass
class FileReport:
    source: str
    status: str
    output: Optional[str] = None
    rules: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # what a reviewer should look at
    reason: Optional[str] = None
    variant: Optional[str] = None
    diff: Optional[str] = None  # current output -> new output, when they differ
    holes: List[Dict[str, object]] = field(default_factory=list)  # open holes, each {rule, line, message, todo}

    def as_json(self) -> Dict[str, object]:
        return asdict(self)


def summary(reports: Sequence[FileReport], mode: Mode) -> str:
    counts = {status: 0 for status in (CONVERTED, PARTIAL, UNCHANGED, SKIPPED, FAILED, ORPHAN, PRUNED)}
    for report in reports:
        counts[report.status] += 1
    converted = "to convert" if mode is not Mode.WRITE else CONVERTED
    line = (
        f"porter: {counts[CONVERTED]} {converted}, {counts[UNCHANGED]} unchanged, "
        f"{counts[SKIPPED]} skipped, {counts[FAILED]} failed"
    )
    for status in (PARTIAL, ORPHAN, PRUNED):
        if counts[status]:
            line += f", {counts[status]} {status}"
    return line


def exit_code(reports: Sequence[FileReport], mode: Mode) -> int:
    """0 success; 1 changes pending (--check, --diff: stale, missing or orphaned
    outputs) or holes open (an assisted port written, or checked, with holes to fill);
    2 some file failed."""
    if any(report.status == FAILED for report in reports):
        return 2
    if any(report.status == PARTIAL for report in reports):
        return 1
    if mode is not Mode.WRITE and any(report.status in (CONVERTED, ORPHAN) for report in reports):
        return 1
    return 0
