"""The `porter` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import click

# Commands import the converter (libcst, black) and the runtime (torch) when they run:
# `porter run` then trains in a process that never loaded the converter.
from porter import __version__
from porter.report import CONVERTED, exit_code, FAILED, FileReport, Mode, SKIPPED, summary, UNCHANGED
from porter.settings import DEFAULT_RUNTIME_MODULE, Settings
from porter.sources import discover, installed_recipes_dir, MissingSource, read_source, SourceFile

DEFAULT_OUTPUT = Path("generated_recipes")
_STATUS_COLOURS = {CONVERTED: "green", UNCHANGED: None, SKIPPED: "yellow", FAILED: "red"}


def _echo_status(report: FileReport, mode: Mode) -> None:
    status = report.status
    if status == CONVERTED and mode is not Mode.WRITE:
        status = "pending"
    label = click.style(f"{status:<10}", fg=_STATUS_COLOURS.get(report.status), bold=status == FAILED)
    if report.status in (CONVERTED, UNCHANGED):
        click.echo(f"{label} {report.source} -> {report.output}", err=True)
    else:
        click.echo(f"{label} {report.source}: {report.reason}", err=True)


def _sources(paths: Sequence[Path], installed: bool, version: Optional[str]) -> List[object]:
    if not paths and not installed:
        raise click.UsageError("give SOURCE files or folders, or --installed")
    try:
        return discover(paths, installed, version)
    except FileNotFoundError as error:
        raise click.ClickException(str(error))


class _Failure(click.ClickException):
    """An expected failure: one line on stderr, exit 2, no traceback."""

    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"porter: error: {self.format_message()}", err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="porter")
def main() -> None:
    """Port torchtune training recipes onto the job runtime, and run them."""


source_arguments = [
    click.argument("sources", nargs=-1, type=click.Path(path_type=Path)),
    click.option("--installed", is_flag=True, help="Take the recipes shipped with the installed torchtune."),
    click.option("--torchtune-version", metavar="VERSION", help="Version to record in headers (default: detected)."),
]


def with_sources(function):
    for decorator in reversed(source_arguments):
        function = decorator(function)
    return function


@main.command()
@with_sources
@click.option("-o", "--output", "out_dir", type=click.Path(path_type=Path), default=DEFAULT_OUTPUT, show_default=True, help="Folder to write generated recipes to.")
@click.option("--diff", "show_diff", is_flag=True, help="Print the diff of what would be written; write nothing.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if generated files are missing or stale.")
@click.option("--force", is_flag=True, help="Overwrite generated files edited by hand.")
@click.option("--report", type=click.Choice(["text", "json"]), default="text", show_default=True, help="json: a report per file on stdout.")
@click.option("--runtime-module", default=DEFAULT_RUNTIME_MODULE, show_default=True, help="Module generated code imports RecipeBase, run_recipe and Dataset from.")
def convert(
    sources: Tuple[Path, ...],
    installed: bool,
    torchtune_version: Optional[str],
    out_dir: Path,
    show_diff: bool,
    check: bool,
    force: bool,
    report: str,
    runtime_module: str,
) -> None:
    """Convert recipes into the output folder.

    \b
    Examples:
      porter convert --installed
      porter convert path/to/torchtune/recipes -o generated_recipes
      porter convert --installed --check      # CI: fail when outputs are stale
      porter convert --installed --diff       # review what would change

    \b
    Exit codes: 0 success; 1 changes pending (--check, --diff);
    2 some file failed (the others are still converted) or bad usage.
    """
    from porter.convert import convert as convert_sources, OutputFolderError

    mode = Mode.DIFF if show_diff else Mode.CHECK if check else Mode.WRITE
    try:
        reports = convert_sources(
            _sources(sources, installed, torchtune_version),
            out_dir,
            mode=mode,
            force=force,
            settings=Settings(runtime_module=runtime_module),
        )
    except OutputFolderError as error:
        raise _Failure(str(error))
    for file_report in reports:
        if report == "text":
            _echo_status(file_report, mode)
        if file_report.diff and (mode is Mode.DIFF or file_report.status == FAILED):
            if report == "text":
                click.echo(file_report.diff, nl=False, err=mode is not Mode.DIFF)
    if report == "json":
        click.echo(json.dumps({"files": [r.as_json() for r in reports], "summary": summary(reports, mode)}, indent=2))
    click.echo(summary(reports, mode), err=True)
    sys.exit(exit_code(reports, mode))


@main.command(name="list")
@with_sources
@click.option("--runtime-module", default=DEFAULT_RUNTIME_MODULE, show_default=True)
def list_command(sources: Tuple[Path, ...], installed: bool, torchtune_version: Optional[str], runtime_module: str) -> None:
    """List every file found: in scope (with its variant) or skipped (with the reason).

    \b
    Examples:
      porter list --installed
      porter list path/to/recipes
    """
    from porter.pipeline import port

    settings = Settings(runtime_module=runtime_module)
    counts = {CONVERTED: 0, SKIPPED: 0, FAILED: 0}
    for source in _sources(sources, installed, torchtune_version):
        if isinstance(source, MissingSource):
            status, detail, name = FAILED, source.reason, str(source.path)
        else:
            name = str(source)
            try:
                result = port(read_source(source.path), settings)
                status = result.status
                detail = result.variant if status == CONVERTED else f"{result.reason}"
                if status == FAILED and result.variant:
                    detail = f"{result.variant}: {detail}"
            except ValueError as error:
                status, detail = FAILED, str(error)
        counts[status] += 1
        label = {CONVERTED: "in scope", SKIPPED: "skipped", FAILED: "failed"}[status]
        click.echo(f"{click.style(f'{label:<9}', fg=_STATUS_COLOURS[status])} {name}  {detail}")
    click.echo(f"porter: {counts[CONVERTED]} in scope, {counts[SKIPPED]} skipped, {counts[FAILED]} failed", err=True)
    sys.exit(2 if counts[FAILED] else 0)


def resolve_recipe_source(recipe: str) -> SourceFile:
    """A recipe named by path, or by name among the installed torchtune's recipes."""
    path = Path(recipe)
    if path.is_file():
        (source,) = discover([path], installed=False)
        return source
    name = recipe[:-3] if recipe.endswith(".py") else recipe
    try:
        recipes = installed_recipes_dir()
    except FileNotFoundError as error:
        raise _Failure(str(error))
    candidate = recipes / f"{name}.py"
    if candidate.is_file():
        for source in discover([], installed=True):
            if source.path == candidate:
                return source
    raise _Failure(f"{recipe}: no such recipe file, nor an installed torchtune recipe of that name")


@main.command()
@click.argument("recipe")
@click.option("--runtime-module", default=DEFAULT_RUNTIME_MODULE, show_default=True)
def diff(recipe: str, runtime_module: str) -> None:
    """Print the upstream-to-generated diff of RECIPE (a path or an installed recipe name).

    \b
    Examples:
      porter diff lora_finetune_single_device
      porter diff dev/early_exit_finetune_distributed
      porter diff path/to/my_recipe.py
    """
    from porter.outputs import generated_text, unified_diff
    from porter.pipeline import port

    source = resolve_recipe_source(recipe)
    try:
        text = read_source(source.path)
    except ValueError as error:
        raise _Failure(f"{source.path}: {error}")
    result = port(text, Settings(runtime_module=runtime_module))
    if result.status != CONVERTED:
        raise _Failure(f"{source.path}: {result.status}: {result.reason}")
    generated = generated_text(source, text, result.code)
    click.echo(unified_diff(text, generated, f"upstream/{source.label}", f"generated/{source.output_name}"), nl=False)


_TORCHRUN_OPTIONS = ("nproc_per_node", "nnodes", "node_rank", "rdzv_backend", "rdzv_endpoint", "rdzv_id", "master_addr", "master_port", "max_restarts")


@main.command(context_settings={"ignore_unknown_options": False})
@click.argument("recipe")
@click.argument("overrides", nargs=-1)
@click.option("--config", "config_name", required=True, help="Config file, or an installed torchtune config name (llama3_2/1B_lora_single_device).")
@click.option("--job-id", required=True, help="Job id: 1-128 of A-Z a-z 0-9 . _ -")
@click.option("--user-id", required=True, help="User id: 1-128 of A-Z a-z 0-9 . _ -")
@click.option("--dataset", help="Dataset file or fsspec URL (chat JSONL, instruct JSON/JSONL, ...) to train on instead of the config's.")
@click.option("--output-root", type=click.Path(path_type=Path), default=Path("runs"), show_default=True, help="Job folders go to OUTPUT_ROOT/USER_ID/JOB_ID.")
@click.option("--recipes-dir", type=click.Path(path_type=Path), default=DEFAULT_OUTPUT, show_default=True, help="Where generated recipes are found (and converted to when missing).")
@click.option("--save-every-n-epochs", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--save-every-n-steps", type=click.IntRange(min=1), default=None)
@click.option("--heartbeat-s", type=click.FloatRange(min=0), default=30.0, show_default=True)
@click.option("--webhook", metavar="URL", help="POST events in batches to URL.")
@click.option("--console/--no-console", default=True, show_default=True, help="A line per event on stderr.")
@click.option("--nproc-per-node", help="Processes per node: runs through torch's elastic launcher (torchrun).")
@click.option("--nnodes", help="torchrun --nnodes")
@click.option("--node-rank", help="torchrun --node-rank")
@click.option("--rdzv-backend", help="torchrun --rdzv-backend")
@click.option("--rdzv-endpoint", help="torchrun --rdzv-endpoint")
@click.option("--rdzv-id", help="torchrun --rdzv-id")
@click.option("--master-addr", help="torchrun --master-addr")
@click.option("--master-port", help="torchrun --master-port")
@click.option("--max-restarts", help="torchrun --max-restarts")
def run(recipe: str, overrides: Tuple[str, ...], config_name: str, job_id: str, user_id: str, dataset: Optional[str], output_root: Path, recipes_dir: Path, save_every_n_epochs: int, save_every_n_steps: Optional[int], heartbeat_s: float, webhook: Optional[str], console: bool, **torchrun: Optional[str]) -> None:
    """Run RECIPE as a job, with key=value OVERRIDES as `tune run` takes them.

    RECIPE is a generated recipe's name (converted from the installed torchtune on
    the fly when missing) or a path to one.

    \b
    Examples:
      porter run lora_finetune_single_device --config .porter-demo/configs/lora_finetune_single_device.yaml \\
          --job-id j1 --user-id alice
      porter run full_finetune_distributed --config cfg.yaml --job-id j2 --user-id bob \\
          --nproc-per-node 2 --dataset data/chat.jsonl epochs=1
      porter run lora_finetune_single_device --config cfg.yaml --job-id j1 --user-id alice \\
          resume_from_checkpoint=True

    \b
    Exit codes: 0 completed; 1 training failed; 2 bad input (ids, config, dataset,
    recipe); 130 cancelled by SIGINT; 143 cancelled by SIGTERM.
    """
    from runtime.job import JobError, JobPaths
    from runtime.launch import Launch, cancel_on_signals, supervise
    from porter.running import load_config, resolve_recipe

    try:
        JobPaths.for_job(output_root, user_id, job_id)  # refuse bad ids before anything
        recipe_path = resolve_recipe(recipe, recipes_dir)
        cfg = load_config(config_name, overrides)
        cfg.porter = {
            "output_root": str(output_root),
            "save_every_n_epochs": save_every_n_epochs,
            "save_every_n_steps": save_every_n_steps,
            "heartbeat_s": heartbeat_s,
            "console": console,
            "webhook": {"url": webhook} if webhook else None,
            **(dict(cfg.porter) if "porter" in cfg and cfg.porter else {}),
        }
        launch = Launch(
            recipe=recipe_path,
            job_id=job_id,
            user_id=user_id,
            config=cfg,
            dataset_source=dataset,
            torchrun={key: value for key, value in torchrun.items() if value is not None},
        )
        cancel_on_signals()
        outcome = supervise(launch)
    except JobError as error:
        raise _Failure(str(error))
    _report_outcome(outcome, JobPaths.for_job(output_root, user_id, job_id))


@main.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path(".porter-demo"), show_default=True, help="Where the demo's model, data, configs and runs go.")
@click.option("--prepare-only", is_flag=True, help="Make the assets and configs; train nothing.")
def demo(directory: Path, prepare_only: bool) -> None:
    """The main job: a tiny model, tokenizer, datasets and configs made here, offline;
    then convert the installed torchtune's recipes and train lora_finetune_single_device
    for 2 epochs on the CPU.

    \b
    Examples:
      porter demo
      porter demo --prepare-only --dir /tmp/demo
    """
    import datetime
    import os

    from porter.demo import prepare

    # Everything the demo needs is on disk: never reach for a hub.
    os.environ.update({"HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "TIKTOKEN_CACHE_DIR": ""})
    assets = prepare(directory)
    click.echo(f"demo assets: {assets.root} (model, data, configs)", err=True)
    if prepare_only:
        return
    from porter.convert import convert as convert_sources

    reports = convert_sources(discover([], installed=True), DEFAULT_OUTPUT)
    click.echo(summary(reports, Mode.WRITE) + f" into {DEFAULT_OUTPUT}/", err=True)
    job_id = "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    from runtime.job import JobPaths
    from runtime.launch import Launch, cancel_on_signals, supervise
    from porter.running import load_config

    cfg = load_config(str(assets.config("lora_finetune_single_device")), [])
    cfg.porter = {"output_root": str(assets.root / "runs")}
    cancel_on_signals()
    outcome = supervise(Launch(DEFAULT_OUTPUT / "lora_finetune_single_device.py", job_id, "demo", cfg))
    _report_outcome(outcome, JobPaths.for_job(assets.root / "runs", "demo", job_id))


def _report_outcome(outcome, paths) -> None:
    """Where the job's events and weights are; one line on stderr if it did not complete."""
    if outcome.operation != "job_completed":
        data = outcome.data
        message = str(data.get("message", "")).splitlines()[0] if data.get("message") else ""
        # Bad input (exit 2) needs no traceback; a failed or cancelled run may.
        where = f" (traceback: {paths.root / data['traceback_file']})" if outcome.exit_code != 2 and data.get("traceback_file") else ""
        click.echo(f"porter: {outcome.operation}: {data.get('error_type')}: {message}{where}", err=True)
    click.echo(f"events:  {paths.events}")
    click.echo(f"weights: {paths.checkpoints}")
    sys.exit(outcome.exit_code)
