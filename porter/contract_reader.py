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

from runtime.contract import GUIDE, IMPORTED_NAMES, RuntimeContract, SAVE_HOOK_ARGUMENTS
from runtime.events import EPOCH_FIELDS, STEP_FIELDS

INTERFACE = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup")
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
    forward = _wrappers_forward(base, reading)
    for name in sorted(getattr(base, "__abstractmethods__", ())):
        reading.facts.append(
            f"RecipeBase declares `{name}` abstract: a recipe that lacks it (torchtune main's recipes without "
            "`load_checkpoint`, say) cannot be built on this runtime"
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
        wrappers_forward_arguments=forward,
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
    """The job logger's class: named (MODULE:CLASS), or as RecipeBase annotates
    `job_logger` (an annotation, or a property's return type)."""
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
            hint = typing.get_type_hints(member.fget).get("return")
        else:
            hint = typing.get_type_hints(base).get("job_logger")
    except Exception as error:
        reading.problems.append(
            f"cannot resolve RecipeBase's annotation of `job_logger` ({error}): name it with --job-logger MODULE:CLASS"
        )
        return None
    if not isinstance(hint, type):
        reading.problems.append(
            "RecipeBase does not annotate `job_logger` with a class: name it with --job-logger MODULE:CLASS"
        )
        return None
    reading.facts.append(f"job logger: {hint.__module__}.{hint.__qualname__}")
    return hint


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


def _wrappers_forward(base: type, reading: Reading) -> bool:
    """Whether every public interface method RecipeBase has returns the `_`-prefixed
    one's result, called with all its own parameters: then the recipe's own calls
    (`self.load_checkpoint(...)`) may go through them."""
    present = [name for name in INTERFACE if callable(getattr(base, name, None))]
    if not present:
        reading.facts.append("no public interface methods: the recipe's own calls go to its renamed methods")
        return False
    for name in present:
        tree = _source_tree(getattr(base, name))
        if tree is None:
            reading.facts.append(
                f"cannot read the source of RecipeBase.{name}: the recipe's own calls go to its renamed methods"
            )
            return False
        if not _returns_forwarded_call(tree, name):
            reading.facts.append(
                f"RecipeBase.{name} does not return `self._{name}(...)` called with all its arguments: "
                "the recipe's own calls go to its renamed methods"
            )
            return False
    reading.facts.append(
        f"RecipeBase's {', '.join(present)} pass their arguments on: the recipe's own calls go through them"
    )
    return True


def _returns_forwarded_call(tree: ast.AST, name: str) -> bool:
    function = next(node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)))
    args = function.args
    positional = [a.arg for a in (*args.posonlyargs, *args.args)][1:]
    keyword_only = [a.arg for a in args.kwonlyargs]
    for node in ast.walk(function):
        call = node.value if isinstance(node, ast.Return) else None
        if not (isinstance(call, ast.Call) and ast.unparse(call.func) == f"self._{name}"):
            continue
        passed_positional = [ast.unparse(a) for a in call.args]
        passed_keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
        expected = positional + ([f"*{args.vararg.arg}"] if args.vararg else [])
        if passed_positional != expected and not (
            not passed_positional and all(passed_keywords.get(p) == p for p in positional)
        ):
            continue
        if any(passed_keywords.get(k) != k for k in keyword_only):
            continue
        if args.kwarg is not None and passed_keywords.get(None) != args.kwarg.arg:
            continue
        return True
    return False


def _source_tree(function: Callable) -> Optional[ast.AST]:
    try:
        return ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
