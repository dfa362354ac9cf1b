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


# What an edit did to the recipe's behaviour, as a reviewer note says (Note.kind).
MOVED = "moved"  # the behaviour runs elsewhere now: a save in the runtime's hook, statements around run_recipe
DROPPED = "dropped"  # the behaviour is gone: what the `__main__` block did besides the entry point
KEPT = "kept"  # the recipe keeps a behaviour the runtime could not take over: its own saves
CHANGED = "changed"  # the behaviour differs: with a job dataset, in what an event reads, through a wrapper
FILLED = "filled"  # a hole a team's overlay filled by hand
NOTE_KINDS = (MOVED, DROPPED, KEPT, CHANGED, FILLED)


@dataclass(frozen=True)
class Note:
    """A reviewer note: what one rule's edit did to behaviour, at which source line. The
    one place notes become words (`str`): the console, the review, `porter explain`."""

    rule: str  # its id: P004
    line: Optional[int]
    kind: str  # one of NOTE_KINDS
    message: str

    def __str__(self) -> str:
        return (
            f"{self.rule} line {self.line}: {self.message}" if self.line is not None else f"{self.rule} {self.message}"
        )


@dataclass(frozen=True)
class Refusal:
    """Why a rule (or the rules that need one part of the recipe) cannot port a file:
    `rule` is their id or ids (`P004, P005`), `line` the source line, if any."""

    rule: str
    line: Optional[int]
    message: str


def refusal_text(refusals: Sequence[Refusal]) -> str:
    """The one place refusals become words: each `line N: P00X message`, by line, joined."""
    ordered = sorted(refusals, key=lambda r: (r.line or 0, f"{r.rule} {r.message}"))
    return "; ".join(
        f"line {r.line}: {r.rule} {r.message}" if r.line is not None else f"{r.rule} {r.message}" for r in ordered
    )


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
    notes: List[Note] = field(default_factory=list)  # for reviewers
    reason: Optional[str] = None
    variant: Optional[str] = None
    holes: List[Dict[str, object]] = field(default_factory=list)  # PARTIAL: {rule, line, message, todo} each
    refusals: List[Refusal] = field(default_factory=list)  # FAILED by rules: `reason` says them in words

    @classmethod
    def from_json(cls, data: Dict[str, object]) -> "PortResult":
        """A result as `dataclasses.asdict` wrote it (porter/cache.py)."""
        return cls(
            **{
                **data,
                "notes": [Note(**note) for note in data.get("notes", [])],
                "refusals": [Refusal(**refusal) for refusal in data.get("refusals", [])],
            }
        )


@dataclass
class FileReport:
    source: str
    status: str
    output: Optional[str] = None
    rules: List[str] = field(default_factory=list)
    notes: List[Note] = field(default_factory=list)  # what a reviewer should look at
    reason: Optional[str] = None
    variant: Optional[str] = None
    diff: Optional[str] = None  # current output -> new output, when they differ
    holes: List[Dict[str, object]] = field(default_factory=list)  # open holes, each {rule, line, message, todo}
    refusals: List[Refusal] = field(default_factory=list)  # why rules refuse it: `reason` in words

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
