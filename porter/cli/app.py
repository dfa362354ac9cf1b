"""What every `porter` command shares: the command group, the options several commands
take, one-line failures, messages on stderr, progress bars, and the project's settings
with the command line's flags over them (porter/settings.py merges them).

Commands import the converter (libcst, black) and the runtime (torch) when they run:
`porter run` then trains in a process that never loaded the converter.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple

import click

from porter import __version__
from porter.outcomes import CONVERTED, FAILED, ORPHAN, PARTIAL, PRUNED, SKIPPED, UNCHANGED
from porter.settings import ProjectSettings, Settings, SettingsError
from porter.sources import discover

STATUS_COLOURS = {
    CONVERTED: "green",
    UNCHANGED: None,
    SKIPPED: "yellow",
    FAILED: "red",
    PARTIAL: "magenta",
    ORPHAN: "yellow",
    PRUNED: "yellow",
}


class Failure(click.ClickException):
    """An expected failure: one line on stderr, exit 2 (or `exit_code`), no traceback."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"porter: error: {self.format_message()}", err=True)


# What each command beyond the converter imports, and the install that brings it: the
# converter's own install (`pip install porter`) has none of them.
RUNTIME_PACKAGES = ("torch", "torchtune", "torchao", "requests", "packaging", "matplotlib")
RUNTIME_INSTALL = "pip install 'porter[runtime]' (torch first: README, Install)"
REPORT_PACKAGES = ("matplotlib",)
REPORT_INSTALL = "pip install 'porter[report]'"


def require(command: str, packages: Tuple[str, ...], install: str) -> None:
    """Stop in one line when this install lacks what `command` imports (exit 2)."""
    import importlib.util

    missing = [name for name in packages if importlib.util.find_spec(name) is None]
    if missing:
        raise Failure(f"porter {command} needs {', '.join(missing)}, which this install lacks: {install}")


def say(message: str, err: bool = True, nl: bool = True) -> None:
    """click.echo, which drops colour off a terminal; NO_COLOR drops it everywhere."""
    click.echo(message, err=err, nl=nl, color=False if os.environ.get("NO_COLOR") else None)


@contextlib.contextmanager
def progress_bar(count: int, label: str) -> Iterator[Optional[Callable[[int], None]]]:
    """A progress bar's `update` on stderr when it is a terminal; None otherwise."""
    if count > 1 and sys.stderr.isatty():
        with click.progressbar(length=count, label=label, file=sys.stderr, color=not os.environ.get("NO_COLOR")) as bar:
            yield bar.update
    else:
        yield None


def project_settings() -> ProjectSettings:
    try:
        return ProjectSettings.find()
    except SettingsError as error:
        raise Failure(str(error)) from error


def generation(
    project: ProjectSettings,
    contract: Optional[str] = None,
    runtime_module: Optional[str] = None,
    skip_rules: Tuple[str, ...] = (),
    assisted: Optional[bool] = None,
) -> Settings:
    """The settings generation runs with: the project's, the flags over them."""
    try:
        return project.generation(contract, runtime_module, skip_rules, assisted)
    except SettingsError as error:
        raise Failure(str(error)) from error


def sources_of(paths, installed: bool, version: Optional[str], project: ProjectSettings) -> List[object]:
    """The sources named on the command line, else those of [tool.porter] source."""
    try:
        paths, installed = project.sources(paths, installed)
    except SettingsError as error:
        raise click.UsageError(str(error)) from error
    try:
        return discover(paths, installed, version)
    except FileNotFoundError as error:
        raise Failure(str(error)) from error


def port_cache(use_cache: bool):
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


def options(*decorators):
    def apply(function):
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


with_sources = options(
    click.argument("sources", nargs=-1, type=click.Path(path_type=Path)),
    click.option("--installed", is_flag=True, help="Take the recipes shipped with the installed torchtune."),
    click.option("--torchtune-version", metavar="VERSION", help="Version to record in headers (default: detected)."),
)
with_generation = options(
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
with_overlays = options(
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
