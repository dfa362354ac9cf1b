"""porter contract show and check: the runtime contract generated recipes target."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional, Tuple

import click

from porter.cli.app import (
    Failure,
    generation,
    main,
    project_settings,
    say,
)


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
    settings = generation(project_settings(), contract_name, runtime_module)
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
        say(f"read: {fact}")
    if reading.contract is None:
        for problem in reading.problems:
            say(f"porter: error: {problem}")
        sys.exit(2)
    for difference in reading.differences():
        say(f"differs from the guide: {difference}")
    if target is None:
        click.echo(reading.contract.toml(), nl=False)
        return
    from runtime.files import write_atomically

    try:
        write_atomically(target, reading.contract.toml())
    except OSError as error:
        raise Failure(f"{target}: cannot write: {error.strerror or error}") from error
    say(f"porter: wrote {target}; use it with --contract {target}")
