"""Settings: what a team may change about the generated code, and where porter works.

Read from `[tool.porter]` in the nearest pyproject.toml (this folder or a parent);
command-line flags override them:

    [tool.porter]
    source = ["installed"]           # recipe files or folders; "installed" = torchtune's
    output = "generated_recipes"     # where generated recipes go
    contract = "porter"              # the runtime contract generated code targets: porter, guide,
                                     # a TOML file, or a [tool.porter.contract] table
    runtime_module = "runtime"       # shorthand: the module the contract's `runtime` imports become
    skip_rules = []                  # ids of rules to leave out (README, Architecture)
    assisted = true                  # a step porter cannot port safely is a hole to fill by
                                     # hand (the file is `partial`); false: refuse the file
    overlays = "overlays"            # the team's own patches, re-applied after conversion
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import FrozenSet, List, Optional, Sequence, Tuple

from runtime.contract import (
    ContractError,
    load as load_contract,
    MODULE_PATH,
    PORTER,
    PORTER_RUNTIME_MODULE,
    read_toml,
    RuntimeContract,
)

DEFAULT_RUNTIME_MODULE = PORTER_RUNTIME_MODULE
INSTALLED = "installed"


class SettingsError(Exception):
    """A setting that cannot be used: one line naming it and its file."""


@dataclass(frozen=True)
class Settings:
    """What changes the code porter generates."""

    contract: RuntimeContract = PORTER
    skip_rules: FrozenSet[str] = frozenset()
    assisted: bool = True  # holes (an assisted port) rather than refusals, where a rule has a place for one


@dataclass(frozen=True)
class ProjectSettings:
    """`[tool.porter]`: the generation settings, plus where porter reads and writes."""

    source: Tuple[str, ...] = ()
    output: Path = Path("generated_recipes")
    contract: RuntimeContract = PORTER  # as declared, before `runtime_module` renames its module
    runtime_module: str = DEFAULT_RUNTIME_MODULE
    skip_rules: FrozenSet[str] = frozenset()
    assisted: bool = True
    overlays: Path = Path("overlays")
    file: Optional[Path] = field(default=None, compare=False)  # where they were read

    def generation(
        self,
        contract: Optional[str] = None,
        runtime_module: Optional[str] = None,
        skip_rules: Tuple[str, ...] = (),
        assisted: Optional[bool] = None,
    ) -> Settings:
        """These settings with the command line's flags over them (a flag not given is None
        or empty). SettingsError names a bad flag."""
        try:
            declared = load_contract(contract, where="--contract") if contract else self.contract
        except ContractError as error:
            raise SettingsError(str(error)) from error
        module = check_runtime_module(runtime_module, "--runtime-module") if runtime_module else self.runtime_module
        return Settings(
            contract=declared.with_runtime_module(module),
            skip_rules=check_rule_ids(skip_rules, "--skip-rule") if skip_rules else self.skip_rules,
            assisted=self.assisted if assisted is None else assisted,
        )

    def sources(self, paths: Sequence[Path], installed: bool) -> Tuple[List[Path], bool]:
        """The sources the command line names, else `source`'s: (paths, whether the
        installed torchtune's recipes are in). SettingsError when neither names any."""
        if not paths and not installed:
            paths, installed = [Path(s) for s in self.source if s != INSTALLED], INSTALLED in self.source
        if not paths and not installed:
            raise SettingsError("give SOURCE files or folders, or --installed (or set [tool.porter] source)")
        return list(paths), installed

    def overlays_folder(self, overlays: Optional[Path], use_overlays: bool = True) -> Optional[Path]:
        """The folder of overlay patches: the flag's, else `overlays`; None without overlays."""
        return (overlays or self.overlays) if use_overlays else None

    @classmethod
    def find(cls, start: Path = Path(".")) -> "ProjectSettings":
        """The settings of the nearest pyproject.toml with a [tool.porter] table."""
        for folder in [start.resolve(), *start.resolve().parents]:
            candidate = _from_here(folder) / "pyproject.toml"
            if candidate.is_file():
                settings = cls.read(candidate)
                if settings is not None:
                    return settings
        return cls()

    @classmethod
    def read(cls, path: Path) -> Optional["ProjectSettings"]:
        try:
            table = read_toml(path).get("tool", {}).get("porter")
        except (OSError, ValueError) as error:
            raise SettingsError(f"{path}: cannot read settings: {error}") from error
        if table is None:
            return None
        known = {f.name for f in fields(cls)} - {"file"}
        for key in table:
            if key.replace("-", "_") not in known:
                raise SettingsError(f"{path}: [tool.porter] {key}: unknown setting (known: {', '.join(sorted(known))})")
        table = {key.replace("-", "_"): value for key, value in table.items()}
        base = _from_here(path.parent)

        def strings(name: str) -> Tuple[str, ...]:
            value = table.get(name, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise SettingsError(f"{path}: [tool.porter] {name}: expected a list of strings")
            return tuple(value)

        def folder(name: str, default: Path) -> Path:
            value = table.get(name, str(default))
            if not isinstance(value, str) or not value:
                raise SettingsError(f"{path}: [tool.porter] {name}: expected a folder path")
            return base / value

        where = f"{path}: [tool.porter]"
        runtime_module = check_runtime_module(
            table.get("runtime_module", DEFAULT_RUNTIME_MODULE), f"{where} runtime_module"
        )
        try:
            contract = load_contract(table.get("contract", PORTER.name), base, f"{where} contract")
        except ContractError as error:
            raise SettingsError(str(error)) from error
        skip_rules = check_rule_ids(strings("skip_rules"), f"{where} skip_rules")
        source = tuple(s if s == INSTALLED else str(base / s) for s in strings("source"))
        assisted = table.get("assisted", True)
        if not isinstance(assisted, bool):
            raise SettingsError(f"{where} assisted: expected true or false, got {assisted!r}")
        return cls(
            source=source,
            output=folder("output", cls.output),
            contract=contract,
            runtime_module=runtime_module,
            skip_rules=skip_rules,
            assisted=assisted,
            overlays=folder("overlays", cls.overlays),
            file=path,
        )


def check_runtime_module(value: object, where: str) -> str:
    if not isinstance(value, str) or not MODULE_PATH.fullmatch(value):
        raise SettingsError(f"{where}: {value!r} is not a module path like my_platform.runtime")
    return value


def check_rule_ids(values: Tuple[str, ...], where: str) -> FrozenSet[str]:
    """The rule ids to skip, or SettingsError: an unknown id, or a skip that would leave
    a rule whose output needs the skipped one."""
    if not values:
        return frozenset()
    from porter.rules import refused_skip, RETIRED, rule_ids  # the converter's; `porter run` never needs it

    known = rule_ids()
    for value in values:
        if value in RETIRED:
            raise SettingsError(f"{where}: {value!r} is not a rule id any more: {RETIRED[value]}")
        if value not in known:
            raise SettingsError(f"{where}: {value!r} is not a rule id ({', '.join(known)})")
    skipped = frozenset(values)
    refusal = refused_skip(skipped)
    if refusal is not None:
        raise SettingsError(f"{where}: {', '.join(sorted(skipped))}: {refusal}")
    return skipped


def _from_here(folder: Path) -> Path:
    """`folder` relative to the working folder when under it: shorter messages."""
    try:
        return folder.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return folder
