"""Checks every ported module passes before it is written.

A failure here means porter itself went wrong on this file (a rule matched where it
should not have, or a template reads a name the recipe lacks); the file is reported as
failed and nothing is written.
"""

from __future__ import annotations

import ast
from collections import Counter
from dataclasses import dataclass, field
from typing import Collection, List

from pyflakes import messages as pyflakes_messages
from pyflakes.checker import Checker, Importation, ModuleScope

ENTRY_POINT_ARGS = [("job_id", "str"), ("user_id", "str"), ("cfg", "DictConfig"), ("dataset", "Dataset")]
PUBLIC_INTERFACE = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup", "__init__")


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
                name
                for name, binding in scope.items()
                if isinstance(binding, Importation) and not binding.used
            )
    return result


def invariant_violations(tree: ast.Module, skipped: Collection[str] = ()) -> List[str]:
    """What a ported module must look like, save for what `skipped` rules would do;
    empty when it does."""
    problems: List[str] = []
    base = "FTRecipeInterface" if "P001" in skipped else "RecipeBase"
    classes = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and any(_last_name(b) == base for b in node.bases)
    ]
    if len(classes) != 1:
        return [f"expected one {base} subclass, found {len(classes)}"]
    (cls,) = classes
    methods = {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}
    if "P001" not in skipped:
        problems += [f"public method `{name}` left" for name in PUBLIC_INTERFACE if name in methods]
    if "P003" not in skipped and any(
        isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body
    ):
        problems.append("`__main__` block left")
    entry = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "recipe_main"]
    if "P002" not in skipped:
        problems += _entry_point_problems(entry)
    train = methods.get("train" if "P001" in skipped else "_train")
    for rule, event in (("P006", "log_step"), ("P007", "log_epoch")):
        if train is None or rule in skipped:
            continue
        count = sum(
            1
            for node in ast.walk(train)
            if isinstance(node, ast.Call) and ast.unparse(node.func) == f"self.job_logger.{event}"
        )
        if count != 1:
            problems.append(f"_train calls job_logger.{event} {count} times")
    return problems


def _entry_point_problems(entry: List[ast.FunctionDef]) -> List[str]:
    if len(entry) != 1:
        return ["expected one recipe_main"]
    (main,) = entry
    problems = []
    if any(ast.unparse(d) == "config.parse" for d in main.decorator_list):
        problems.append("recipe_main still decorated with @config.parse")
    args = [(a.arg, ast.unparse(a.annotation) if a.annotation else None) for a in main.args.args]
    if args != ENTRY_POINT_ARGS or ast.unparse(main.returns or ast.Constant(None)) != "None":
        problems.append(f"recipe_main signature is {args}")
    runs = [n for n in ast.walk(main) if isinstance(n, ast.Call) and _last_name(n.func) == "run_recipe"]
    if len(runs) != 1:
        problems.append(f"recipe_main calls run_recipe {len(runs)} times")
    return problems


def _last_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""
