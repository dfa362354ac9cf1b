"""`porter convert`: ports a set of sources into an output folder, file by file.

One bad file never stops the others; every file ends with one status: converted,
unchanged, skipped or failed, and a reason where there is one. Sources whose port is
in the cache are not ported again; the others are ported in `jobs` processes. When the
sources include a folder (or the installed torchtune's recipes), the output folder is
theirs: a generated file that no source generates any more is an orphan, which
`--check` fails on and `--prune` removes.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from porter import overlays as overlay_patches
from porter.cache import PortCache
from porter.outputs import (
    ensure_package,
    generated_text,
    inspect,
    read_header,
    split_header,
    unified_diff,
)
from porter.outcomes import (
    CONVERTED,
    FAILED,
    FILLED,
    FileReport,
    HOLE_MARK,
    Note,
    Mode,
    ORPHAN,
    PARTIAL,
    PortResult,
    PRUNED,
    SKIPPED,
    UNCHANGED,
)
from porter.settings import Settings
from porter.sources import MissingSource, read_source, SourceFile
from runtime.files import write_atomically


class OutputFolderError(Exception):
    """The output folder cannot hold generated files at all."""


def check_output_folder(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputFolderError(f"{out_dir}: output folder is a file")
    for parent in out_dir.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputFolderError(f"{out_dir}: {parent} is a file, not a folder")


@dataclass
class Generated:
    """What porter makes of one source: the port, and the file it would write."""

    source_text: str
    result: PortResult
    text: Optional[str] = None  # header, ported body and overlay; None unless converted


class GenerateError(Exception):
    """A source or its overlay cannot be read or applied; `hunk` is the overlay hunk
    that did not apply, when one did not."""

    def __init__(self, message: str, hunk: Optional[str] = None) -> None:
        super().__init__(message)
        self.hunk = hunk

    def __reduce__(self):  # crosses from a worker process whole
        return GenerateError, (str(self), self.hunk)


@dataclass
class _Inputs:
    """What decides a source's generated file, read once."""

    source: SourceFile
    text: str
    overlay: Optional[Path]
    overlay_text: str
    key: Optional[str]


def _inputs(source: SourceFile, settings: Settings, overlays: Optional[Path], cache: Optional[PortCache]) -> _Inputs:
    try:
        text = read_source(source.path)
    except ValueError as error:
        raise GenerateError(str(error)) from error
    overlay, overlay_text = _overlay(source, overlays)
    key = (
        cache.key(text, source.label, source.torchtune_version, settings, overlay.name if overlay else "", overlay_text)
        if cache
        else None
    )
    return _Inputs(source, text, overlay, overlay_text, key)


def _cached(inputs: _Inputs, cache: Optional[PortCache]) -> Optional[Generated]:
    found = cache.get(inputs.key) if cache else None
    return Generated(inputs.text, *found) if found is not None else None


def _port(inputs: _Inputs, settings: Settings, cache: Optional[PortCache]) -> Generated:
    from porter.pipeline import port  # the converter loads only when a port is needed

    result = port(inputs.text, settings)
    generated = Generated(inputs.text, result)
    if result.status in (CONVERTED, PARTIAL):
        generated.text, open_holes = _with_overlay(
            inputs.source, inputs.text, result, inputs.overlay, inputs.overlay_text, settings.contract.name
        )
        if result.status == PARTIAL and not open_holes:  # the team's overlay filled every hole
            generated.result = replace(
                result,
                status=CONVERTED,
                holes=[],
                notes=[
                    *result.notes,
                    *(
                        Note(h["rule"], h["line"], FILLED, f"{h['message']}: filled by the overlay")
                        for h in result.holes
                    ),
                ],
            )
    if cache:
        cache.put(inputs.key, generated.result, generated.text)
    return generated


def generate(
    source: SourceFile, settings: Settings, overlays: Optional[Path], cache: Optional[PortCache] = None
) -> Generated:
    """Port `source` and apply its overlay, from the cache when it has them.
    GenerateError: the source or its overlay cannot be read or applied."""
    inputs = _inputs(source, settings, overlays, cache)
    return _cached(inputs, cache) or _port(inputs, settings, cache)


def convert(
    sources: Sequence[object],
    out_dir: Path,
    mode: Mode = Mode.WRITE,
    force: bool = False,
    settings: Settings = Settings(),
    overlays: Optional[Path] = None,
    jobs: int = 1,
    cache: Optional[PortCache] = None,
    prune: bool = False,
    progress: Optional[Callable[[int], None]] = None,
) -> List[FileReport]:
    """Port each source into `out_dir`, applying its overlay from the `overlays` folder
    when there is one; `progress(n)` hears of each n files done."""
    check_output_folder(out_dir)
    claims: Dict[object, List[SourceFile]] = defaultdict(list)
    for source in sources:
        if isinstance(source, SourceFile):
            claims[source.output_name].append(source)
    wanted = [s for s in sources if isinstance(s, SourceFile) and len(claims[s.output_name]) == 1]
    made = _generate_all(wanted, settings, overlays, cache, jobs, progress)
    reports = []
    for source in sources:
        if isinstance(source, MissingSource):
            reports.append(FileReport(str(source.path), FAILED, reason=source.reason))
        elif len(claims[source.output_name]) > 1:
            rivals = ", ".join(str(other) for other in claims[source.output_name] if other is not source)
            reports.append(
                FileReport(
                    str(source),
                    FAILED,
                    output=str(out_dir / source.output_name),
                    reason=f"name clash: {rivals} also generate {out_dir / source.output_name}",
                )
            )
        else:
            reports.append(_compare_and_write(source, made[id(source)], out_dir, mode, force))
    if any(isinstance(s, SourceFile) and s.from_folder for s in sources):
        generated = {
            str(s.output_name)
            for s, report in zip(sources, reports, strict=True)
            if isinstance(s, SourceFile) and report.status != SKIPPED
        }
        reports += _orphans(out_dir, generated, prune and mode is Mode.WRITE)
    return reports


def _generate_all(sources, settings, overlays, cache, jobs, progress) -> Dict[int, object]:
    """Each source's Generated, or its GenerateError, by id: from the cache when it
    has them, the others ported in `jobs` processes."""
    made: Dict[int, object] = {}
    missing: List[_Inputs] = []
    for source in sources:
        try:
            inputs = _inputs(source, settings, overlays, cache)
        except GenerateError as error:
            made[id(source)] = error
            continue
        found = _cached(inputs, cache)
        if found is None:
            missing.append(inputs)
        else:
            made[id(source)] = found
    if progress and len(made):
        progress(len(made))
    if jobs > 1 and len(missing) > 1:
        from porter import pipeline  # noqa: F401  the workers fork with the converter loaded

        # Largest first, so no process is left with a long file at the end.
        missing.sort(key=lambda inputs: len(inputs.text), reverse=True)
        context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(missing)), mp_context=context) as pool:
            futures = [(inputs, pool.submit(_port_or_error, inputs, settings, cache)) for inputs in missing]
            for inputs, future in futures:
                made[id(inputs.source)] = future.result()
                if progress:
                    progress(1)
        return made
    for inputs in missing:
        made[id(inputs.source)] = _port_or_error(inputs, settings, cache)
        if progress:
            progress(1)
    return made


def list_sources(
    sources: Sequence[object],
    settings: Settings,
    cache: Optional[PortCache] = None,
    progress: Optional[Callable[[int], None]] = None,
) -> List[FileReport]:
    """What each source is: in scope (converted, with its variant), skipped or failed (with why)."""
    files = [source for source in sources if isinstance(source, SourceFile)]
    made = _generate_all(files, settings, None, cache, jobs=1, progress=progress)
    reports = []
    for source in sources:
        if isinstance(source, MissingSource):
            reports.append(FileReport(str(source.path), FAILED, reason=source.reason))
            continue
        generated = made[id(source)]
        if isinstance(generated, GenerateError):
            reports.append(FileReport(str(source), FAILED, reason=str(generated)))
            continue
        result = generated.result
        reports.append(
            FileReport(
                str(source),
                result.status,
                reason=result.reason,
                variant=result.variant,
                holes=result.holes,
                refusals=result.refusals,
            )
        )
    return reports


def _port_or_error(inputs: _Inputs, settings: Settings, cache: Optional[PortCache]):
    try:
        return _port(inputs, settings, cache)
    except GenerateError as error:
        return error


def _compare_and_write(source: SourceFile, made, out_dir: Path, mode: Mode, force: bool) -> FileReport:
    out_path = out_dir / source.output_name
    report = FileReport(str(source), FAILED)
    if isinstance(made, GenerateError):
        report.reason = str(made)
        if made.hunk is not None:
            report.output, report.diff = str(out_path), made.hunk
        return report
    result = made.result
    report.status, report.reason, report.variant = result.status, result.reason, result.variant
    report.refusals = result.refusals
    if result.status not in (CONVERTED, PARTIAL):
        return report
    report.rules, report.notes, report.output = result.rules, result.notes, str(out_path)
    report.holes = result.holes
    try:
        on_disk = inspect(out_path)
    except OSError as error:
        return _failed(report, f"cannot read {out_path}: {error.strerror or error}")
    if on_disk.current == made.text:
        report.status = UNCHANGED if result.status == CONVERTED else PARTIAL  # open holes stay open
        return report
    if mode is Mode.DIFF or (not force and (on_disk.foreign or on_disk.edited_by_hand)):
        report.diff = unified_diff(on_disk.current or "", made.text, f"a/{out_path}", f"b/{out_path}")
    if not force and on_disk.foreign:
        return _failed(report, f"{out_path} was not generated by porter; --force overwrites it")
    if not force and on_disk.edited_by_hand:
        return _failed(
            report,
            f"{out_path} was edited by hand; `porter overlay {source.output_name.with_suffix('')}` "
            "keeps the edits as an overlay, --force overwrites them",
        )
    if mode is Mode.WRITE:
        try:
            ensure_package(out_path.parent, out_dir)
            write_atomically(out_path, made.text)
        except OSError as error:
            return _failed(report, f"cannot write {out_path}: {error.strerror or error}")
    return report


def _orphans(out_dir: Path, generated: set, prune: bool) -> List[FileReport]:
    """Generated files of `out_dir` that no source generates any more."""
    reports = []
    for path in sorted(out_dir.rglob("*.py")) if out_dir.is_dir() else ():
        name = path.relative_to(out_dir).as_posix()
        if name in generated or path.name == "__init__.py":
            continue
        try:
            header = read_header(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        if header is None:
            continue  # not porter's: never an orphan of porter's
        report = FileReport(
            str(path),
            ORPHAN,
            reason=f"generated from {header.get('source', 'an unknown source')}, which no source generates any more; --prune removes it",
        )
        if prune:
            try:
                path.unlink()
                _remove_empty_package(path.parent, out_dir)
                report.status = PRUNED
            except OSError as error:
                report.status, report.reason = FAILED, f"cannot remove {path}: {error.strerror or error}"
        reports.append(report)
    return reports


def _remove_empty_package(folder: Path, root: Path) -> None:
    """Remove folders under `root` that hold nothing but the empty `__init__.py` porter made."""
    while folder != root and root in folder.parents:
        entries = [entry for entry in folder.iterdir() if entry.name != "__pycache__"]
        init = folder / "__init__.py"
        if entries != [init] or init.stat().st_size:
            return
        init.unlink()
        for cached in folder.glob("__pycache__/*"):
            cached.unlink()
        for leftover in folder.iterdir():
            leftover.rmdir()
        folder.rmdir()
        folder = folder.parent


def _overlay(source: SourceFile, overlays: Optional[Path]) -> Tuple[Optional[Path], str]:
    path = overlay_patches.overlay_path(overlays, source.output_name) if overlays else None
    if path is None or not path.exists():
        return None, ""
    try:
        return path, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise GenerateError(f"{path}: cannot read: {getattr(error, 'strerror', None) or error}") from error


def _hole_text(hole: dict) -> str:
    return f"{hole['rule']} line {hole['line']}: {hole['message']}"


def _with_overlay(
    source: SourceFile, text: str, result: PortResult, overlay: Optional[Path], patch: str, contract: str
) -> Tuple[str, List[dict]]:
    """The generated text of `source`: its port, with the team's overlay applied; and the
    holes still open in it (those whose marker the overlay did not remove), which its
    header lists."""
    body = result.code
    if overlay is None:
        return generated_text(source, text, body, contract, holes=[_hole_text(h) for h in result.holes]), result.holes
    try:
        patched = overlay_patches.apply(body, patch, str(overlay))
    except overlay_patches.OverlayError as error:
        raise GenerateError(str(error), error.hunk) from error
    try:
        compile(patched, str(overlay), "exec")
    except SyntaxError as error:
        raise GenerateError(
            f"{overlay}: the patched recipe does not compile: line {error.lineno}: {error.msg}"
        ) from error
    open_holes = result.holes if HOLE_MARK in patched else []
    return (
        generated_text(
            source,
            text,
            patched,
            contract,
            overlay=overlay.name,
            overlay_text=patch,
            holes=[_hole_text(h) for h in open_holes],
        ),
        open_holes,
    )


def _failed(report: FileReport, reason: str) -> FileReport:
    report.status = FAILED
    report.reason = reason
    return report


class OverlaySaveError(Exception):
    """The edits of a generated recipe cannot be saved as an overlay."""


def save_overlay(source: SourceFile, out_dir: Path, settings: Settings, overlays: Path) -> str:
    """Keep the hand edits of `source`'s generated recipe as its overlay, and rewrite the
    recipe's header to record it. Returns what was done, in a line."""
    out_path = out_dir / source.output_name
    on_disk = inspect(out_path)
    if on_disk.current is None:
        raise OverlaySaveError(f"{out_path}: no generated recipe to take edits from; run `porter convert` first")
    if on_disk.foreign:
        raise OverlaySaveError(f"{out_path} was not generated by porter")
    try:
        generated = generate(source, settings, overlays=None)
    except GenerateError as error:
        raise OverlaySaveError(f"{source}: {error}") from error
    if generated.result.status not in (CONVERTED, PARTIAL):  # a hole is filled by an overlay
        raise OverlaySaveError(f"{source}: {generated.result.status}: {generated.result.reason}")
    edited = split_header(on_disk.current)
    try:  # an overlay is saved only when it makes a recipe: nothing half-done on disk
        compile(edited, str(out_path), "exec")
    except SyntaxError as error:
        raise OverlaySaveError(
            f"{out_path}: line {error.lineno}: {error.msg}; fix it before saving an overlay"
        ) from error
    patch = overlay_patches.make_patch(generated.result.code, edited, source.output_name)
    path = overlay_patches.overlay_path(overlays, source.output_name)
    if patch:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, patch)
        hunks = len(overlay_patches.parse(patch, str(path)))
        done = f"saved {path} ({hunks} hunk{'s' * (hunks != 1)})"
    elif path.exists():
        path.unlink()
        done = f"no edits left: removed {path}"
    else:
        done = f"{out_path} has no edits: no overlay to save"
    report = convert([source], out_dir, Mode.WRITE, force=True, settings=settings, overlays=overlays)[0]
    if report.status == FAILED:
        raise OverlaySaveError(report.reason)
    return done
