"""P002 recipe-main: the entry point takes the job and hands the recipe to run_recipe.

`@config.parse` goes, the signature becomes the one in templates/recipe_main.py.j2, and
the statements that build and drive the recipe (`recipe = R(cfg=cfg)`, `recipe.setup`,
`recipe.train`, `recipe.cleanup`) become one `run_recipe(...)` call where `train` was.
Everything else in the body (the distributed check, the process-group init, thread
setup, `config.log_config`) stays, in order: what ran before training still runs
before it, what ran after still runs after. A statement that sat between two lifecycle
calls now runs before or after all of them, which is noted. A `recipe.train()` inside a
`with` (a profiler, anomaly detection) has `run_recipe(...)` take its place there, noted.
A recipe_main that does more with the recipe than run_recipe does, or calls a
lifecycle method under a condition, is refused.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import List, Optional, Tuple

import libcst as cst
import libcst.matchers as m

from porter.edits import Edits
from porter.errors import PortError
from porter.imports import Needed
from porter.outcomes import CHANGED, MOVED, Note
from porter.rules.base import PortingRule
from porter.shape import RECIPE, RecipeShape
from porter.syntax import block_statements, called_name, node_code, single_small_statement

ENTRY_POINT = "recipe_main"
_CONFIG_PARSE = m.Decorator(decorator=m.Attribute(value=m.Name("config"), attr=m.Name("parse")))
_DRIVER_METHODS = ("setup", "train", "cleanup")
ENTRY_POINT_ARGS = [("job_id", "str"), ("user_id", "str"), ("cfg", "DictConfig"), ("dataset", "Dataset")]


@dataclass
class Anchors:
    function: cst.FunctionDef
    recipe_class: str
    recipe_statements: List[cst.BaseStatement]  # construction, setup, train, cleanup, as found
    between: List[cst.BaseStatement]  # statements between the first and the last of them
    # The `with` around `recipe.train()` (a profiler, anomaly detection): run_recipe runs in it.
    train_context: Optional[cst.With] = None


class RecipeMain(PortingRule):
    RULE_ID = "P002"
    NAME = "recipe-main"
    DESCRIPTION = (
        "Drop @config.parse from recipe_main, give it the job signature and replace "
        "the recipe's construction and setup/train/cleanup calls with run_recipe()."
    )
    NEEDS = (RECIPE,)
    TEMPLATE = "recipe_main.py.j2"

    def find(self, shape: RecipeShape) -> Anchors:
        class_name = shape.cls.name.value
        functions = [s for s in shape.module.body if isinstance(s, cst.FunctionDef) and s.name.value == ENTRY_POINT]
        if len(functions) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected one module-level `{ENTRY_POINT}`, found {len(functions)}",
                functions[1] if functions else None,
            )
        (function,) = functions
        body = block_statements(function)
        constructions = [stmt for stmt in body if _constructed_class(stmt) == class_name]
        if len(constructions) != 1:
            raise PortError(
                self.RULE_ID,
                f"expected `{ENTRY_POINT}` to build {class_name} once, found {len(constructions)} constructions",
                constructions[1] if constructions else function,
            )
        (construction,) = constructions
        variable = _assigned_name(construction)
        driving = [construction]
        context = None
        for method in _DRIVER_METHODS:
            found = [stmt for stmt in body if called_name(stmt) == f"{variable}.{method}"]
            if not found and method == "train":
                context, found = _train_in_a_with(body, variable)
            if not found:
                nested = [
                    stmt
                    for stmt in body
                    if m.findall(stmt, m.Call(func=m.Attribute(value=m.Name(variable), attr=m.Name(method))))
                ]
                if nested:
                    raise PortError(
                        self.RULE_ID,
                        f"`{variable}.{method}()` is called under `{type(nested[0]).__name__.lower()}` in `{ENTRY_POINT}`, "
                        "not as one of its statements; run_recipe would run the recipe's whole life unconditionally: "
                        f"move the condition out of `{ENTRY_POINT}` (the job system decides what runs)",
                        nested[0],
                    )
            if len(found) != 1:
                raise PortError(
                    self.RULE_ID,
                    f"expected one `{variable}.{method}(...)` call in `{ENTRY_POINT}`, found {len(found)}",
                    found[1] if found else function,
                )
            driving.append(found[0])
        for stmt in driving:
            call = _call(stmt)
            passed = [node_code(arg).strip().rstrip(",").strip() for arg in call.args]
            kind = "construction" if stmt is construction else called_name(stmt).rsplit(".", 1)[-1]
            if passed not in _RUN_RECIPE_PASSES[kind]:
                raise PortError(
                    self.RULE_ID,
                    f"`{node_code(stmt).strip()}` passes `{', '.join(passed)}`, and run_recipe passes the recipe only "
                    "the job's config (`R(cfg)`, `setup(cfg)`, `train()`, `cleanup()`)",
                    stmt,
                )
        others = [
            stmt
            for stmt in shape.index.statements_using_name(function, variable)
            if all(stmt is not driver for driver in driving)
        ]
        if others:
            raise PortError(
                self.RULE_ID,
                f"`{ENTRY_POINT}` uses `{variable}` beyond building it and calling setup, train and cleanup, "
                "which is all run_recipe does",
                others[0],
            )
        inside = _body(context) if context is not None else []
        at_top = [context if any(d is inner for inner in inside) else d for d in driving]
        positions = [index for index, stmt in enumerate(body) if any(stmt is d for d in at_top)]
        between = [stmt for stmt in body[positions[0] : positions[-1] + 1] if all(stmt is not d for d in at_top)]
        recipe_statements = [d for d in driving if d is not construction]
        ordered = [construction, *sorted(recipe_statements, key=lambda d: _position(body, d, context))]
        return Anchors(function, class_name, ordered, between, train_context=context)

    def edit(self, shape: RecipeShape, anchors: Anchors, edits: Edits) -> None:
        (template,) = self.snippet("entry_point", depth=0, recipe_class=anchors.recipe_class)
        (run_recipe_call,) = block_statements(template)
        train = _train_call(anchors)
        for stmt in anchors.recipe_statements:
            if stmt is not train:
                edits.remove(stmt)
        edits.replace(train, [run_recipe_call])
        edits.change(
            anchors.function,
            lambda function: function.with_changes(
                decorators=[d for d in function.decorators if not m.matches(d, _CONFIG_PARSE)],
                params=template.params,
                returns=template.returns,
            ),
        )

    def notes(self, shape: RecipeShape, anchors: Anchors) -> List[Note]:
        body = list(block_statements(anchors.function))
        context = anchors.train_context
        train = _position(body, _train_call(anchors), context)
        notes = []
        if context is not None:
            header = node_code(context).strip().splitlines()[0]
            notes.append(
                self.note(
                    shape.index.line(context),
                    CHANGED,
                    f"`{node_code(_train_call(anchors)).strip()}` ran inside `{header}`; "
                    "`run_recipe(...)` takes its place there, so the recipe's construction, setup and cleanup run "
                    "inside it too",
                )
            )
        for stmt in anchors.between:
            position = body.index(stmt)
            before = [d for d in anchors.recipe_statements if _position(body, d, context) < position][-1]
            after = [d for d in anchors.recipe_statements if _position(body, d, context) > position][0]
            notes.append(
                self.note(
                    shape.index.line(stmt),
                    MOVED,
                    f"`{node_code(stmt).strip().splitlines()[0]}` ran between "
                    f"`{node_code(before).strip()}` and `{node_code(after).strip()}`; it now runs "
                    f"{'before' if position < train else 'after'} `run_recipe(...)`, which builds the recipe and runs "
                    "its setup, train and cleanup",
                )
            )
        return notes

    def imports(self, anchors: Anchors) -> List[Needed]:
        module_of = self.contract.module_of
        return [
            Needed(module_of("Dataset"), "Dataset"),
            Needed(module_of("run_recipe"), "run_recipe"),
            Needed("omegaconf", "DictConfig"),
        ]

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Anchors) -> List[str]:
        entry = [n for n in ported.body if isinstance(n, ast.FunctionDef) and n.name == ENTRY_POINT]
        if len(entry) != 1:
            return [f"expected one {ENTRY_POINT}"]
        (main,) = entry
        problems = []
        if any(ast.unparse(d) == "config.parse" for d in main.decorator_list):
            problems.append(f"{ENTRY_POINT} still decorated with @config.parse")
        args = [(a.arg, ast.unparse(a.annotation) if a.annotation else None) for a in main.args.args]
        if args != ENTRY_POINT_ARGS or ast.unparse(main.returns or ast.Constant(None)) != "None":
            problems.append(f"{ENTRY_POINT} signature is {args}")
        runs = [n for n in ast.walk(main) if isinstance(n, ast.Call) and ast.unparse(n.func).endswith("run_recipe")]
        if len(runs) != 1:
            problems.append(f"{ENTRY_POINT} calls run_recipe {len(runs)} times")
        return problems


# What run_recipe passes to the recipe's construction and lifecycle calls, as a recipe_main writes it.
_RUN_RECIPE_PASSES = {
    "construction": (["cfg=cfg"], ["cfg"]),
    "setup": (["cfg=cfg"], ["cfg"]),
    "train": ([],),
    "cleanup": ([],),
}


def _train_in_a_with(body, variable: str) -> Tuple[Optional[cst.With], List[cst.BaseStatement]]:
    """A `with` statement of `recipe_main` whose own block calls `<variable>.train()`."""
    for stmt in body:
        if isinstance(stmt, cst.With):
            found = [inner for inner in _body(stmt) if called_name(inner) == f"{variable}.train"]
            if found:
                return stmt, found
    return None, []


def _body(stmt: cst.BaseStatement) -> List[cst.BaseStatement]:
    return list(block_statements(stmt))


def _position(body: List[cst.BaseStatement], stmt: cst.BaseStatement, context: Optional[cst.With]) -> int:
    """Where `stmt` is among `recipe_main`'s statements: a call in the `with`, at the `with`."""
    if context is not None and any(stmt is inner for inner in _body(context)):
        stmt = context
    return next(index for index, candidate in enumerate(body) if candidate is stmt)


def _call(stmt: cst.BaseStatement) -> cst.Call:
    small = single_small_statement(stmt)
    return small.value


def _train_call(anchors: Anchors) -> cst.BaseStatement:
    """The `recipe.train()` statement: run_recipe takes its place."""
    return next(stmt for stmt in anchors.recipe_statements if (called_name(stmt) or "").endswith(".train"))


def _assigned_name(stmt: cst.BaseStatement) -> Optional[str]:
    small = single_small_statement(stmt)
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
        return small.targets[0].target.value
    return None


def _constructed_class(stmt: cst.BaseStatement) -> Optional[str]:
    """`R` for a statement `name = R(...)`."""
    small = single_small_statement(stmt)
    if (
        _assigned_name(stmt) is not None
        and isinstance(small.value, cst.Call)
        and isinstance(small.value.func, cst.Name)
    ):
        return small.value.func.value
    return None
