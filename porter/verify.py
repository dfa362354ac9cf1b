"""Checks every ported module passes before it is written, whatever the rules did.

A failure here means porter itself went wrong on this file (a rule matched where it
should not have, or a template reads a name the recipe lacks); the file is reported as
failed and nothing is written. Each rule's own post-condition is its `check`.
"""

from __future__ import annotations

import ast
import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import libcst as cst
from pyflakes import messages as pyflakes_messages
from pyflakes.checker import Checker, Importation, ModuleScope

from porter.syntax import node_code


@dataclass
class NameCheck:
    undefined: List[str] = field(default_factory=list)
    unused_imports: List[str] = field(default_factory=list)  # local names
    unused_variables: List[str] = field(default_factory=list)  # one entry per assignment

    def newly(self, before: "NameCheck") -> "NameCheck":
        """What is wrong here and was not in `before`, the source's own check."""

        def new(after: List[str], was: List[str]) -> List[str]:
            return sorted((Counter(after) - Counter(was)).elements())

        return NameCheck(
            new(self.undefined, before.undefined),
            new(self.unused_imports, before.unused_imports),
            new(self.unused_variables, before.unused_variables),
        )


def check_names(tree: ast.Module) -> NameCheck:
    """pyflakes' undefined names, unused module-level imports and unused locals."""
    checker = Checker(tree)
    result = NameCheck()
    for message in checker.messages:
        if isinstance(message, pyflakes_messages.UndefinedName):
            result.undefined.append(message.message_args[0])
        elif isinstance(message, pyflakes_messages.UnusedVariable):
            result.unused_variables.append(message.message_args[0])
    result.undefined.sort()
    result.unused_variables.sort()
    for scope in checker.deadScopes:
        if isinstance(scope, ModuleScope):
            result.unused_imports = sorted(
                name for name, binding in scope.items() if isinstance(binding, Importation) and not binding.used
            )
    return result


def ported_method(ported: ast.Module, shape, method) -> Optional[ast.FunctionDef]:
    """The ported form of the source's `method` (a libcst FunctionDef of the recipe
    class): found by its name, `_`-prefixed or not, in the ported recipe class."""
    name = method.name.value
    for node in ported.body:
        if isinstance(node, ast.ClassDef) and node.name == shape.cls.name.value:
            methods = {item.name: item for item in node.body if isinstance(item, ast.FunctionDef)}
            return methods.get(name) or methods.get(f"_{name}")
    return None


def called_once(ported: ast.Module, shape, method, dotted: str) -> List[str]:
    """The problem, if the ported `method` does not call `dotted` exactly once."""
    node = ported_method(ported, shape, method)
    calls = (
        sum(1 for inner in ast.walk(node) if isinstance(inner, ast.Call) and dotted_name(inner.func) == dotted)
        if node
        else 0
    )
    return [] if calls == 1 else [f"`{method.name.value}` calls {dotted} {calls} times"]


def dotted_name(node: ast.AST) -> Optional[str]:
    """`a.b.c` for a Name/Attribute chain, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr}" if base is not None else None
    return None


def contract_problems(
    inserted: Sequence[Tuple[cst.BaseStatement, cst.BaseStatement]], shape, contract
) -> List[Tuple[cst.BaseStatement, str]]:
    """What the inserted code uses that the runtime contract does not provide, each
    with the source statement it went at: a `self.<name>` that neither the recipe nor
    the contract provides (a recipe with other base classes than FTRecipeInterface may
    get attributes from them: not checked), a job-logger method or keyword the
    contract's logger does not take. Each would fail at run time, not here."""
    problems: List[Tuple[cst.BaseStatement, str]] = []
    accepted = {"log_step": contract.log_step, "log_epoch": contract.log_epoch}
    for stmt, anchor in inserted:
        reads, calls = _uses(node_code(stmt).strip())
        for name in reads:
            if shape.attributes is not None and name not in shape.attributes and not contract.provides(name):
                problems.append(
                    (
                        anchor,
                        f"the inserted code reads `self.{name}`, which neither {shape.cls.name.value} sets nor the runtime contract `{contract.name}` provides",
                    )
                )
        for method, keywords in calls:
            if method not in accepted:
                problems.append(
                    (
                        anchor,
                        f"the inserted code calls `self.job_logger.{method}`, which the runtime contract `{contract.name}` does not declare",
                    )
                )
                continue
            for keyword in keywords:
                if keyword not in accepted[method]:
                    problems.append(
                        (
                            anchor,
                            f"the inserted `{method}` passes `{keyword}`, which the runtime contract `{contract.name}` does not accept",
                        )
                    )
    return list(dict.fromkeys(problems))


@functools.lru_cache(maxsize=None)
def _uses(code: str) -> Tuple[Tuple[str, ...], Tuple[Tuple[str, Tuple[str, ...]], ...]]:
    """The `self.<name>`s `code` reads, and (method, keywords) of each of its
    `self.job_logger.<method>(...)` calls. Snippets repeat from file to file: each
    distinct one is parsed once."""
    nodes = list(ast.walk(ast.parse(code)))
    reads = tuple(
        node.attr
        for node in nodes
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "self"
        and isinstance(node.ctx, ast.Load)
    )
    calls = tuple(
        (node.func.attr, tuple(keyword.arg for keyword in node.keywords))
        for node in nodes
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and dotted_name(node.func.value) == "self.job_logger"
    )
    return reads, calls
