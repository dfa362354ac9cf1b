"""`porter diff`: what porting does to each recipe, and what an upgrade of torchtune
changes, for a reviewer: as a unified diff or as markdown for a pull-request comment
or a CI step summary (templates/review.md.j2).

An upgrade review flags the upstream changes that touch the code the port rewrites:
changed lines where the port removed or inserted code (anchors that moved), and new
checkpoint or logging calls, which the port may need to take over.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

from porter import snippets
from porter.convert import generate, Generated, GenerateError
from porter.outputs import unified_diff
from porter.outcomes import FAILED, Note, SKIPPED
from porter.settings import Settings
from porter.sources import recipe_name, recipe_set, SourceFile

REMOVED_UPSTREAM = "removed upstream"
# Calls whose last name says they save, checkpoint or log: what the runtime owns.
_WATCHED_CALL = re.compile(r"(checkpoint|save|^log)", re.IGNORECASE)


@dataclass
class RecipeReview:
    name: str  # the generated module's path under the output folder
    source: str
    status: str
    reason: Optional[str] = None
    rules: List[str] = field(default_factory=list)
    notes: List[Note] = field(default_factory=list)  # follow-ups the rules asked for
    holes: List[dict] = field(default_factory=list)  # an assisted port's holes: {rule, line, message, todo}
    flags: List[str] = field(default_factory=list)  # upstream changes to look at first
    diff: str = ""

    @property
    def added(self) -> int:
        return sum(1 for line in self.diff.splitlines() if line.startswith("+") and not line.startswith("+++"))

    @property
    def removed(self) -> int:
        return sum(1 for line in self.diff.splitlines() if line.startswith("-") and not line.startswith("---"))

    @property
    def fence(self) -> str:
        """A code fence longer than any run of backticks in the diff."""
        longest = max((len(run) for run in re.findall(r"`+", self.diff)), default=0)
        return "`" * max(3, longest + 1)


def _generate(source: SourceFile, settings: Settings, overlays) -> Tuple[Optional[Generated], RecipeReview]:
    review = RecipeReview(str(source.output_name), str(source), FAILED)
    try:
        generated = generate(source, settings, overlays)
    except GenerateError as error:
        review.reason = str(error)
        return None, review
    result = generated.result
    review.status, review.reason = result.status, result.reason
    review.rules, review.notes, review.holes = result.rules, result.notes, result.holes
    return generated, review


def port_review(source: SourceFile, settings: Settings, overlays=None) -> RecipeReview:
    """The upstream-to-generated diff of one recipe, with its rules and follow-ups."""
    generated, review = _generate(source, settings, overlays)
    if generated is not None and generated.text is not None:
        review.diff = unified_diff(
            generated.source_text, generated.text, f"upstream/{source.label}", f"generated/{source.output_name}"
        )
    return review


def review_ports(sources: Sequence[SourceFile], settings: Settings, overlays=None, progress=None) -> List[RecipeReview]:
    """The port review of each source; `progress(n)` hears of each n reviewed."""
    reviews = []
    for source in sources:
        reviews.append(port_review(source, settings, overlays))
        if progress:
            progress(1)
    return reviews


def review_upgrade(
    old: str, new: str, names: Sequence[str], settings: Settings, overlays, progress=None
) -> List[RecipeReview]:
    """How each generated recipe changes from the OLD recipes to the NEW ones (each
    `installed`, a folder or a wheel), for the recipes `names` or every one.
    ValueError: a side cannot be read, or neither has a recipe of those names."""
    old_sources, new_sources = recipe_set(old), recipe_set(new)
    wanted = {recipe_name(name) for name in names}
    if wanted:
        old_sources, new_sources = (
            [source for source in side if recipe_name(str(source.output_name)) in wanted]
            for side in (old_sources, new_sources)
        )
        if not old_sources and not new_sources:
            raise ValueError(f"{', '.join(sorted(wanted))}: in neither {old} nor {new}")
    reviews = []
    for pair in upgrade_pairs(old_sources, new_sources):
        reviews.append(upgrade_review(*pair, settings, overlays))
        if progress:
            progress(1)
    return reviews


def upgrade_pairs(
    old_sources: Sequence[SourceFile], new_sources: Sequence[SourceFile]
) -> List[Tuple[str, Optional[SourceFile], Optional[SourceFile]]]:
    """(name, old source, new source) for each generated recipe of either side."""
    old_by_name = {str(source.output_name): source for source in old_sources}
    new_by_name = {str(source.output_name): source for source in new_sources}
    return [
        (name, old_by_name.get(name), new_by_name.get(name)) for name in sorted(old_by_name.keys() | new_by_name.keys())
    ]


def upgrade_review(
    name: str, old: Optional[SourceFile], new: Optional[SourceFile], settings: Settings, overlays=None
) -> RecipeReview:
    """How the generated recipe `name` changes from the OLD source to the NEW one."""
    if new is None:
        return RecipeReview(name, str(old), REMOVED_UPSTREAM, flags=["removed upstream: its generated recipe goes"])
    if old is None:
        review = port_review(new, settings, overlays)
        if review.status != SKIPPED:
            review.flags.insert(0, "new upstream recipe: review its whole port")
        return review
    # Both sides as `porter convert` writes them, with the overlay where it applies, so
    # the diff shows what the upgrade changes, not the team's own edits.
    old_generated, _ = _generate(old, settings, overlays)
    if old_generated is None and overlays is not None:
        old_generated, _ = _generate(old, settings, overlays=None)
    new_generated, review = _generate(new, settings, overlays)
    if old_generated is None or new_generated is None:
        return review
    review.flags = _status_flags(old_generated, new_generated)
    if old_generated.result.code and new_generated.result.code:
        review.flags += upstream_flags(old_generated, new_generated)
    if old_generated.text and new_generated.text:
        review.diff = unified_diff(
            old_generated.text, new_generated.text, f"{old.torchtune_version}/{name}", f"{new.torchtune_version}/{name}"
        )
    return review


def _status_flags(old: Generated, new: Generated) -> List[str]:
    flags = []
    if old.result.status != new.result.status:
        flags.append(
            f"was {old.result.status}, now {new.result.status}"
            + (f": {new.result.reason}" if new.result.reason else "")
        )
    gained = [rule for rule in new.result.rules if rule not in old.result.rules]
    lost = [rule for rule in old.result.rules if rule not in new.result.rules]
    if gained or lost:
        flags.append(
            "rules applied changed: " + ", ".join([f"+{rule}" for rule in gained] + [f"-{rule}" for rule in lost])
        )
    return flags


def upstream_flags(old: Generated, new: Generated) -> List[str]:
    """Upstream changes that touch what the port rewrites, and new save or log calls."""
    old_lines = old.source_text.splitlines()
    new_lines = new.source_text.splitlines()
    touched_old = ported_lines(old_lines, old.result.code.splitlines())
    touched_new = ported_lines(new_lines, new.result.code.splitlines())
    new_tree = ast.parse(new.source_text)
    functions = _functions_by_line(new_tree)
    flags = []
    for i1, i2, j1, j2 in _changes(old_lines, new_lines):
        if _touched(i1, i2) & touched_old or _touched(j1, j2) & touched_new:
            where = functions.get(j1 + 1) or functions.get(j1) or "module level"
            flags.append(f"upstream {_span(i1, i2)} (new {_span(j1, j2)}, in `{where}`) changed code the port rewrites")
    old_tree = ast.parse(old.source_text)
    old_calls = _watched_calls(old_tree, _functions_by_line(old_tree))
    for (function, call), lines in _watched_calls(new_tree, functions).items():
        extra = len(lines) - len(old_calls.get((function, call), []))
        if extra > 0:
            flags.append(f"new checkpoint or logging call `{call}(...)` in `{function}` (new line {lines[-extra]})")
    return flags


def ported_lines(source: List[str], ported: List[str]) -> Set[int]:
    """1-based lines of `source` the port removed or changed, and those next to where it
    inserted code."""
    touched: Set[int] = set()
    for i1, i2, _, _ in _changes(source, ported):
        touched |= _touched(i1, i2)
    return touched


def _changes(a: List[str], b: List[str]) -> List[Tuple[int, int, int, int]]:
    """(i1, i2, j1, j2) of each change turning lines a[i1:i2] into b[j1:j2]."""
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    return [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in matcher.get_opcodes() if tag != "equal"]


def _touched(start: int, end: int) -> Set[int]:
    """The 1-based lines of a change's span; for an insertion, the lines either side."""
    return set(range(start + 1, end + 1)) or {start, start + 1}


def _span(start: int, end: int) -> str:
    if end <= start:
        return f"after line {start}"
    return f"line {start + 1}" if end == start + 1 else f"lines {start + 1}-{end}"


def _functions_by_line(tree: ast.Module) -> Dict[int, str]:
    """Each line's innermost function, as `Class.method`."""
    by_line: Dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for line in range(child.lineno, (child.end_lineno or child.lineno) + 1):
                        by_line[line] = name
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return by_line


def _watched_calls(tree: ast.Module, functions: Dict[int, str]) -> Dict[Tuple[str, str], List[int]]:
    """(function, dotted call) -> lines, for every call that saves, checkpoints or logs."""
    calls: Dict[Tuple[str, str], List[int]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            last = name.rsplit(".", 1)[-1]
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) and _WATCHED_CALL.search(last):
                key = (functions.get(node.lineno, "module level"), name)
                calls.setdefault(key, []).append(node.lineno)
    return {key: sorted(lines) for key, lines in calls.items()}


def markdown(
    reviews: Sequence[RecipeReview], title: str, contract: str, skipped: Sequence[Tuple[str, str]] = ()
) -> str:
    """The reviews as markdown: the runtime contract the ports target, a table, then a
    section per recipe with its diff folded."""
    return snippets.render("review.md.j2", title=title, contract=contract, reviews=reviews, skipped=skipped)


def unified(reviews: Sequence[RecipeReview]) -> str:
    return "".join(review.diff for review in reviews)
