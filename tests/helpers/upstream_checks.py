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

SFT_STEP_EVENT = {
    "gpu_rank": "self.rank",
    "step_num": "self.global_step",
    "step_len": "self._steps_per_epoch * {total}",
    "step_loss": "float(log_dict['loss'])",
    "step_lr": "log_dict['lr']",
    "step_peak_memory_active": "log_dict.get('peak_memory_active')",
    "step_peak_memory_alloc": "log_dict.get('peak_memory_alloc')",
    "step_peak_memory_reserved": "log_dict.get('peak_memory_reserved')",
    "step_time_elapsed_s": "time_per_step",
    "epoch_num": "curr_epoch + 1",
    "epoch_len": "{total}",
    "step_tokens_per_s": "log_dict.get('tokens_per_second_per_gpu')",
}
RL_STEP_EVENT = {
    "gpu_rank": "self.rank",
    "step_num": "self._steps_run",
    "step_len": "self._total_steps",
    "step_loss": "float({stats}.loss.detach().mean())",
    "step_lr": "training.get_lr({optimizer})",
    "step_peak_memory_active": "None",
    "step_peak_memory_alloc": "None",
    "step_peak_memory_reserved": "None",
    "step_time_elapsed_s": "time.perf_counter() - t_step_start",
    "epoch_num": "curr_epoch + 1",
    "epoch_len": "{total}",
    "step_tokens_per_s": "None",
}
EPOCH_EVENT = {
    "gpu_rank": "self.rank",
    "epoch_num": "curr_epoch + 1",
    "epoch_len": "{total}",
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
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func) == dotted
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


def names_in(node: ast.AST) -> set:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def pyflakes_messages(tree: ast.Module) -> List[tuple]:
    """(kind, name) of each pyflakes message: undefined and unused names."""
    return [(type(m).__name__, m.message_args[0]) for m in Checker(tree).messages if m.message_args]


def epoch_loop(train: ast.FunctionDef) -> ast.For:
    (loop,) = [
        stmt
        for stmt, _, _ in walk_statements(train.body)
        if isinstance(stmt, ast.For)
        and ast.unparse(stmt.iter).startswith(("range(self.epochs_run", "range(self._epochs_run"))
    ]
    return loop


def is_rl(train: ast.FunctionDef) -> bool:
    return "self._steps_run % self._log_every_n_steps == 0" in ast.unparse(train)


def check_port(upstream: str, generated: str, contract=None) -> None:
    """Assert everything the converter promises about one recipe ported for `contract`
    (porter's when None)."""
    from runtime.contract import PORTER

    contract = contract or PORTER
    compile(generated, "<generated>", "exec")
    tree = ast.parse(generated)
    source_tree = ast.parse(upstream)
    source_cls = recipe_class(source_tree, "FTRecipeInterface")
    classes = [
        n for n in tree.body if isinstance(n, ast.ClassDef) and any(ast.unparse(b) == "RecipeBase" for b in n.bases)
    ]
    assert len(classes) == 1, "one class with base RecipeBase"
    cls = classes[0]
    assert cls.name == source_cls.name
    assert "FTRecipeInterface" not in generated
    ported = methods(cls)
    for name in INTERFACE + ("__init__",):
        assert name not in ported, f"public `{name}` left"
    assert "_init" in ported and "_train" in ported and "_setup" in ported
    if contract.save_hook is not None:
        assert "_save_checkpoint" in ported, "a port for a runtime that saves never leaves the weights unsaved"
    else:
        assert ("_save_checkpoint" in ported) == ("save_checkpoint" in methods(source_cls)), (
            "the recipe's saves are its own"
        )
    # The contract's names, from where the contract imports them.
    imported = {
        (node.module, alias.name) for node in tree.body if isinstance(node, ast.ImportFrom) for alias in node.names
    }
    assert {(module, name) for name, module in contract.imports} <= imported

    # No @config.parse, no __main__ block; recipe_main has the job signature and hands
    # the recipe class to run_recipe once; its other statements survive, in order.
    assert "@config.parse" not in generated
    assert not any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body)
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "recipe_main"]
    assert not main.decorator_list
    assert [(a.arg, ast.unparse(a.annotation)) for a in main.args.args] == [
        ("job_id", "str"),
        ("user_id", "str"),
        ("cfg", "DictConfig"),
        ("dataset", "Dataset"),
    ]
    assert ast.unparse(main.returns) == "None"
    runs = [n for n in ast.walk(main) if isinstance(n, ast.Call) and ast.unparse(n.func) == "run_recipe"]
    assert len(runs) == 1
    assert [ast.unparse(a) for a in runs[0].args] == [cls.name, "job_id", "user_id", "cfg", "dataset"]
    (source_main,) = [n for n in source_tree.body if isinstance(n, ast.FunctionDef) and n.name == "recipe_main"]
    kept = [ast.unparse(s) for s in source_main.body if "recipe" not in names_in(s)]
    assert [ast.unparse(s) for s in main.body if not (isinstance(s, ast.Expr) and s.value in runs)] == kept

    train = ported["_train"]
    loop = epoch_loop(train)
    total = ast.unparse(loop.iter.args[1])
    saves = [text for text in map(_simple_statement, walk_statements(train.body)) if "save_checkpoint(" in text]
    if contract.save_hook is not None:
        # Checkpoint saving left the training loop.
        assert [text for text in saves if f"{contract.save_hook}(" not in text] == [], "save left in _train"
    else:
        # Every save stays, as it was, calling the renamed method.
        upstream_train = methods(source_cls)["train"]
        upstream_saves = [
            text for text in map(_simple_statement, walk_statements(upstream_train.body)) if "save_checkpoint(" in text
        ]
        assert saves == [text.replace("self.save_checkpoint(", "self._save_checkpoint(") for text in upstream_saves]

    if is_rl(train):
        check_rl_events(train, loop, total, "self._optim_ckpt_wrapper =" in upstream, contract)
    else:
        check_sft_events(train, loop, total, contract)

    # log_epoch: once per epoch, after the epoch count and the runtime's checkpoint
    # hook, followed by the reset of the epoch clock.
    (epoch,) = calls_to(train.body, "self.job_logger.log_epoch")
    stmt, block, parents = epoch
    assert parents[-1] is loop
    position = block.index(stmt)
    counter = "self._epochs_run" if "_epochs_run" in ast.unparse(loop.iter) else "self.epochs_run"
    if contract.save_hook is not None:
        assert [ast.unparse(s) for s in block[position - 2 : position]] == [
            f"{counter} += 1",
            f"self.{contract.save_hook}(epoch=curr_epoch, total_epochs={total})",
        ]
    else:
        # The event follows the epoch count and what upstream does right after it (its
        # own save, with its timing and log lines), renamed and otherwise unchanged.
        texts = [ast.unparse(s) for s in block]
        count = texts.index(f"{counter} += 1")
        upstream_block = [ast.unparse(s) for s in epoch_loop(methods(source_cls)["train"]).body]
        after = upstream_block[upstream_block.index(f"{counter} += 1") + 1 :]
        between = texts[count + 1 : position]
        assert between == [
            text.replace("self.save_checkpoint(", "self._save_checkpoint(") for text in after[: len(between)]
        ]
    assert ast.unparse(block[position + 1]) == "t_epoch_start = time.perf_counter()"
    assert keywords(stmt.value) == {k: v.format(total=total) for k, v in EPOCH_EVENT.items() if k in contract.log_epoch}

    check_dataset_injection(ported["_setup_data"], source_cls, contract)

    # Methods porter does not rewrite are byte-identical to upstream.
    for name, node in methods(source_cls).items():
        if name in REWRITTEN:
            continue
        assert ast.get_source_segment(generated, ported[name]) == ast.get_source_segment(upstream, node), name

    # Formatted like upstream, and no name the port left undefined or unused.
    assert black.format_str(generated, mode=black.Mode()) == generated
    new_messages = Counter(pyflakes_messages(tree)) - Counter(pyflakes_messages(source_tree))
    assert not new_messages, new_messages


def _simple_statement(walked) -> str:
    stmt = walked[0]
    return ast.unparse(stmt) if not isinstance(stmt, (ast.For, ast.While, ast.With, ast.If, ast.Try)) else ""


def check_sft_events(train: ast.FunctionDef, loop: ast.For, total: str, contract) -> None:
    body = [ast.unparse(s) for s in train.body]
    (step,) = calls_to(train.body, "self.job_logger.log_step")
    stmt, block, parents = step
    logging_block = next(
        p
        for p in reversed(parents)
        if isinstance(p, ast.If) and "% self._log_every_n_steps == 0" in ast.unparse(p.test)
    )
    counter = ast.unparse(logging_block.test).split(" % self._log_every_n_steps")[0].split()[-1]
    expected = {k: v.format(total=total) for k, v in SFT_STEP_EVENT.items() if k in contract.log_step}
    expected["step_num"] = counter
    if "t0 = time.perf_counter()" in body:
        # The epoch clock starts right above the t0 declaration.
        assert body[body.index("t0 = time.perf_counter()") - 1] == "t_epoch_start = time.perf_counter()"
    else:
        # No step clock (torchtune 0.1): the epoch clock starts above the epoch loop,
        # and porter times the iteration of the loop that logs.
        check_clock_above_the_loop(train, loop)
        step_loop = next(p for p in reversed(parents) if isinstance(p, (ast.For, ast.While)) and p is not loop)
        assert ast.unparse(step_loop.body[0]) == "t_step_start = time.perf_counter()"
        expected["step_time_elapsed_s"] = "time.perf_counter() - t_step_start"
    # log_step: once, right after the metric-logger call, inside the step-logging block.
    assert ast.unparse(block[block.index(stmt) - 1].value.func) == "self._metric_logger.log_dict"
    assert ast.unparse(block[block.index(stmt) - 1].value.args[0]) == "log_dict"
    assert keywords(stmt.value) == expected


def check_clock_above_the_loop(train: ast.FunctionDef, loop: ast.For) -> None:
    holder = next(s for s in train.body if loop in ast.walk(s))
    assert ast.unparse(train.body[train.body.index(holder) - 1]) == "t_epoch_start = time.perf_counter()"


def check_rl_events(train: ast.FunctionDef, loop: ast.For, total: str, has_wrapper: bool, contract) -> None:
    # The epoch clock starts right above the statement holding the epoch loop; the
    # step clock at the top of the loop over the dataloader.
    check_clock_above_the_loop(train, loop)
    (step_loop,) = [s for s in loop.body if isinstance(s, ast.For) and "self._dataloader" in ast.unparse(s.iter)]
    assert ast.unparse(step_loop.body[0]) == "t_step_start = time.perf_counter()"
    # log_step: on rank 0, right after the recipe's log_metrics call, with the loss of
    # the stats it logs.
    (step,) = calls_to(train.body, "self.job_logger.log_step")
    stmt, block, parents = step
    guard = parents[-1]
    assert ast.unparse(guard.test) == "self.rank == 0" and guard.body == [stmt]
    logging_block = parents[-2]
    assert "self._steps_run % self._log_every_n_steps == 0" in ast.unparse(logging_block.test)
    log_call = logging_block.body[logging_block.body.index(guard) - 1].value
    assert ast.unparse(log_call.func) == "self.log_metrics"
    (stats,) = [
        ast.unparse(a) for a in log_call.args if isinstance(a, ast.Call) and ast.unparse(a.func).endswith("Stats")
    ]
    # The optimizer's wrapper is read only where the recipe has one (PPO; not GRPO).
    optimizer = "self._optimizer or self._optim_ckpt_wrapper" if has_wrapper else "self._optimizer"
    assert keywords(stmt.value) == {
        k: v.format(total=total, stats=stats, optimizer=optimizer)
        for k, v in RL_STEP_EVENT.items()
        if k in contract.log_step
    }


def check_dataset_injection(setup_data: ast.FunctionDef, source_cls: ast.ClassDef, contract) -> None:
    """The injected dataset comes first: before the ListConfig branch, or, in a dataset
    mix, before the loop over the dataset configs."""
    injected = [s for s in setup_data.body if isinstance(s, ast.If) and ast.unparse(s.test).startswith("self.dataset")]
    assert len(injected) == 1
    (branch,) = injected
    position = setup_data.body.index(branch)
    if branch.orelse and not isinstance(branch.orelse[0], ast.If):
        # torchtune 0.1: the config's one dataset is the `else`.
        assert ast.unparse(branch.body[0]) == "ds = self.dataset"
        assert ast.unparse(branch.orelse[0]).startswith("ds = config.instantiate(cfg_dataset")
    elif branch.orelse:
        assert ast.unparse(branch.body[0]) == "ds = self.dataset"
        assert ast.unparse(branch.orelse[0].test).startswith("isinstance(cfg_dataset, ListConfig)")
        setups = ast.unparse(source_cls).count("self._setup_data(")
        training = "self.job_dataset_config" if "job_dataset_config" in contract.attributes else "self.cfg.dataset"
        expected = f"self.dataset and cfg_dataset is {training}" if setups > 1 else "self.dataset"
        assert ast.unparse(branch.test) == expected
    else:
        following = setup_data.body[position + 1]
        assert isinstance(following, ast.For) and ast.unparse(following.iter) == "enumerate(cfg_datasets)"
        assert [ast.unparse(s) for s in branch.body] == [
            "datasets['job'], weights['job'] = (self.dataset, 1.0)",
            "cfg_datasets = []",
        ]
