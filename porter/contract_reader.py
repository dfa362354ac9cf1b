"""Reads the runtime contract off a team's runtime: `porter contract check MODULE ...`.

Everything comes from what the runtime declares: the signatures of its `RecipeBase`,
its `run_recipe` and its job logger's `log_step` and `log_epoch`, the attributes its
`RecipeBase.__init__` sets, and the bodies of its public interface methods. Where one
cannot be read the reading says so and names what to declare by hand; it never
guesses. What makes the runtime one porter cannot target is a problem (exit 2).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
import typing
from dataclasses import dataclass, field, replace
from typing import Any, Callable, List, Optional, Sequence, Tuple

from runtime.contract import (
    CONFIG_NODE,
    GUIDE,
    IMPORTED_NAMES,
    ITS_ARGUMENTS,
    RuntimeContract,
    SAVE_HOOK_ARGUMENTS,
    WRAPPED_METHODS,
    Wrapper,
)
from runtime.events import EPOCH_FIELDS, STEP_FIELDS

_GENERATED_CALL = ("recipe_class", "job_id", "user_id", "cfg", "dataset")  # how recipe_main calls run_recipe


@dataclass
class Reading:
    contract: Optional[RuntimeContract]  # None when a problem leaves porter nothing to target
    facts: List[str] = field(default_factory=list)  # what was read
    problems: List[str] = field(default_factory=list)  # why porter cannot target it

    def differences(self, other: RuntimeContract = GUIDE) -> List[str]:
        """Where the contract read differs from `other` (the guide's)."""
        if self.contract is None:
            return []
        ours, theirs = self.contract.table(), other.table()
        found = []
        for key in ours:
            if ours[key] == theirs[key]:
                continue
            if isinstance(ours[key], list) and key != "imports":
                extra = [item for item in ours[key] if item not in theirs[key]]
                missing = [item for item in theirs[key] if item not in ours[key]]
                parts = [f"adds {', '.join(extra)}" if extra else "", f"lacks {', '.join(missing)}" if missing else ""]
                found.append(f"{key}: " + "; ".join(part for part in parts if part))
            else:
                found.append(f"{key}: {_shown(key, ours[key])} (the {other.name}'s: {_shown(key, theirs[key])})")
        return found


def _shown(key: str, value: Any) -> str:
    if key == "wrappers":
        return (
            "; ".join(
                f"{method} hands `_{method}` {'its arguments' if w['passes'] == ITS_ARGUMENTS else w['passes']}"
                for method, w in value.items()
            )
            or "none"
        )
    if isinstance(value, dict):
        return ", ".join(f"{name} from {module}" for name, module in value.items())
    if key == "save_hook" and value is False:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def read_runtime(modules: Sequence[str], job_logger: Optional[str] = None, save_hook: Optional[str] = None) -> Reading:
    reading = Reading(contract=None)
    imported = []
    for name in modules:
        try:
            imported.append(importlib.import_module(name))
        except Exception as error:  # a team's module may raise anything at import
            reading.problems.append(f"{name}: cannot import: {type(error).__name__}: {error}".splitlines()[0])
    if reading.problems:
        return reading
    found = {name: next((module for module in imported if hasattr(module, name)), None) for name in IMPORTED_NAMES}
    for name in ("RecipeBase", "run_recipe"):
        if found[name] is None:
            reading.problems.append(f"none of {', '.join(modules)} has `{name}`")
    if reading.problems:
        return reading
    imports = {name: module.__name__ for name, module in found.items() if module is not None}
    imports.setdefault("Dataset", GUIDE.module_of("Dataset"))
    base = found["RecipeBase"].RecipeBase
    reading.facts.append(
        f"RecipeBase from {imports['RecipeBase']}, run_recipe from {imports['run_recipe']}, Dataset from {imports['Dataset']}"
    )
    _check_run_recipe(found["run_recipe"].run_recipe, reading)
    attributes = _attributes(base, reading)
    logger = _job_logger_class(base, job_logger, reading)
    log_step = _keywords(logger, "log_step", STEP_FIELDS, reading) if logger is not None else None
    log_epoch = _keywords(logger, "log_epoch", EPOCH_FIELDS, reading) if logger is not None else None
    hook = _save_hook(base, save_hook, reading)
    wrappers = _wrappers(base, reading)
    abstract = sorted(getattr(base, "__abstractmethods__", ()))
    if abstract:
        reading.facts.append(
            f"RecipeBase declares abstract: {', '.join(f'`{name}`' for name in abstract)}; a port defines only the "
            "methods its recipe has, and one that lacks any of these cannot be built on this runtime"
        )
    if reading.problems or attributes is None or log_step is None or log_epoch is None:
        return reading
    reading.contract = replace(
        GUIDE,
        name=", ".join(modules),
        imports=tuple((name, imports[name]) for name in IMPORTED_NAMES),
        log_step=log_step,
        log_epoch=log_epoch,
        attributes=attributes,
        save_hook=hook,
        wrappers=wrappers,
    )
    return reading


def _signature(function: Callable, what: str, reading: Reading) -> Optional[inspect.Signature]:
    try:
        return inspect.signature(function)
    except (TypeError, ValueError) as error:
        reading.problems.append(f"cannot read the signature of {what}: {error}")
        return None


def _check_run_recipe(run_recipe: Callable, reading: Reading) -> None:
    signature = _signature(run_recipe, "run_recipe", reading)
    if signature is None:
        return
    try:
        signature.bind(*_GENERATED_CALL)
    except TypeError as error:
        reading.problems.append(
            f"run_recipe{signature}: generated recipes call it as run_recipe({', '.join(_GENERATED_CALL)}): {error}"
        )
        return
    reading.facts.append(f"run_recipe{signature}")


def _attributes(base: type, reading: Reading) -> Optional[frozenset]:
    """The public names a RecipeBase gives a recipe: what its `__init__` assigns on
    `self`, its properties and class annotations."""
    names = {name for name, value in vars(base).items() if isinstance(value, property) and not name.startswith("_")}
    for klass in base.__mro__:
        names |= {name for name in getattr(klass, "__annotations__", {}) if not name.startswith("_")}
    init = base.__dict__.get("__init__")
    if init is not None:
        tree = _source_tree(init)
        if tree is None:
            reading.problems.append(
                "cannot read the source of RecipeBase.__init__, so not the attributes it sets: declare `attributes` in a contract file"
            )
            return None
        names |= {
            node.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
            and not node.attr.startswith("_")
        }
    reading.facts.append(f"RecipeBase gives a recipe: {', '.join(sorted(names)) or 'nothing'}")
    return frozenset(names)


def _job_logger_class(base: type, named: Optional[str], reading: Reading) -> Optional[type]:
    """The job logger's class: named (MODULE:CLASS), or as RecipeBase declares it: its
    annotation of `job_logger` (of the attribute, or a property's return type), or
    `__init__`'s annotation of the parameter it assigns `self.job_logger` from."""
    if named is not None:
        module, _, name = named.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except Exception as error:
            reading.problems.append(
                f"--job-logger {named}: cannot import: {type(error).__name__}: {error}".splitlines()[0]
            )
            return None
    member = inspect.getattr_static(base, "job_logger", None)
    try:
        if isinstance(member, property) and member.fget is not None:
            hint, where = typing.get_type_hints(member.fget).get("return"), "the `job_logger` property's return type"
        else:
            hint, where = typing.get_type_hints(base).get("job_logger"), "the annotation of `job_logger`"
        if hint is None:
            hint, where = _assigned_from_parameter(base)
    except Exception as error:
        reading.problems.append(
            f"cannot resolve RecipeBase's annotation of `job_logger` ({error}): name it with --job-logger MODULE:CLASS"
        )
        return None
    if not isinstance(hint, type):
        reading.problems.append(
            "RecipeBase declares no class for `job_logger` (no annotation of the attribute, and `__init__` does not "
            "assign it from an annotated parameter): name it with --job-logger MODULE:CLASS"
        )
        return None
    reading.facts.append(f"job logger: {hint.__module__}.{hint.__qualname__} ({where})")
    return hint


def _assigned_from_parameter(base: type) -> Tuple[Any, str]:
    """The annotation of the `__init__` parameter `self.job_logger = <parameter>` assigns."""
    init = base.__dict__.get("__init__")
    tree = _source_tree(init) if init is not None else None
    if tree is None:
        return None, ""
    sources = {
        node.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Name)
        and any(ast.unparse(target) == "self.job_logger" for target in node.targets)
    }
    if len(sources) != 1:
        return None, ""
    (parameter,) = sources
    return typing.get_type_hints(init).get(parameter), f"`__init__`'s parameter `{parameter}`"


def _keywords(logger: type, method: str, known: Tuple[str, ...], reading: Reading) -> Optional[Tuple[str, ...]]:
    """The keywords of `logger.<method>` porter passes: those it has a value for."""
    function = getattr(logger, method, None)
    if function is None:
        reading.problems.append(f"{logger.__qualname__} has no `{method}`")
        return None
    signature = _signature(function, f"{logger.__qualname__}.{method}", reading)
    if signature is None:
        return None
    parameters = list(signature.parameters.values())[1:]  # self
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        reading.problems.append(
            f"{logger.__qualname__}.{method}{signature} takes **kwargs: which keywords it accepts cannot be read; "
            "declare them in a contract file"
        )
        return None
    accepted = []
    for parameter in parameters:
        if parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            reading.problems.append(f"{logger.__qualname__}.{method}: `{parameter.name}` cannot be passed by keyword")
        elif parameter.name in known:
            accepted.append(parameter.name)
        elif parameter.default is inspect.Parameter.empty:
            reading.problems.append(
                f"{logger.__qualname__}.{method} requires `{parameter.name}`, which porter has no value for"
            )
        else:
            reading.facts.append(
                f"{logger.__qualname__}.{method}: `{parameter.name}` has a default; porter leaves it out"
            )
    reading.facts.append(f"{method} takes: {', '.join(accepted)}")
    return tuple(name for name in known if name in accepted)


def _save_hook(base: type, named: Optional[str], reading: Reading) -> Optional[str]:
    name = named or ("save_checkpoint_if_due" if hasattr(base, "save_checkpoint_if_due") else None)
    if name is None:
        reading.facts.append("no save hook: recipes keep saving themselves")
        return None
    hook = getattr(base, name, None)
    if not callable(hook):
        reading.problems.append(f"RecipeBase has no method `{name}` for a save hook")
        return None
    signature = _signature(hook, f"RecipeBase.{name}", reading)
    if signature is None:
        return None
    for arguments in ({"epoch": 0, "step": 1}, {"epoch": 0, "total_epochs": 1}):
        try:
            signature.bind(None, **arguments)
        except TypeError as error:
            reading.problems.append(
                f"RecipeBase.{name}{signature}: a save hook is called with the keywords {', '.join(SAVE_HOOK_ARGUMENTS)}: {error}"
            )
            return None
    reading.facts.append(f"save hook: RecipeBase.{name}{signature}")
    return name


def _wrappers(base: type, reading: Reading) -> Tuple[Tuple[str, Wrapper], ...]:
    """Each public interface method RecipeBase has, read as a wrapper of the recipe's
    `_`-prefixed one, and said: which the port will call, and why."""
    wrappers = []
    for name in WRAPPED_METHODS:
        member = inspect.getattr_static(base, name, None)
        if not callable(member):
            continue
        wrapper, why_not = _read_wrapper(member, name)
        if wrapper is None:
            reading.facts.append(f"RecipeBase.{name} {why_not}: the port calls the recipe's `_{name}` directly")
            continue
        when = (
            "with the same arguments"
            if wrapper.passes == ITS_ARGUMENTS
            else f"where the recipe passes that node (`cfg.{wrapper.config_node}` of its `setup(cfg)`)"
        )
        reading.facts.append(f"RecipeBase.{wrapper.describe(name)}: the port calls `self.{name}(...)` {when}")
        wrappers.append((name, wrapper))
    return tuple(wrappers)


def _read_wrapper(function: Callable, name: str) -> Tuple[Optional[Wrapper], str]:
    """The wrapper `function` is, or None and why not. Never a guess: a body that does
    anything but pass its own unchanged arguments, or one node of `self.cfg`, to exactly
    one call of `self._<name>` is not one."""
    tree = _source_tree(function)
    if tree is None:
        return None, "has no source porter can read"
    definition = next(node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    args = definition.args
    parameters = _parameters(args)
    calls = [
        node
        for node in ast.walk(definition)
        if isinstance(node, ast.Call) and ast.unparse(node.func) == f"self._{name}"
    ]
    if len(calls) != 1:
        return None, f"calls `self._{name}` {len(calls)} times" if calls else f"does not call `self._{name}`"
    call = calls[0]
    names = {p.strip("*=") for p in parameters} - {"", "/"}
    rebound = sorted(
        {node.id for node in ast.walk(definition) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
        & names
    )
    if _passes_its_arguments(call, args):
        if rebound:
            return None, f"changes {', '.join(f'`{n}`' for n in rebound)} before passing it on"
        passes = ITS_ARGUMENTS
    else:
        values = [*call.args, *(keyword.value for keyword in call.keywords)]
        node = ast.unparse(values[0]) if len(values) == 1 else ""
        if not CONFIG_NODE.fullmatch(node):
            return None, f"calls `self._{name}` with values other than its own arguments or one node of `self.cfg`"
        passes = node
    return Wrapper(parameters, passes, returns=_returns(definition, call)), ""


def _parameters(args: ast.arguments) -> Tuple[str, ...]:
    """A function's parameters after `self`, spelled as `Wrapper.parameters` are."""
    positional = [*args.posonlyargs, *args.args]
    defaulted = {id(a) for a in positional[len(positional) - len(args.defaults) :]}
    spelled = [a.arg + ("=" if id(a) in defaulted else "") for a in positional]
    if args.posonlyargs:
        spelled.insert(len(args.posonlyargs), "/")
    spelled = spelled[1:]  # self
    if args.vararg:
        spelled.append(f"*{args.vararg.arg}")
    elif args.kwonlyargs:
        spelled.append("*")
    spelled += [a.arg + ("=" if d is not None else "") for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)]
    if args.kwarg:
        spelled.append(f"**{args.kwarg.arg}")
    return tuple(spelled)


def _passes_its_arguments(call: ast.Call, args: ast.arguments) -> bool:
    positional = [a.arg for a in (*args.posonlyargs, *args.args)][1:]
    passed_positional = [ast.unparse(a) for a in call.args]
    passed_keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    expected = positional + ([f"*{args.vararg.arg}"] if args.vararg else [])
    if passed_positional != expected and not (
        not passed_positional and all(passed_keywords.get(p) == p for p in positional)
    ):
        return False
    if any(passed_keywords.get(a.arg) != a.arg for a in args.kwonlyargs):
        return False
    return args.kwarg is None or passed_keywords.get(None) == args.kwarg.arg


def _returns(definition: ast.AST, call: ast.Call) -> bool:
    """Whether the function returns the call's result: `return self._m(...)`, or
    `result = self._m(...)` ... `return result` with `result` bound once."""
    returned = {ast.unparse(node.value) for node in ast.walk(definition) if isinstance(node, ast.Return) and node.value}
    if ast.unparse(call) in returned:
        return True
    holders = [
        node.targets[0].id
        for node in ast.walk(definition)
        if isinstance(node, ast.Assign)
        and node.value is call
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
    ]
    if not holders:
        return False
    bindings = [n for n in ast.walk(definition) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    return sum(1 for n in bindings if n.id == holders[0]) == 1 and holders[0] in returned


def _source_tree(function: Callable) -> Optional[ast.AST]:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
