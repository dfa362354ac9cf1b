"""porter convert, list, diff, explain and overlay: the converter's commands. The work is
done by porter.convert (convert, list, overlay), porter.review (diff) and porter.explain."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional, Tuple

import click

from porter.cli.app import (
    Failure,
    generation,
    main,
    port_cache,
    progress_bar,
    project_settings,
    say,
    sources_of,
    STATUS_COLOURS,
    with_generation,
    with_no_cache,
    with_output,
    with_overlays,
    with_overlays_folder,
    with_sources,
)
from porter.outcomes import CONVERTED, exit_code, FAILED, FileReport, Mode, PARTIAL, SKIPPED, summary, UNCHANGED
from porter.sources import discover, find_recipe, installed_folders, MissingSource, recipe_name, SourceFile, sources_at


def echo_status(report: FileReport, mode: Mode) -> None:
    status = report.status
    if status == CONVERTED and mode is not Mode.WRITE:
        status = "pending"
    label = click.style(f"{status:<10}", fg=STATUS_COLOURS.get(report.status), bold=status == FAILED)
    if report.status in (CONVERTED, UNCHANGED):
        say(f"{label} {report.source} -> {report.output}")
    elif report.status == PARTIAL:
        say(f"{label} {report.source} -> {report.output}: {len(report.holes)} hole(s) to fill by hand")
        for hole in report.holes:
            say(f"  hole: {hole['rule']} line {hole['line']}: {hole['message']}; {hole['todo']}")
    else:
        say(f"{label} {report.source}: {report.reason}")


@main.command()
@with_sources
@with_output
@click.option("--diff", "show_diff", is_flag=True, help="Print the diff of what would be written; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if generated files are missing, stale or orphaned.")
@click.option("--prune", is_flag=True, help="Remove generated files whose source is gone (orphans).")
@click.option("--force", is_flag=True, help="Overwrite generated files edited by hand.")
@click.option(
    "--report",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: a report per file on stdout.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Processes that port in parallel (default: the number of cores).",
)
@with_no_cache
@with_generation
@with_overlays
def convert(
    sources: Tuple[Path, ...],
    installed: bool,
    torchtune_version: Optional[str],
    out_dir: Optional[Path],
    show_diff: bool,
    check: bool,
    prune: bool,
    force: bool,
    report: str,
    jobs: Optional[int],
    use_cache: bool,
    contract: Optional[str],
    runtime_module: Optional[str],
    skip_rules: Tuple[str, ...],
    assisted: Optional[bool],
    overlays_dir: Optional[Path],
    use_overlays: bool,
) -> None:
    """Convert recipes into the output folder, applying the team's overlays.

    \b
    Examples:
      porter convert --installed
      porter convert path/to/torchtune/recipes -o generated_recipes
      porter convert --installed --check      # CI: fail when outputs are stale
      porter convert --installed --diff       # review what would change
      porter convert --installed --prune      # also remove outputs whose source is gone
      porter convert --installed --contract guide --runtime-module my_platform.runtime
      porter convert --installed --contract team-contract.toml

    \b
    Exit codes: 0 success; 1 changes pending (--check, --diff), or holes
    open (a partial file: an assisted port to finish by hand); 2 some file
    failed (the others are still converted), an overlay conflicts, or bad usage.
    """
    from porter.convert import convert as convert_sources, OutputFolderError

    project = project_settings()
    mode = Mode.DIFF if show_diff else Mode.CHECK if check else Mode.WRITE
    found = sources_of(sources, installed, torchtune_version, project)
    settings = generation(project, contract, runtime_module, skip_rules, assisted)
    try:
        with progress_bar(len(found), "converting") as progress:
            reports = convert_sources(
                found,
                out_dir or project.output,
                mode=mode,
                force=force,
                settings=settings,
                overlays=project.overlays_folder(overlays_dir, use_overlays),
                jobs=jobs or os.cpu_count() or 1,
                cache=port_cache(use_cache),
                prune=prune,
                progress=progress,
            )
    except OutputFolderError as error:
        raise Failure(str(error)) from error
    for file_report in reports:
        if report == "text":
            echo_status(file_report, mode)
            if file_report.diff and (mode is Mode.DIFF or file_report.status == FAILED):
                say(file_report.diff, nl=False, err=mode is not Mode.DIFF)
    if report == "json":
        click.echo(json.dumps({"files": [r.as_json() for r in reports], "summary": summary(reports, mode)}, indent=2))
    say(summary(reports, mode))
    sys.exit(exit_code(reports, mode))


@main.command(name="list")
@with_sources
@with_generation
@with_no_cache
def list_command(
    sources: Tuple[Path, ...],
    installed: bool,
    torchtune_version: Optional[str],
    contract: Optional[str],
    runtime_module: Optional[str],
    skip_rules: Tuple[str, ...],
    assisted: Optional[bool],
    use_cache: bool,
) -> None:
    """List every file found: in scope (with its family and variant) or skipped (with the reason).

    \b
    Examples:
      porter list --installed
      porter list path/to/recipes

    Exit codes: 0 every file is in scope or skipped; 2 some file fails to port.
    """
    from porter.convert import list_sources

    project = project_settings()
    settings = generation(project, contract, runtime_module, skip_rules, assisted)
    found = sources_of(sources, installed, torchtune_version, project)
    with progress_bar(len(found), "reading") as progress:
        reports = list_sources(found, settings, cache=port_cache(use_cache), progress=progress)
    labels = {CONVERTED: "in scope", PARTIAL: "assisted", SKIPPED: "skipped", FAILED: "failed"}
    for report in reports:
        detail = report.variant if report.status in (CONVERTED, PARTIAL) else report.reason
        if report.status == PARTIAL:
            detail += "; holes: " + ", ".join(f"{hole['rule']} line {hole['line']}" for hole in report.holes)
        if report.status == FAILED and report.variant:
            detail = f"{report.variant}: {detail}"
        say(
            f"{click.style(f'{labels[report.status]:<9}', fg=STATUS_COLOURS[report.status])} {report.source}  {detail}",
            err=False,
        )
    counts = {status: sum(1 for r in reports if r.status == status) for status in labels}
    say(
        f"porter: {counts[CONVERTED] + counts[PARTIAL]} in scope ({counts[PARTIAL]} with holes), "
        f"{counts[SKIPPED]} skipped, {counts[FAILED]} failed"
    )
    sys.exit(2 if counts[FAILED] else 0)


@main.command()
@click.argument("recipes", nargs=-1)
@click.option("--installed", is_flag=True, help="Every recipe of the installed torchtune.")
@click.option(
    "--between",
    nargs=2,
    metavar="OLD NEW",
    help="Review an upgrade: OLD and NEW are 'installed', a recipes folder or a torchtune .whl.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["unified", "markdown"]),
    default="unified",
    show_default=True,
    help="markdown: for a pull-request comment or a CI step summary.",
)
@with_generation
@with_overlays
def diff(
    recipes: Tuple[str, ...],
    installed: bool,
    between: Optional[Tuple[str, str]],
    output_format: str,
    contract: Optional[str],
    runtime_module: Optional[str],
    skip_rules: Tuple[str, ...],
    assisted: Optional[bool],
    overlays_dir: Optional[Path],
    use_overlays: bool,
) -> None:
    """Print what porting does to RECIPES (paths, folders or installed recipe names;
    default: [tool.porter] source), or with --between, how an upgrade of torchtune
    changes each generated recipe, flagging upstream changes to the code the port
    rewrites.

    \b
    Examples:
      porter diff lora_finetune_single_device
      porter diff dev/early_exit_finetune_distributed
      porter diff --installed --format markdown >> "$GITHUB_STEP_SUMMARY"
      porter diff --between torchtune-0.5.0/recipes installed --format markdown
      porter diff --between installed torchtune-0.7.0-py3-none-any.whl lora_finetune_single_device

    \b
    Exit codes: 0 reviewed; 2 some recipe fails to port (in NEW, with
    --between), an overlay conflicts, or bad usage.
    """
    from porter.review import markdown, REMOVED_UPSTREAM, review_ports, review_upgrade, unified

    project = project_settings()
    settings = generation(project, contract, runtime_module, skip_rules, assisted)
    overlays = project.overlays_folder(overlays_dir, use_overlays)
    if between:
        with progress_bar(0, "reviewing") as progress:
            try:
                reviews = review_upgrade(*between, recipes, settings, overlays, progress)
            except ValueError as error:
                raise Failure(str(error)) from error
        title = f"upgrade {between[0]} -> {between[1]}"
    else:
        if recipes or installed:
            try:
                installed_dir = installed_folders()
                found = [source for recipe in recipes for source in sources_at(find_recipe(recipe, installed_dir))]
                found += discover([], installed=True) if installed else []
            except FileNotFoundError as error:
                raise Failure(str(error)) from error
        else:
            found = sources_of((), False, None, project)
        missing = [source for source in found if isinstance(source, MissingSource)]
        if missing:
            raise Failure(f"{missing[0].path}: {missing[0].reason}")
        with progress_bar(len(found), "porting") as progress:
            reviews = review_ports(found, settings, overlays, progress)
        title = "port of " + (
            ", ".join(recipes) if recipes else "the installed torchtune" if installed else ", ".join(project.source)
        )
    shown = [review for review in reviews if review.status != SKIPPED or review.flags]
    skipped = [(review.name, review.reason) for review in reviews if review.status == SKIPPED and not review.flags]
    if output_format == "markdown":
        click.echo(markdown(shown, title, settings.contract.name, skipped), nl=False)
    else:
        click.echo(unified(shown), nl=False)
        for review in shown:
            for flag in review.flags:
                say(f"{click.style('look first', fg='yellow')} {review.name}: {flag}")
    failed = [review for review in shown if review.status == FAILED]
    for review in failed:
        say(f"{click.style('failed', fg='red', bold=True)} {review.source}: {review.reason}")
    changed = sum(1 for review in shown if review.diff)
    say(
        f"porter: {changed} recipe diff{'s' * (changed != 1)}, {len(failed)} failed, {len(skipped)} skipped"
        + (f", {sum(1 for r in shown if r.status == REMOVED_UPSTREAM)} removed upstream" if between else "")
    )
    sys.exit(2 if failed else 0)


@main.command()
@with_sources
@with_generation
def explain(
    sources: Tuple[Path, ...],
    installed: bool,
    torchtune_version: Optional[str],
    contract: Optional[str],
    runtime_module: Optional[str],
    skip_rules: Tuple[str, ...],
    assisted: Optional[bool],
) -> None:
    """Say what porter sees in each recipe (default: [tool.porter] source): its class,
    epoch loop, step logging, every save and where it goes, its dataset branch, and the
    notes the port adds, or why it refuses or skips the file.

    \b
    Examples:
      porter explain path/to/our_fork.py
      porter explain --installed --contract guide

    Exit codes: 0 explained (whatever the outcome); 2 a source cannot be read, bad usage.
    """
    from porter.explain import explain as explained
    from porter.sources import read_source

    project = project_settings()
    settings = generation(project, contract, runtime_module, skip_rules, assisted)
    failed = False
    for source in sources_of(sources, installed, torchtune_version, project):
        if isinstance(source, MissingSource):
            say(f"porter: error: {source.path}: {source.reason}")
            failed = True
            continue
        try:
            text = read_source(source.path)
        except ValueError as error:
            say(f"porter: error: {source}: {error}")
            failed = True
            continue
        click.echo(f"{source}:")
        for line in explained(text, settings):
            click.echo(f"  {line}")
    sys.exit(2 if failed else 0)


@main.command()
@click.argument("recipe")
@with_sources
@with_output
@with_generation
@with_overlays_folder
def overlay(
    recipe: str,
    sources: Tuple[Path, ...],
    installed: bool,
    torchtune_version: Optional[str],
    out_dir: Optional[Path],
    contract: Optional[str],
    runtime_module: Optional[str],
    skip_rules: Tuple[str, ...],
    assisted: Optional[bool],
    overlays_dir: Optional[Path],
) -> None:
    """Keep the hand edits of generated RECIPE as an overlay patch, re-applied by every
    `porter convert`. RECIPE is its name in the output folder; SOURCES (default:
    [tool.porter] source) are the sources it was generated from.

    \b
    Examples:
      porter overlay lora_finetune_single_device --installed
      porter overlay dev/early_exit_finetune_distributed

    \b
    After an upgrade, when an overlay conflicts:
      porter convert --installed --no-overlays   # the plain port; the old edits are in the patch
      # edit the generated recipe again
      porter overlay RECIPE --installed          # save the edits afresh

    Exit codes: 0 saved; 2 no such recipe, or it cannot be ported.
    """
    from porter.convert import OutputFolderError, OverlaySaveError, save_overlay

    project = project_settings()
    name = recipe_name(recipe)
    found = [s for s in sources_of(sources, installed, torchtune_version, project) if isinstance(s, SourceFile)]
    matches = [source for source in found if recipe_name(str(source.output_name)) == name]
    if len(matches) != 1:
        raise Failure(f"{recipe}: {'no' if not matches else 'more than one'} source generates {name}.py")
    try:
        done = save_overlay(
            matches[0],
            out_dir or project.output,
            generation(project, contract, runtime_module, skip_rules, assisted),
            project.overlays_folder(overlays_dir, True),
        )
    except (OverlaySaveError, OutputFolderError, OSError) as error:
        raise Failure(str(error)) from error
    say(f"porter: {done}")
