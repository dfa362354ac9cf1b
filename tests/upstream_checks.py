"""Independent checks of a ported module against its upstream source.

Written against the stdlib ast, apart from porter's own verification, so a bug in
porter's checks cannot hide the same bug in its rules.
"""

from __future__ import annotations

import ast
from collections import Counter
from typing import Dict, List

import black
from pyflakes.checker import Checker

STEP_EVENT_ARGS = {
    "gpu_rank": "self.rank",
    "step_num": "self.global_step",
    "step_len": "self._steps_per_epoch * self.total_epochs",
    "step_loss": "float(log_dict['loss'])",
    "step_lr": "log_dict['lr']",
    "step_peak_memory_active": "log_dict.get('peak_memory_active')",
    "step_peak_memory_alloc": "log_dict.get('peak_memory_alloc')",
    "step_peak_memory_reserved": "log_dict.get('peak_memory_reserved')",
    "step_time_elapsed_s": "time_per_step",
    "epoch_num": "curr_epoch + 1",
    "epoch_len": "self.total_epochs",
}
EPOCH_EVENT_ARGS = {
    "gpu_rank": "self.rank",
    "epoch_num": "curr_epoch + 1",
    "epoch_len": "self.total_epochs",
    "epoch_time_elapsed_s": "time.perf_counter() - t_epoch_start",
}
INTERFACE = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup")
REWRITTEN = set(INTERFACE) | {"__init__", "_setup_data"}


def walk_statements(body: List[ast.stmt]):
    """(statement, the list it sits in, its enclosing statements) for every statement."""
    stack = [(body, ())]
    while stack:
        block, parents = stack.pop()
        for stmt in block:
            yield stmt, block, parents
            for name in ("body", "orelse", "finalbody"):
                child = getattr(stmt, name, None)
                if isinstance(child, list) and child and isinstance(child[0], ast.stmt):
                    stack.append((child, parents + (stmt,)))
            for handler in getattr(stmt, "handlers", []):
                stack.append((handler.body, parents + (stmt,)))


def calls_to(body: List[ast.stmt], dotted: str):
    return [
        (stmt, block, parents)
        for stmt, block, parents in walk_statements(body)
        if isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and ast.unparse(stmt.value.func) == dotted
    ]


def keywords(call: ast.Call) -> Dict[str, str]:
    return {kw.arg: ast.unparse(kw.value) for kw in call.keywords}


def recipe_class(tree: ast.Module, base: str) -> ast.ClassDef:
    (cls,) = [
        node
        for node in tree.body
        if isinstance(node, ast.ClassDef) and any(ast.unparse(b).endswith(base) for b in node.bases)
    ]
    return cls


def methods(cls: ast.ClassDef) -> Dict[str, ast.FunctionDef]:
    return {node.name: node for node in cls.body if isinstance(node, ast.FunctionDef)}


def check_port(upstream: str, generated: str) -> None:
    """Assert everything the converter promises about one ported recipe."""
    compile(generated, "<generated>", "exec")
    tree = ast.parse(generated)
    source_tree = ast.parse(upstream)
    source_cls = recipe_class(source_tree, "FTRecipeInterface")
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and any(ast.unparse(b) == "RecipeBase" for b in n.bases)]
    assert len(classes) == 1, "one class with base RecipeBase"
    cls = classes[0]
    assert cls.name == source_cls.name
    assert "FTRecipeInterface" not in generated
    ported = methods(cls)
    for name in INTERFACE + ("__init__",):
        assert name not in ported, f"public `{name}` left"
    assert "_init" in ported and "_train" in ported and "_setup" in ported

    # No @config.parse, no __main__ block; recipe_main has the job signature and hands
    # the recipe class to run_recipe once.
    assert "@config.parse" not in generated
    assert not any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "recipe_main"]
    assert not main.decorator_list
    assert [(a.arg, ast.unparse(a.annotation)) for a in main.args.args] == [
        ("job_id", "str"), ("user_id", "str"), ("cfg", "DictConfig"), ("dataset", "Dataset")]
    assert ast.unparse(main.returns) == "None"
    runs = [n for n in ast.walk(main) if isinstance(n, ast.Call) and ast.unparse(n.func) == "run_recipe"]
    assert len(runs) == 1
    assert [ast.unparse(a) for a in runs[0].args] == [cls.name, "job_id", "user_id", "cfg", "dataset"]
    assert "recipe.setup" not in ast.unparse(main) and "recipe.train" not in ast.unparse(main)
    # recipe_main's other statements survive, in order.
    (source_main,) = [n for n in source_tree.body if isinstance(n, ast.FunctionDef) and n.name == "recipe_main"]
    kept = [ast.unparse(s) for s in source_main.body if "recipe" not in names_in(s)]
    assert [ast.unparse(s) for s in main.body if not (isinstance(s, ast.Expr) and s.value in runs)] == kept

    train = ported["_train"]
    # Checkpoint saving left the training loop.
    for stmt, _, _ in walk_statements(train.body):
        text = ast.unparse(stmt) if not isinstance(stmt, (ast.For, ast.While, ast.With, ast.If)) else ""
        assert "save_checkpoint(" not in text.replace("save_checkpoint_if_due(", ""), f"save left in _train: {text}"

    # The epoch clock starts right above the t0 declaration.
    body = [ast.unparse(s) for s in train.body]
    t0 = body.index("t0 = time.perf_counter()")
    assert body[t0 - 1] == "t_epoch_start = time.perf_counter()"

    # log_step: once, right after the metric-logger call, inside the step-logging block.
    (step,) = calls_to(train.body, "self.job_logger.log_step")
    stmt, block, parents = step
    assert ast.unparse(block[block.index(stmt) - 1].value.func) == "self._metric_logger.log_dict"
    assert "self.global_step % self._log_every_n_steps == 0" in ast.unparse(parents[-1].test)
    assert keywords(stmt.value) == STEP_EVENT_ARGS

    # log_epoch: once per epoch, after `self.epochs_run += 1` and the runtime's
    # checkpoint hook, followed by the reset of the epoch clock.
    (epoch,) = calls_to(train.body, "self.job_logger.log_epoch")
    stmt, block, parents = epoch
    loop = parents[-1]
    assert isinstance(loop, ast.For) and ast.unparse(loop.iter) == "range(self.epochs_run, self.total_epochs)"
    position = block.index(stmt)
    assert [ast.unparse(s) for s in block[position - 2 : position]] == [
        "self.epochs_run += 1",
        "self.save_checkpoint_if_due(epoch=curr_epoch, total_epochs=self.total_epochs)",
    ]
    assert ast.unparse(block[position + 1]) == "t_epoch_start = time.perf_counter()"
    assert keywords(stmt.value) == EPOCH_EVENT_ARGS

    # _setup_data takes the injected dataset first, then the original branches.
    setup_data = ported["_setup_data"]
    (branch,) = [s for s in setup_data.body if isinstance(s, ast.If) and ast.unparse(s.test) == "self.dataset"]
    assert ast.unparse(branch.body[0]) == "ds = self.dataset"
    assert ast.unparse(branch.orelse[0].test).startswith("isinstance(cfg_dataset, ListConfig)")

    # Methods porter does not rewrite are byte-identical to upstream.
    for name, node in methods(source_cls).items():
        if name in REWRITTEN:
            continue
        assert ast.get_source_segment(generated, ported[name]) == ast.get_source_segment(upstream, node), name

    # Formatted like upstream, and no name the port left undefined or unused.
    assert black.format_str(generated, mode=black.Mode()) == generated
    new_messages = Counter(pyflakes_messages(tree)) - Counter(pyflakes_messages(source_tree))
    assert not new_messages, new_messages


def names_in(node: ast.AST) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def pyflakes_messages(tree: ast.Module) -> List[tuple]:
    """(kind, name) of each pyflakes message: undefined and unused names."""
    return [(type(m).__name__, m.message_args[0]) for m in Checker(tree).messages if m.message_args]
