"""The `porter` command line: it parses arguments and prints results; the work is done
by porter.convert (convert, list), porter.review (diff) and the runtime (run, demo).

Defaults come from `[tool.porter]` in the nearest pyproject.toml (porter/settings.py);
flags override them. Progress bars and colour appear on a terminal only, and colour
never when NO_COLOR is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import click

# Commands import the converter (libcst, black) and the runtime (torch) when they run:
# `porter run` then trains in a process that never loaded the converter.
from porter import __version__
from porter.outcomes import (
    CONVERTED,
    exit_code,
    FAILED,
    FileReport,
    Mode,
    ORPHAN,
    PARTIAL,
    PRUNED,
    SKIPPED,
    summary,
    UNCHANGED,
)
from porter.settings import check_rule_ids, check_runtime_module, INSTALLED, ProjectSettings, Settings, SettingsError
from porter.sources import (
    discover,
    find_recipe,
    installed_folders,
    MissingSource,
    recipe_name,
    SourceFile,
    sources_at,
)
from runtime.job_reader import STATUSES  # reads no torch: the event logs only

_STATUS_COLOURS = {
    CONVERTED: "green",
    UNCHANGED: None,
    SKIPPED: "yellow",
    FAILED: "red",
    PARTIAL: "magenta",
    ORPHAN: "yellow",
    PRUNED: "yellow",
}


class _Failure(click.ClickException):
    """An expected failure: one line on stderr, exit 2 (or `exit_code`), no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"porter: error: {self.format_message()}", err=True)


# What each command beyond the converter imports, and the install that brings it: the
# converter's own install (`pip install porter`) has none of them.
_RUNTIME_PACKAGES = ("torch", "torchtune", "torchao", "requests", "packaging", "matplotlib")
_RUNTIME_INSTALL = "pip install 'porter[runtime]' (torch first: README, Install)"
_REPORT_PACKAGES = ("matplotlib",)
_REPORT_INSTALL = "pip install 'porter[report]'"


def _require(command: str, packages: Tuple[str, ...], install: str) -> None:
    """Stop in one line when this install lacks what `command` imports (exit 2)."""
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise _Failure(f"porter {command} needs {', '.join(missing)}, which this install lacks: {install}")


def _say(message: str, err: bool = True, nl: bool = True) -> None:
    """click.echo, which drops colour off a terminal; NO_COLOR drops it everywhere."""
    click.echo(message, err=err, nl=nl, color=False if os.environ.get("NO_COLOR") else None)


@contextlib.contextmanager
def _progress(count: int, label: str) -> Iterator[Optional[Callable[[int], None]]]:
    """A progress bar's `update` on stderr when it is a terminal; None otherwise."""
    if count > 1 and sys.stderr.isatty():
        with click.progressbar(length=count, label=label, file=sys.stderr, color=not os.environ.get("NO_COLOR")) as bar:
            yield bar.update
    else:
        yield None


def _project() -> ProjectSettings:
    try:
        return ProjectSettings.find()
    except SettingsError as error:
        raise _Failure(str(error)) from error


def _echo_status(report: FileReport, mode: Mode) -> None:
    status = report.status
    if status == CONVERTED and mode is not Mode.WRITE:
        status = "pending"
    label = click.style(f"{status:<10}", fg=_STATUS_COLOURS.get(report.status), bold=status == FAILED)
    if report.status in (CONVERTED, UNCHANGED):
        _say(f"{label} {report.source} -> {report.output}")
    elif report.status == PARTIAL:
        _say(f"{label} {report.source} -> {report.output}: {len(report.holes)} hole(s) to fill by hand")
        for hole in report.holes:
            _say(f"  hole: {hole['rule']} line {hole['line']}: {hole['message']}; {hole['todo']}")
    else:
        _say(f"{label} {report.source}: {report.reason}")


def _discover(paths, installed: bool, version: Optional[str]) -> List[object]:
    try:
        return discover(paths, installed, version)
    except FileNotFoundError as error:
        raise _Failure(str(error)) from error


def _sources(paths, installed: bool, version: Optional[str], project: ProjectSettings) -> List[object]:
    """The sources named on the command line, else those of [tool.porter] source."""
    if not paths and not installed:
        paths = [Path(source) for source in project.source if source != INSTALLED]
        installed = INSTALLED in project.source
    if not paths and not installed:
        raise click.UsageError("give SOURCE files or folders, or --installed (or set [tool.porter] source)")
    return _discover(paths, installed, version)


def _generation(
    project: ProjectSettings,
    contract: Optional[str],
    runtime_module: Optional[str],
    skip_rules: Tuple[str, ...],
    assisted: Optional[bool],
) -> Settings:
    from runtime.contract import ContractError, load

    try:
        declared = load(contract, where="--contract") if contract else project.contract
        module = check_runtime_module(runtime_module, "--runtime-module") if runtime_module else project.runtime_module
        return Settings(
            contract=declared.with_runtime_module(module),
            skip_rules=check_rule_ids(skip_rules, "--skip-rule") if skip_rules else project.skip_rules,
            assisted=project.assisted if assisted is None else assisted,
        )
    except (SettingsError, ContractError) as error:
        raise _Failure(str(error)) from error


def _overlays(project: ProjectSettings, overlays: Optional[Path], use_overlays: bool) -> Optional[Path]:
    return (overlays or project.overlays) if use_overlays else None


def _cache(use_cache: bool):
    from porter.cache import default_folder, PortCache

    return PortCache(default_folder()) if use_cache else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="porter")
def main() -> None:
    """Port torchtune training recipes onto the job runtime, and run them.

    \b
    Examples:
      porter demo                                   # the tiny embedded demo, on CPU
      porter convert --installed                    # port the installed torchtune's recipes
      porter diff lora_finetune_single_device       # review one port
      porter run lora_finetune_single_device --config cfg.yaml --job-id j1 --user-id alice

    Defaults come from [tool.porter] in the nearest pyproject.toml; flags override them.
    """


def _options(*decorators):
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


with_sources = _options(
    click.argument("sources", nargs=-1, type=click.Path(path_type=Path)),
    click.option("--installed", is_flag=True, help="Take the recipes shipped with the installed torchtune."),
    click.option("--torchtune-version", metavar="VERSION", help="Version to record in headers (default: detected)."),
)
with_generation = _options(
    click.option(
        "--contract",
        metavar="NAME|FILE",
        help="Runtime contract the output targets: porter (default), guide, or a TOML file (README, Your own runtime).",
    ),
    click.option(
        "--runtime-module",
        metavar="MODULE",
        help="Module the contract's imports from porter's `runtime` come from instead (default: runtime).",
    ),
    click.option(
        "--skip-rule",
        "skip_rules",
        multiple=True,
        metavar="RULE",
        help="Leave out the rule of this id (see README, Architecture); repeatable; refused when another rule needs it.",
    ),
    click.option(
        "--assisted/--no-assisted",
        default=None,
        help="Write a step porter cannot port safely as an explicit hole to fill by hand (default), or refuse the file.",
    ),
)
with_no_cache = click.option(
    "--no-cache",
    "use_cache",
    is_flag=True,
    flag_value=False,
    default=True,
    help="Port every file again, ignoring the cache of ports.",
)
with_output = click.option(
    "-o",
    "--output",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Folder of generated recipes (default: generated_recipes).",
)
with_overlays_folder = click.option(
    "--overlays", "overlays_dir", type=click.Path(path_type=Path), help="Folder of overlay patches (default: overlays)."
)
with_overlays = _options(
    with_overlays_folder,
    click.option(
        "--no-overlays",
        "use_overlays",
        is_flag=True,
        flag_value=False,
        default=True,
        help="Generate without the overlays.",
    ),
)


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

    project = _project()
    mode = Mode.DIFF if show_diff else Mode.CHECK if check else Mode.WRITE
    found = _sources(sources, installed, torchtune_version, project)
    settings = _generation(project, contract, runtime_module, skip_rules, assisted)
    try:
        with _progress(len(found), "converting") as progress:
            reports = convert_sources(
                found,
                out_dir or project.output,
                mode=mode,
                force=force,
                settings=settings,
                overlays=_overlays(project, overlays_dir, use_overlays),
                jobs=jobs or os.cpu_count() or 1,
                cache=_cache(use_cache),
                prune=prune,
                progress=progress,
            )
    except OutputFolderError as error:
        raise _Failure(str(error)) from error
    for file_report in reports:
        if report == "text":
            _echo_status(file_report, mode)
            if file_report.diff and (mode is Mode.DIFF or file_report.status == FAILED):
                _say(file_report.diff, nl=False, err=mode is not Mode.DIFF)
    if report == "json":
        click.echo(json.dumps({"files": [r.as_json() for r in reports], "summary": summary(reports, mode)}, indent=2))
    _say(summary(reports, mode))
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

    project = _project()
    settings = _generation(project, contract, runtime_module, skip_rules, assisted)
    found = _sources(sources, installed, torchtune_version, project)
    with _progress(len(found), "reading") as progress:
        reports = list_sources(found, settings, cache=_cache(use_cache), progress=progress)
    labels = {CONVERTED: "in scope", PARTIAL: "assisted", SKIPPED: "skipped", FAILED: "failed"}
    for report in reports:
        detail = report.variant if report.status in (CONVERTED, PARTIAL) else report.reason
        if report.status == PARTIAL:
            detail += "; holes: " + ", ".join(f"{hole['rule']} line {hole['line']}" for hole in report.holes)
        if report.status == FAILED and report.variant:
            detail = f"{report.variant}: {detail}"
        _say(
            f"{click.style(f'{labels[report.status]:<9}', fg=_STATUS_COLOURS[report.status])} {report.source}  {detail}",
            err=False,
        )
    counts = {status: sum(1 for r in reports if r.status == status) for status in labels}
    _say(
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

    project = _project()
    settings = _generation(project, contract, runtime_module, skip_rules, assisted)
    overlays = _overlays(project, overlays_dir, use_overlays)
    if between:
        with _progress(0, "reviewing") as progress:
            try:
                reviews = review_upgrade(*between, recipes, settings, overlays, progress)
            except ValueError as error:
                raise _Failure(str(error)) from error
        title = f"upgrade {between[0]} -> {between[1]}"
    else:
        if recipes or installed:
            try:
                installed_dir = installed_folders()
                found = [source for recipe in recipes for source in sources_at(find_recipe(recipe, installed_dir))]
                found += discover([], installed=True) if installed else []
            except FileNotFoundError as error:
                raise _Failure(str(error)) from error
        else:
            found = _sources((), False, None, project)
        missing = [source for source in found if isinstance(source, MissingSource)]
        if missing:
            raise _Failure(f"{missing[0].path}: {missing[0].reason}")
        with _progress(len(found), "porting") as progress:
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
                _say(f"{click.style('look first', fg='yellow')} {review.name}: {flag}")
    failed = [review for review in shown if review.status == FAILED]
    for review in failed:
        _say(f"{click.style('failed', fg='red', bold=True)} {review.source}: {review.reason}")
    changed = sum(1 for review in shown if review.diff)
    _say(
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

    project = _project()
    settings = _generation(project, contract, runtime_module, skip_rules, assisted)
    failed = False
    for source in _sources(sources, installed, torchtune_version, project):
        if isinstance(source, MissingSource):
            _say(f"porter: error: {source.path}: {source.reason}")
            failed = True
            continue
        try:
            text = read_source(source.path)
        except ValueError as error:
            _say(f"porter: error: {source}: {error}")
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

    project = _project()
    name = recipe_name(recipe)
    found = [s for s in _sources(sources, installed, torchtune_version, project) if isinstance(s, SourceFile)]
    matches = [source for source in found if recipe_name(str(source.output_name)) == name]
    if len(matches) != 1:
        raise _Failure(f"{recipe}: {'no' if not matches else 'more than one'} source generates {name}.py")
    try:
        done = save_overlay(
            matches[0],
            out_dir or project.output,
            _generation(project, contract, runtime_module, skip_rules, assisted),
            _overlays(project, overlays_dir, True),
        )
    except (OverlaySaveError, OutputFolderError, OSError) as error:
        raise _Failure(str(error)) from error
    _say(f"porter: {done}")


@main.group()
def contract() -> None:
    """The runtime contract generated recipes target (README, Your own runtime).

    \b
    Examples:
      porter contract show --contract guide
      porter contract check team.recipes.recipe_base team.utils -o team-contract.toml
    """


@contract.command(name="show")
@click.option(
    "--contract",
    "contract_name",
    metavar="NAME|FILE",
    help="porter, guide or a TOML file (default: [tool.porter] contract).",
)
@click.option(
    "--runtime-module",
    metavar="MODULE",
    help="Module the contract's imports from porter's `runtime` come from instead.",
)
def contract_show(contract_name: Optional[str], runtime_module: Optional[str]) -> None:
    """Print the contract generation targets, as a TOML file `--contract` reads.

    Exit codes: 0 shown; 2 a bad setting or contract file.
    """
    settings = _generation(_project(), contract_name, runtime_module, (), None)
    click.echo(settings.contract.toml(), nl=False)


@contract.command(name="check")
@click.argument("modules", nargs=-1, required=True)
@click.option(
    "--job-logger",
    metavar="MODULE:CLASS",
    help="The job logger's class, where RecipeBase does not annotate `job_logger`.",
)
@click.option(
    "--save-hook",
    metavar="METHOD",
    help="RecipeBase's method that saves when due (default: save_checkpoint_if_due if it has one; else none).",
)
@click.option(
    "-o", "--output", "target", type=click.Path(path_type=Path), help="Write the contract read to this TOML file."
)
def contract_check(
    modules: Tuple[str, ...], job_logger: Optional[str], save_hook: Optional[str], target: Optional[Path]
) -> None:
    """Read the contract of a team's runtime off MODULES (together they export
    RecipeBase and run_recipe, and Dataset if it is not torch's): what porter will
    target, and where it differs from the guide's.

    \b
    Examples:
      porter contract check runtime
      porter contract check team.recipes.recipe_base team.utils -o team-contract.toml
      porter convert --installed --contract team-contract.toml

    Exit codes: 0 read; 2 porter cannot target that runtime (each reason on a line).
    """
    from porter.contract_reader import read_runtime

    sys.path.insert(0, os.getcwd())  # a team's runtime is often a folder here, not installed
    reading = read_runtime(modules, job_logger, save_hook)
    for fact in reading.facts:
        _say(f"read: {fact}")
    if reading.contract is None:
        for problem in reading.problems:
            _say(f"porter: error: {problem}")
        sys.exit(2)
    for difference in reading.differences():
        _say(f"differs from the guide: {difference}")
    if target is None:
        click.echo(reading.contract.toml(), nl=False)
        return
    from runtime.files import write_atomically

    try:
        write_atomically(target, reading.contract.toml())
    except OSError as error:
        raise _Failure(f"{target}: cannot write: {error.strerror or error}") from error
    _say(f"porter: wrote {target}; use it with --contract {target}")


# torchrun's options are not declared here: `porter run` passes on every one torchrun
# knows, in either spelling (runtime/cluster.py), and refuses the rest.
@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("recipe")
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED, metavar="[TORCHRUN OPTIONS] [OVERRIDES]")
@click.option(
    "--config",
    "config_name",
    required=True,
    help="Config file, or an installed torchtune config name (llama3_2/1B_lora_single_device).",
)
@click.option("--job-id", required=True, help="Job id: 1-128 of A-Z a-z 0-9 . _ -")
@click.option("--user-id", required=True, help="User id: 1-128 of A-Z a-z 0-9 . _ -")
@click.option(
    "--dataset",
    help="Dataset file or fsspec URL (chat JSONL, instruct JSON/JSONL, ...) to train on instead of the config's.",
)
@click.option(
    "--output-root",
    default="runs",
    show_default=True,
    help="Job folders go to OUTPUT_ROOT/USER_ID/JOB_ID: a folder, or an fsspec URL (s3://, gs://, file://, memory://).",
)
@click.option(
    "--recipes-dir",
    type=click.Path(path_type=Path),
    help="Where generated recipes are found, and converted to when missing (default: generated_recipes).",
)
@click.option("--save-every-n-epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--save-every-n-steps", type=click.IntRange(min=1), default=None)
@click.option("--heartbeat-s", type=click.FloatRange(min=0), default=30.0, show_default=True)
@click.option("--webhook", metavar="URL", help="POST events in batches to URL.")
@click.option(
    "--console/--no-console", default=True, show_default=True, help="porter's progress line and milestones on stderr."
)
@click.option(
    "--verbose",
    is_flag=True,
    help="Let torchtune's own output (config dump, INFO lines, tqdm) through, instead of into the job's logs/output-node-N.log.",
)
@click.option(
    "--resume",
    type=click.Choice(["auto", "never"]),
    default=None,
    help="auto: continue from the job's last resumable save if an earlier attempt left one, else start; "
    "never: refuse a job id with checkpoints (default; auto when a scheduler restarted the job: SLURM_RESTART_COUNT).",
)
def run(
    recipe: str,
    arguments: Tuple[str, ...],
    config_name: str,
    job_id: str,
    user_id: str,
    dataset: Optional[str],
    output_root: str,
    recipes_dir: Optional[Path],
    save_every_n_epochs: int,
    save_every_n_steps: Optional[int],
    heartbeat_s: float,
    webhook: Optional[str],
    console: bool,
    verbose: bool,
    resume: Optional[str],
) -> None:
    """Run RECIPE as a job, with key=value OVERRIDES as `tune run` takes them
    (+key=value adds a key the config lacks).

    RECIPE is a generated recipe's name (converted from the installed torchtune on
    the fly when missing) or a path to one; an installed torchtune recipe's own path
    is converted first, never run as it is. Every torchrun option, in either spelling
    (--nproc-per-node 2, --nnodes=2, --node_rank 1, --rdzv-endpoint host:port,
    --rdzv_conf join_timeout=60, --tee 3, ...), runs the job through torch's elastic
    launcher; on several nodes, each runs `porter run` and node 0 owns the job's log.

    \b
    Examples:
      porter run lora_finetune_single_device --config .porter-demo/configs/lora_finetune_single_device.yaml \\
          --job-id j1 --user-id alice
      porter run full_finetune_distributed --config cfg.yaml --job-id j2 --user-id bob \\
          --nproc-per-node 2 --dataset data/chat.jsonl epochs=1
      porter run full_finetune_distributed --config cfg.yaml --job-id j3 --user-id bob \\
          --nnodes 2 --node-rank 0 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint head:29500 \\
          --output-root s3://bucket/runs
      porter run lora_finetune_single_device --config cfg.yaml --job-id j1 --user-id alice \\
          resume_from_checkpoint=True

    \b
    Exit codes: 0 completed; 1 training failed; 2 bad input (ids, config, dataset,
    recipe, options); 130 cancelled by SIGINT; 143 cancelled by SIGTERM.
    """
    _require("run", _RUNTIME_PACKAGES, _RUNTIME_INSTALL)
    from porter.running import RunRequest

    flags = {
        "output_root": str(output_root),
        "save_every_n_epochs": save_every_n_epochs,
        "save_every_n_steps": save_every_n_steps,
        "heartbeat_s": heartbeat_s,
        "console": console,
        "webhook": {"url": webhook} if webhook else None,
    }
    project = _project()
    request = RunRequest(
        recipe=recipe,
        config=config_name,
        job_id=job_id,
        user_id=user_id,
        recipes_dir=recipes_dir or project.output,
        flags=flags,
        given=_given(flags),
        arguments=arguments,
        dataset=dataset,
        verbose=verbose,
        resume=resume,
    )
    _run_and_report(request, _generation(project, None, None, (), None))


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=Path(".porter-demo"),
    show_default=True,
    help="Where the demo's model, data, configs and runs go.",
)
@click.option("--prepare-only", is_flag=True, help="Make the assets and configs; train nothing.")
@click.option("--verbose", is_flag=True, help="Let torchtune's own output through to the console.")
def demo(directory: Path, prepare_only: bool, verbose: bool) -> None:
    """The main job: a tiny model, tokenizer, datasets and configs made here, offline;
    then convert the installed torchtune's recipes and train lora_finetune_single_device
    for 2 epochs on the CPU.

    \b
    Examples:
      porter demo
      porter demo --prepare-only --dir /tmp/demo
    """
    import datetime

    _require("demo", _RUNTIME_PACKAGES, _RUNTIME_INSTALL)
    from porter.demo import prepare

    # Everything the demo needs is on disk: never reach for a hub.
    os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": ""})
    try:
        assets = prepare(directory)
    except OSError as error:
        raise _Failure(f"{directory}: cannot hold the demo's assets: {error.strerror or error}") from error
    click.echo(f"demo assets: {assets.root} (model, data, configs)", err=True)
    if prepare_only:
        return
    from porter.convert import convert as convert_sources, OutputFolderError
    from porter.running import RunRequest

    project = _project()
    generation = _generation(project, None, None, (), None)
    try:
        reports = convert_sources(
            discover([], installed=True),
            project.output,
            settings=generation,
            jobs=os.cpu_count() or 1,
            cache=_cache(True),
        )
    except OutputFolderError as error:
        raise _Failure(str(error)) from error
    _say(summary(reports, Mode.WRITE) + f" into {project.output}/")
    request = RunRequest(
        recipe="lora_finetune_single_device",
        config=str(assets.config("lora_finetune_single_device")),
        job_id="demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S"),
        user_id="demo",
        recipes_dir=project.output,
        flags={"output_root": str(assets.root / "runs")},
        given={"output_root"},
        verbose=verbose,
    )
    _run_and_report(request, generation)


def _run_and_report(request, generation: Settings) -> None:
    """Run the job (porter/running.py), then say where its events, weights, output and
    report are, and one line on stderr if it did not complete or did not reach its
    output root; exit with its code."""
    from runtime.job import JobError
    from runtime.lifecycle import EXIT_FAILED
    from runtime.storage import StorageError
    from porter.running import run_job

    try:
        outcome = run_job(request, generation, warn=lambda problem: _say(f"porter: warning: {problem}"))
    except JobError as error:
        raise _Failure(str(error)) from error
    except StorageError as error:  # the output root cannot be reached before the job starts
        raise _Failure(str(error), EXIT_FAILED) from error
    if outcome.operation != "job_completed":
        data = outcome.data
        message = str(data.get("message", "")).splitlines()[0] if data.get("message") else ""
        # Bad input (exit 2) needs no traceback; a failed or cancelled run may.
        where_traceback = (
            f" (traceback: {outcome.folder}/{data['traceback_file']})"
            if outcome.exit_code != 2 and data.get("traceback_file")
            else ""
        )
        click.echo(f"porter: {outcome.operation}: {data.get('error_type')}: {message}{where_traceback}", err=True)
    if outcome.upload_error:
        click.echo(f"porter: error: {outcome.upload_error}", err=True)
    if outcome.report_error:
        click.echo(f"porter: warning: {outcome.report_error}", err=True)
    click.echo(f"events:  {outcome.folder}/events.jsonl")
    click.echo(f"weights: {outcome.folder}/checkpoints")
    if not request.verbose:
        click.echo(f"output:  {outcome.folder}/logs/output-node-0.log")
    if outcome.report:
        click.echo(f"report:  {outcome.folder}/report.html")
    sys.exit(outcome.exit_code)


def _given(flags: dict) -> set:
    """The flags the command line set, as opposed to their defaults."""
    from click.core import ParameterSource

    context = click.get_current_context()
    return {name for name in flags if context.get_parameter_source(name) not in (None, ParameterSource.DEFAULT)}


with_job_root = _options(
    click.option(
        "--output-root",
        default="runs",
        show_default=True,
        help="Where the job folders are: a folder, or an fsspec URL.",
    ),
    click.option("--user", "user_id", metavar="USER", help="Only this user's jobs."),
)


def _reader(output_root: str):
    from runtime.job import JobError
    from runtime.job_reader import OutputRootReader

    try:
        return OutputRootReader(output_root)
    except JobError as error:
        raise _Failure(str(error)) from error


@main.command()
@with_job_root
@click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this state.")
@click.option("--format", "output_format", type=click.Choice(["table", "json"]), default="table", show_default=True)
def jobs(output_root: str, user_id: Optional[str], status: Optional[str], output_format: str) -> None:
    """The jobs under an output root, newest first: status (running, completed, failed,
    cancelled, interrupted: its porter run gone on this host, or stale: silent for 3
    heartbeats), progress, last loss, start, duration, nodes, processes and the
    scheduler's job. Reads the tail of each event log only.

    \b
    Examples:
      porter jobs
      porter jobs --output-root .porter-demo/runs --status failed
      porter jobs --user alice --format json
    """
    from runtime.job import JobError

    from porter.job_views import as_json_rows, jobs_table

    reader = _reader(output_root)
    try:
        summaries = reader.summaries(user_id)
    except JobError as error:
        raise _Failure(str(error)) from error
    for problem in reader.unreadable:
        _say(f"porter: warning: {problem}; left out")
    summaries = [summary for summary in summaries if status is None or summary.status == status]
    if output_format == "json":
        click.echo(json.dumps(as_json_rows(summaries), indent=2))
    elif summaries:
        click.echo(jobs_table(summaries))
    else:
        _say(
            f"porter: no jobs under {output_root}"
            + (f" of user {user_id}" if user_id else "")
            + (f" {status}" if status else "")
        )


@main.command()
@click.argument("job_id", metavar="JOB")
@with_job_root
@click.option("--follow", is_flag=True, help="Then print the job's events as they come, until it ends.")
def show(job_id: str, output_root: str, user_id: Optional[str], follow: bool) -> None:
    """A job's summary: its recipe, model, dataset, epochs and lr, status, progress, a
    loss sparkline, the weights written, its error and traceback if it failed, and
    the events its sinks dropped.

    \b
    Examples:
      porter show demo-20261129-101500 --output-root .porter-demo/runs
      porter show j1 --user alice --follow
    """
    import time

    from runtime.console import ProgressConsole
    from runtime.job import JobError
    from runtime.job_reader import follow_log

    from porter.job_views import job_summary_text

    reader = _reader(output_root)
    try:
        user, folder = reader.find(job_id, user_id)
        log = f"{folder}/events.jsonl"
        offset = reader.fs.size(log)
        events = reader.events(folder)
        summary = reader.summary(folder, time.time())
    except JobError as error:
        raise _Failure(str(error)) from error
    if summary is None:
        raise _Failure(f"job {job_id} has not started: its log has no job_started")
    local = reader.local_path(folder)
    click.echo(job_summary_text(summary, events, reader.url_of(folder), local))
    if follow and summary.status in ("running", "stale"):
        console = ProgressConsole(sys.stdout, interactive=sys.stdout.isatty(), job_folder=local)
        for event in follow_log(reader.fs, log, offset=offset, poll_s=0.5):
            console.show(event)
        console.close()


@main.command()
@click.argument("job_id", metavar="JOB")
@with_job_root
@click.option(
    "-o",
    "--output",
    "target",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="The HTML file to write.",
)
def report(job_id: str, output_root: str, user_id: Optional[str], target: Path) -> None:
    """Write a job's report: one self-contained HTML file (no network needed to view
    it) with its loss, lr, step time and memory per step, epoch times, timeline,
    machine and resolved config. Jobs write theirs as report.html when they end.

    \b
    Examples:
      porter report demo-20261129-101500 --output-root .porter-demo/runs -o report.html
    """
    _require("report", _REPORT_PACKAGES, _REPORT_INSTALL)
    from runtime.job import JobError
    from runtime.report import write_report

    reader = _reader(output_root)
    try:
        _, folder = reader.find(job_id, user_id)
        events = reader.events(folder)
    except JobError as error:
        raise _Failure(str(error)) from error
    try:
        write_report(events, target, reader.local_path(folder), file_mode=0o644)
    except OSError as error:
        raise _Failure(f"{target}: {error.strerror or error}") from error
    _say(f"porter: wrote {target}")
