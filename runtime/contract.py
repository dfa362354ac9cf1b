"""The contract between generated recipes and the runtime they run on, declared once.

A contract says everything the code porter generates may use of its runtime:
- where `Dataset`, `RecipeBase` and `run_recipe` are imported from;
- the keywords `self.job_logger.log_step(...)` and `log_epoch(...)` accept;
- the attributes RecipeBase gives a recipe (`self.job_logger`, `self.rank`, ...);
- whether the runtime owns checkpoint saves, and through which method (its save
  hook); without one, the recipe keeps saving itself;
- which of RecipeBase's public interface methods call the recipe's `_`-prefixed one
  with what (their own arguments, or a node of `self.cfg`), so that the recipe's own
  calls that pass the same values may go through them (`Wrapper`).

`PORTER` is porter's runtime's (`PortedRecipe` below is what its RecipeBase gives).
`GUIDE` is the porting guide's, which teams' own runtimes implement; porter's runtime
runs its output too. A team declares its own as data: `[tool.porter.contract]` or a
TOML file of the same keys (`porter contract check` reads one off a runtime).
Imports nothing heavy: the converter reads it without loading torch.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, FrozenSet, Mapping, Optional, Protocol, Tuple, Union

from runtime.events import EPOCH_FIELDS, STEP_FIELDS

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, before it joined the standard library
    import tomli as tomllib

# The arguments porter's runtime may pass a recipe's `_save_checkpoint` (those its
# signature names).
SAVE_ARGUMENTS = ("epoch", "step", "full_tensors", "is_intermediate_checkpoint")
# What generated code imports from the runtime, in the order the guide lists them.
IMPORTED_NAMES = ("Dataset", "RecipeBase", "run_recipe")
# The module porter's runtime is imported as; `runtime_module` settings rename it.
PORTER_RUNTIME_MODULE = "runtime"
# A save hook is called `self.<hook>(epoch=..., step=...)` after an optimizer step and
# `self.<hook>(epoch=..., total_epochs=...)` where an epoch ends.
SAVE_HOOK_ARGUMENTS = ("epoch", "total_epochs", "step")
NAMED = ("porter", "guide")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A wrapper's parameter as Python spells it: `name`, `name=` (it has a default), `/`, `*`,
# `*args`, `**kwargs`.
_PARAMETER = re.compile(r"/|\*|\*{1,2}[A-Za-z_][A-Za-z0-9_]*|[A-Za-z_][A-Za-z0-9_]*=?")
# A dotted module path (`my_platform.runtime`): contracts' imports and [tool.porter]'s runtime_module.
MODULE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def read_toml(path: Path) -> Dict[str, Any]:
    """A TOML file's table: FileNotFoundError when there is none, ValueError (its first
    line) when it cannot be read or parsed. Contracts and [tool.porter] both read so."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ValueError(str(error).splitlines()[0] if str(error) else type(error).__name__) from error


class PortedRecipe(Protocol):
    """What porter's RecipeBase gives the code porter inserts."""

    job_id: str
    user_id: str
    cfg: Any  # the job's config, as the recipe is given it
    job_logger: Any  # runtime.job_logger.JobLogger: log_step(...), log_epoch(...)
    dataset: Any  # the job's dataset, or None
    job_dataset_config: Any  # the config node the job's dataset replaces
    rank: int
    world_size: int

    def save_checkpoint_if_due(
        self, epoch: int, total_epochs: Optional[int] = None, step: Optional[int] = None
    ) -> None: ...


# A wrapper's `passes` when it passes its own arguments on.
ITS_ARGUMENTS = "arguments"
CONFIG_NODE = re.compile(r"self\.cfg(\.[A-Za-z_][A-Za-z0-9_]*)+")


@dataclass(frozen=True)
class Wrapper:
    """A public interface method of RecipeBase (`load_checkpoint`) that calls the
    recipe's `_`-prefixed one once: a call of the recipe's own that passes the values
    the wrapper passes on may go through it, so the wrapper's own work (heartbeats,
    timing) runs as in a port by hand."""

    # After `self`, as Python spells them: `name`, `name=` (with a default), `/`, `*`,
    # `*args`, `**kwargs`: enough to tell which calls bind.
    parameters: Tuple[str, ...]
    passes: str  # ITS_ARGUMENTS, or `self.cfg.<node>`: that config node, whatever it was given
    returns: bool  # it returns what the `_` method returned

    def binds(self, positional: int, keywords: Tuple[str, ...]) -> bool:
        """Whether a call with `positional` arguments and these keywords binds to it, as
        Python binds them (keyword-only and positional-only parameters, required ones)."""
        try:
            signature(self.parameters).bind(*range(positional), **dict.fromkeys(keywords))
        except TypeError:
            return False
        return True

    @property
    def config_node(self) -> Optional[str]:
        """`checkpointer` for a wrapper that passes `self.cfg.checkpointer`."""
        return self.passes[len("self.cfg.") :] if self.passes != ITS_ARGUMENTS else None

    def describe(self, method: str) -> str:
        what = "its own arguments" if self.passes == ITS_ARGUMENTS else f"`{self.passes}`"
        returned = "and returns its result" if self.returns else "and does not return its result"
        return f"{method}({', '.join(self.parameters)}) calls `_{method}` with {what} {returned}"


def signature(parameters: Tuple[str, ...]) -> inspect.Signature:
    """The signature `parameters` spell (Wrapper.parameters); ValueError if none."""
    kind, made = inspect.Parameter.POSITIONAL_OR_KEYWORD, []
    if "/" in parameters:
        kind = inspect.Parameter.POSITIONAL_ONLY
    for parameter in parameters:
        if parameter == "/":
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
        elif parameter == "*":
            kind = inspect.Parameter.KEYWORD_ONLY
        elif parameter.startswith("**"):
            made.append(inspect.Parameter(parameter[2:], inspect.Parameter.VAR_KEYWORD))
        elif parameter.startswith("*"):
            made.append(inspect.Parameter(parameter[1:], inspect.Parameter.VAR_POSITIONAL))
            kind = inspect.Parameter.KEYWORD_ONLY
        else:
            name, default = parameter.rstrip("="), None if parameter.endswith("=") else inspect.Parameter.empty
            made.append(inspect.Parameter(name, kind, default=default))
    return inspect.Signature(made)


class ContractError(ValueError):
    """A contract that cannot be used: one line naming where it was declared and the key."""


@dataclass(frozen=True)
class RuntimeContract:
    name: str  # `porter`, `guide`, or where a team's was declared
    imports: Tuple[Tuple[str, str], ...]  # (name, module) for each of IMPORTED_NAMES
    log_step: Tuple[str, ...]  # the keywords `job_logger.log_step` accepts, in the order porter passes them
    log_epoch: Tuple[str, ...]
    attributes: FrozenSet[str]  # what RecipeBase sets on the recipe
    save_hook: Optional[str] = None  # the runtime's save hook; None: the recipe saves itself
    wrappers: Tuple[Tuple[str, Wrapper], ...] = ()  # (interface method, its wrapper)

    def wrapper(self, method: str) -> Optional[Wrapper]:
        return dict(self.wrappers).get(method)

    def module_of(self, name: str) -> str:
        return dict(self.imports)[name]

    def provides(self, attribute: str) -> bool:
        """Whether generated code may read `self.<attribute>` from the runtime."""
        return attribute in self.attributes or attribute == self.save_hook

    def with_runtime_module(self, module: str) -> "RuntimeContract":
        """The same contract with porter's `runtime` module renamed: the shorthand of
        `runtime_module` settings and `--runtime-module`."""
        imports = tuple((name, module if where == PORTER_RUNTIME_MODULE else where) for name, where in self.imports)
        return replace(self, imports=imports)

    def with_imports(self, imports: Mapping[str, str]) -> "RuntimeContract":
        merged = {**dict(self.imports), **imports}
        return replace(self, imports=tuple((name, merged[name]) for name in IMPORTED_NAMES))

    def table(self) -> Dict[str, Any]:
        """The contract as the data a team writes (TOML keys), `name` left out."""
        table: Dict[str, Any] = {
            "imports": dict(self.imports),
            "log_step": list(self.log_step),
            "log_epoch": list(self.log_epoch),
            "attributes": sorted(self.attributes),
            "save_hook": self.save_hook or False,
            "wrappers": {
                method: {"parameters": list(w.parameters), "passes": w.passes, "returns": w.returns}
                for method, w in self.wrappers
            },
        }
        return table

    def toml(self) -> str:
        """The contract as a TOML file `--contract` reads back."""
        lines = [f"# runtime contract: {self.name}"]
        table = self.table()
        for key, value in table.items():
            if key not in ("imports", "wrappers"):
                lines.append(f"{key} = {_toml_value(value)}")
        lines += ["", "[imports]"] + [f"{name} = {_toml_value(module)}" for name, module in self.imports]
        for method, wrapper in table["wrappers"].items():
            lines += ["", f"[wrappers.{method}]"] + [f"{key} = {_toml_value(value)}" for key, value in wrapper.items()]
        return "\n".join(lines) + "\n"

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps({"name": self.name, **self.table()}, sort_keys=True).encode()).hexdigest()


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(value)  # a TOML basic string is a JSON string


PORTER = RuntimeContract(
    name="porter",
    imports=tuple((name, PORTER_RUNTIME_MODULE) for name in IMPORTED_NAMES),
    log_step=STEP_FIELDS,
    log_epoch=EPOCH_FIELDS,
    attributes=frozenset(PortedRecipe.__annotations__),
    save_hook=PortedRecipe.save_checkpoint_if_due.__name__,
    # runtime/recipe_base.py's public methods that wrap the recipe's, as `porter contract
    # check runtime` reads them (tested); its `save_checkpoint` passes other values.
    wrappers=(
        ("setup", Wrapper(("cfg",), ITS_ARGUMENTS, returns=False)),
        ("train", Wrapper((), ITS_ARGUMENTS, returns=False)),
        ("cleanup", Wrapper((), ITS_ARGUMENTS, returns=False)),
    ),
)

GUIDE = RuntimeContract(
    name="guide",
    imports=(
        ("Dataset", "torch.utils.data"),
        ("RecipeBase", PORTER_RUNTIME_MODULE),
        ("run_recipe", PORTER_RUNTIME_MODULE),
    ),
    log_step=(
        "gpu_rank",
        "step_num",
        "step_len",
        "step_loss",
        "step_lr",
        "step_peak_memory_active",
        "step_peak_memory_alloc",
        "step_peak_memory_reserved",
        "step_time_elapsed_s",
        "epoch_num",
        "epoch_len",
    ),
    log_epoch=("gpu_rank", "epoch_num", "epoch_len", "epoch_time_elapsed_s"),
    attributes=frozenset({"job_id", "user_id", "cfg", "dataset", "job_logger", "rank"}),
)

_BY_NAME = {contract.name: contract for contract in (PORTER, GUIDE)}
_KEYS = (
    "base",
    "imports",
    "log_step",
    "log_epoch",
    "attributes",
    "save_hook",
    "wrappers",
    "wrappers_forward_arguments",
)
# The interface methods a recipe may call on itself, whose wrappers a contract may declare.
WRAPPED_METHODS = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup")


def load(spec: Union[str, Mapping[str, Any]], base: Path = Path("."), where: str = "contract") -> RuntimeContract:
    """The contract `spec` names: `porter`, `guide`, a TOML file (relative to `base`),
    or a table of the file's keys. ContractError says what is wrong, in one line."""
    if isinstance(spec, Mapping):
        return from_table(spec, where, name=where)
    if not isinstance(spec, str) or not spec:
        raise ContractError(f"{where}: expected `porter`, `guide`, a TOML file or a table, got {spec!r}")
    if spec in _BY_NAME:
        return _BY_NAME[spec]
    path = base / spec
    try:
        table = read_toml(path)
    except FileNotFoundError:
        raise ContractError(
            f"{where}: {spec!r} is neither `porter`, `guide` nor a contract file ({path} does not exist)"
        ) from None
    except ValueError as error:
        raise ContractError(f"{path}: cannot read the contract: {error}") from error
    return from_table(table, str(path), name=str(spec))


def from_table(table: Mapping[str, Any], where: str, name: str) -> RuntimeContract:
    """A team's contract from its data; keys it leaves out come from `base` (default
    `guide`)."""
    for key in table:
        if key not in _KEYS:
            raise ContractError(f"{where}: {key}: unknown key (known: {', '.join(_KEYS)})")
    base_name = table.get("base", "guide")
    if base_name not in _BY_NAME:
        raise ContractError(f"{where}: base: expected one of {', '.join(NAMED)}, got {base_name!r}")
    contract = replace(_BY_NAME[base_name], name=name)
    if "imports" in table:
        imports = table["imports"]
        if not isinstance(imports, Mapping):
            raise ContractError(f"{where}: imports: expected a table of name = module")
        for key, module in imports.items():
            if key not in IMPORTED_NAMES:
                raise ContractError(f"{where}: imports.{key}: generated code imports only {', '.join(IMPORTED_NAMES)}")
            if not isinstance(module, str) or not MODULE_PATH.fullmatch(module):
                raise ContractError(f"{where}: imports.{key}: {module!r} is not a module path like my_platform.runtime")
        contract = contract.with_imports(imports)
    for key, known in (("log_step", STEP_FIELDS), ("log_epoch", EPOCH_FIELDS)):
        if key in table:
            keywords = _names(table[key], f"{where}: {key}")
            unknown = [keyword for keyword in keywords if keyword not in known]
            if unknown:
                raise ContractError(
                    f"{where}: {key}: porter has no value for `{unknown[0]}` (it can pass {', '.join(known)})"
                )
            # porter passes them in its event schema's order
            contract = replace(contract, **{key: tuple(keyword for keyword in known if keyword in keywords)})
    if "attributes" in table:
        contract = replace(contract, attributes=frozenset(_names(table["attributes"], f"{where}: attributes")))
    if "save_hook" in table:
        hook = table["save_hook"]
        if hook is False or hook == "":
            hook = None
        elif not isinstance(hook, str) or not _IDENTIFIER.fullmatch(hook):
            raise ContractError(f"{where}: save_hook: expected a method name, or false for none, got {hook!r}")
        contract = replace(contract, save_hook=hook)
    if "wrappers_forward_arguments" in table:  # the shorthand of earlier contract files
        forward = table["wrappers_forward_arguments"]
        if not isinstance(forward, bool):
            raise ContractError(f"{where}: wrappers_forward_arguments: expected true or false, got {forward!r}")
        passing_on = Wrapper(("*args", "**kwargs"), ITS_ARGUMENTS, returns=True)
        contract = replace(contract, wrappers=tuple((m, passing_on) for m in WRAPPED_METHODS) if forward else ())
    if "wrappers" in table:
        contract = replace(contract, wrappers=_wrappers(table["wrappers"], f"{where}: wrappers"))
    return contract


def _wrappers(value: Any, where: str) -> Tuple[Tuple[str, Wrapper], ...]:
    if not isinstance(value, Mapping):
        raise ContractError(f"{where}: expected a table of method = {{parameters, passes, returns}}")
    wrappers = []
    for method, spec in value.items():
        here = f"{where}.{method}"
        if method not in WRAPPED_METHODS:
            raise ContractError(f"{here}: not an interface method ({', '.join(WRAPPED_METHODS)})")
        if not isinstance(spec, Mapping) or set(spec) != {"parameters", "passes", "returns"}:
            raise ContractError(f"{here}: expected the keys parameters, passes and returns")
        parameters = spec["parameters"]
        try:
            if not isinstance(parameters, list) or not all(
                isinstance(p, str) and _PARAMETER.fullmatch(p) for p in parameters
            ):
                raise ValueError
            signature(tuple(parameters))
        except ValueError:
            raise ContractError(
                f"{here}.parameters: expected the parameters after `self` as Python orders them "
                "(`name`, `name=` with a default, `/`, `*`, `*args`, `**kwargs`)"
            ) from None
        passes = spec["passes"]
        if passes != ITS_ARGUMENTS and not (isinstance(passes, str) and CONFIG_NODE.fullmatch(passes)):
            raise ContractError(f"{here}.passes: expected {ITS_ARGUMENTS!r} or a node of self.cfg, got {passes!r}")
        if not isinstance(spec["returns"], bool):
            raise ContractError(f"{here}.returns: expected true or false")
        wrappers.append((method, Wrapper(tuple(parameters), passes, spec["returns"])))
    return tuple(sorted(wrappers, key=lambda pair: WRAPPED_METHODS.index(pair[0])))


def _names(value: Any, where: str) -> Tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and _IDENTIFIER.fullmatch(item) for item in value):
        raise ContractError(f"{where}: expected a list of names")
    return tuple(value)
