"""porter run and porter demo: a job of a generated recipe, through porter/running.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional, Tuple

import click

from porter.cli.app import (
    Failure,
    generation,
    main,
    project_settings,
    require,
    RUNTIME_INSTALL,
    RUNTIME_PACKAGES,
    say,
)
from porter.settings import Settings


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
    require("run", RUNTIME_PACKAGES, RUNTIME_INSTALL)
    from porter.running import RunRequest

    flags = {
        "output_root": str(output_root),
        "save_every_n_epochs": save_every_n_epochs,
        "save_every_n_steps": save_every_n_steps,
        "heartbeat_s": heartbeat_s,
        "console": console,
        "webhook": {"url": webhook} if webhook else None,
    }
    project = project_settings()
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
    _run_and_report(request, generation(project))


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

    require("demo", RUNTIME_PACKAGES, RUNTIME_INSTALL)
    from porter.cli.convert_commands import convert
    from porter.demo import go_offline, prepare

    go_offline()
    try:
        assets = prepare(directory)
    except OSError as error:
        raise Failure(f"{directory}: cannot hold the demo's assets: {error.strerror or error}") from error
    click.echo(f"demo assets: {assets.root} (model, data, configs)", err=True)
    if prepare_only:
        return
    # What a user would type: `porter convert --installed`, then `porter run` of one recipe.
    converted = _invoke(convert, ["--installed"])
    if converted != 0:
        sys.exit(converted)
    recipe = "lora_finetune_single_device"
    job_id = "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    sys.exit(
        _invoke(
            run,
            [recipe, "--config", str(assets.config(recipe)), "--job-id", job_id, "--user-id", "demo"]
            + ["--output-root", str(assets.root / "runs"), *(["--verbose"] if verbose else [])],
        )
    )


def _invoke(command: click.Command, arguments: List[str]) -> int:
    """Run `porter <command> ARGUMENTS` in this process; its exit code. A failure it
    reports in one line stops the calling command too (click shows it)."""
    try:
        command.main(arguments, prog_name=f"porter {command.name}", standalone_mode=False)
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0


def _run_and_report(request, generation: Settings) -> None:
    """Run the job (porter/running.py), then say where its events, weights, output and
    report are, and one line on stderr if it did not complete or did not reach its
    output root; exit with its code."""
    from runtime.job import JobError
    from runtime.lifecycle import EXIT_FAILED
    from runtime.storage import StorageError
    from porter.running import run_job

    try:
        outcome = run_job(request, generation, warn=lambda problem: say(f"porter: warning: {problem}"))
    except JobError as error:
        raise Failure(str(error)) from error
    except StorageError as error:  # the output root cannot be reached before the job starts
        raise Failure(str(error), EXIT_FAILED) from error
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
