"""RecipeShape: what porter recognised in one recipe, read once; every rule reads it.

A recipe is read part by part: the recipe class and its lifecycle methods, the epoch
loop (in `train` or in a method `train` calls), the epoch count, the step-logging block
with its metric dict and step clock (in the epoch loop or in a method it calls), every
checkpoint save site, and the `_setup_data` dataset branch. Each part is either found or
has exactly one problem with its node; a part that cannot be read because another part
is missing names that part instead. Rules declare the parts they need, so a missing
anchor is reported once, naming every rule that needed it.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass, field
from typing import Collection, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import libcst as cst
import libcst.matchers as m

from porter.dataset_flow import dataset_flow
from porter.index import SourceIndex
from porter.syntax import (
    Ancestors,
    block_statements,
    called_name,
    dotted_name,
    expression_of,
    is_docstring,
    iter_statements,
    METHOD_BODY_DEPTH,
    node_code,
    single_small_statement,
)
from runtime.families import recipe_family

UPSTREAM_BASE = "FTRecipeInterface"
# The method that builds the training data: torchtune's name, and forks' public one.
SETUP_DATA_METHODS = ("_setup_data", "setup_data")
PORTED_BASE = "RecipeBase"
INTERFACE_METHODS = ("load_checkpoint", "setup", "train", "save_checkpoint", "cleanup")
# Other recipe interfaces of torchtune: files built on them are not training recipes.
OTHER_INTERFACES = {
    "EvalRecipeInterface": "an evaluation recipe",
    "OrchestrationRecipeInterface": "an orchestration recipe (it starts and drives other processes)",
}
SAVE_METHODS = ("save_checkpoint", "_save_checkpoint")
METRIC_LOGGER_CALL = "self._metric_logger.log_dict"
RL_LOG_CALL = "self.log_metrics"
LOG_METHODS = ("debug", "info", "warning", "error", "log_rank_zero")

# The parts of a shape, in reading order; a rule's NEEDS names some of them.
RECIPE, TRAIN, EPOCH_LOOP, EPOCH_COUNT, STEP_LOGGING, SAVES, SETUP_DATA = (
    "recipe class",
    "train method",
    "epoch loop",
    "epoch count",
    "step logging",
    "save sites",
    "dataset setup",
)


@dataclass(frozen=True)
class Problem:
    message: str
    node: Optional[cst.CSTNode]


class _Missing(Exception):
    """A part is missing: with its own problem, or because part `cause` is."""

    def __init__(self, problem: Optional[Problem] = None, cause: Optional[str] = None) -> None:
        super().__init__(problem.message if problem else cause)
        self.problem = problem
        self.cause = cause


@dataclass
class EpochLoop:
    method: cst.FunctionDef  # `train`, or the method train calls that holds the loop
    loop: cst.For
    holder: cst.BaseStatement  # the statement of the method's body that holds the loop
    variable: str  # `curr_epoch`
    epochs_run: str  # `self.epochs_run` (`self._epochs_run` in PPO)
    total_epochs: str  # `self.total_epochs`
    path: List[cst.FunctionDef]  # train, ..., method: how train reaches the loop
    body_depth: int  # the block depth of the loop's body, a method's body being 2


@dataclass
class StepLogging:
    """The `if <step counter> % self._log_every_n_steps == 0:` block and what it logs."""

    block: cst.CSTNode  # the `if`; the step loop, where every step logs
    method: cst.FunctionDef  # where the block is
    epoch_variable: Optional[str]  # the epoch's name in that method, if it has it
    kind: str  # "sft" (logs a metric dict) or "rl" (logs ...Stats through log_metrics)
    log_call: cst.BaseStatement  # the statement that logs
    step_counter: str  # `self.global_step`
    step_loop: Optional[cst.BaseStatement]  # the innermost loop holding the block
    metric_dict: Optional[str] = None  # sft: the dict logged, by name
    inline_metrics: Optional[cst.Dict] = None  # sft: the dict logged, as a literal in the call
    metric_keys: Optional[Tuple[str, ...]] = None  # sft: its keys; None when porter cannot tell
    step_time: Optional[str] = None  # sft: `time_per_step`, computed from the step clock
    step_clock: Optional[str] = None  # sft: the step clock it is computed from, `t0`
    stats: Optional[str] = None  # rl: the `...Stats(...)` expression logged
    every_step: bool = False  # the call is right in the step loop, with no block around it
    merged_metrics: bool = False  # sft: the dict merges others (`**lr_log`) whose keys porter cannot read


@dataclass
class SaveSite:
    """A statement that saves a checkpoint from the training loop's methods."""

    statement: cst.BaseStatement
    method: cst.FunctionDef
    ancestors: Ancestors  # its compound statements within `method`
    call: cst.Call
    callee: str  # `self.save_checkpoint`, `self._checkpointer.save_checkpoint`, `self.save_best`
    kind: str  # "method", "inline" (through a checkpointer attribute) or "helper"
    place: str  # "step" (in a loop inside the epoch loop), "epoch", "after" or "before" the epoch loop
    epoch_variable: Optional[str]  # the epoch's name where the statement is
    helper: Optional[cst.FunctionDef] = None  # kind "helper": the method called
    helper_saves: List[cst.BaseStatement] = field(default_factory=list)  # its own save statements
    helper_other: Optional[cst.BaseStatement] = None  # a statement of it that is not about saving
    helper_rotation: Optional[cst.BaseStatement] = None  # its loop that deletes old checkpoints


@dataclass
class DatasetSetup:
    method: cst.FunctionDef
    kind: str  # "list-config", "single" (older recipes), "mix", or "flow" (porter/dataset_flow.py)
    anchor: cst.BaseStatement  # the ListConfig branch, the instantiating statement, the loop of a mix, or flow's first
    cfg_dataset: str  # the dataset config's name (the configs' in a mix)
    dataset_variable: str = "ds"
    assigns_packed: bool = False  # the recipe reads `packed` the branch sets
    several_setups: bool = False  # `_setup_data` also builds a validation set
    mix: Optional[Dict[str, str]] = None  # the names of a mix's datasets and weights dicts
    # What the job's dataset replaces, in order (the anchor alone but in a flow).
    replaced: Tuple[cst.BaseStatement, ...] = ()
    loader: Optional[cst.BaseStatement] = None  # flow: the statement that hands the set to the loader

    def __post_init__(self) -> None:
        if not self.replaced:
            self.replaced = (self.anchor,)

    @property
    def becomes_elif(self) -> bool:
        """The replaced `if` chain becomes the `elif` of the job's dataset (else: the `else`)."""
        return self.kind == "list-config" or (
            self.kind == "flow" and len(self.replaced) == 1 and isinstance(self.anchor, cst.If)
        )


class RecipeShape:
    def __init__(self, module: cst.Module, index: SourceIndex) -> None:
        self.module = module
        self.index = index
        self.problems: Dict[str, Problem] = {}
        self.causes: Dict[str, str] = {}  # part -> the missing part it could not be read without
        self.cls: Optional[cst.ClassDef] = None
        self.methods: Dict[str, cst.FunctionDef] = {}
        self.train: Optional[cst.FunctionDef] = None
        self.epoch: Optional[EpochLoop] = None
        self.epoch_count: Optional[cst.BaseStatement] = None
        self.logging: Optional[StepLogging] = None
        self.saves: List[SaveSite] = []
        self.dataset: Optional[DatasetSetup] = None
        self.attributes: Optional[Set[str]] = set()  # `self.<name>` the class assigns or defines; None: unknown
        self.source_names = index.names  # the variables the source reads or binds
        self.family = recipe_family(index.names | index.attributes)
        for part, reader in (
            (RECIPE, self._read_recipe),
            (TRAIN, self._read_train),
            (EPOCH_LOOP, self._read_epoch_loop),
            (EPOCH_COUNT, self._read_epoch_count),
            (STEP_LOGGING, self._read_step_logging),
            (SAVES, self._read_saves),
            (SETUP_DATA, self._read_dataset_setup),
        ):
            try:
                reader()
            except _Missing as missing:
                if missing.problem is not None:
                    self.problems[part] = missing.problem
                else:
                    self.causes[part] = self.cause(missing.cause)
        self._method_names: Dict[int, Set[str]] = {}

    def names_in(self, method: cst.FunctionDef) -> Set[str]:
        """The variable names a method of the source uses."""
        if id(method) not in self._method_names:
            self._method_names[id(method)] = {node.id for node in _walk_names(self.index.ast_node(method))}
        return self._method_names[id(method)]

    def cause(self, part: str) -> str:
        """The part whose own problem explains why `part` is missing."""
        return self.causes.get(part, part)

    def missing(self, part: str) -> bool:
        return part in self.problems or part in self.causes

    def _need(self, part: str) -> None:
        if self.missing(part):
            raise _Missing(cause=part)

    # -- the recipe class and its methods --------------------------------------------

    def _read_recipe(self) -> None:
        classes = recipe_classes(self.module)
        if len(classes) != 1:
            names = ", ".join(c.name.value for c in classes) or "none"
            raise _Missing(
                Problem(
                    f"expected one {UPSTREAM_BASE} subclass, found {len(classes)} ({names})",
                    classes[1] if classes else None,
                )
            )
        (cls,) = classes
        for other in self.module.body:
            if isinstance(other, cst.ClassDef) and cls.name.value in base_names(other):
                raise _Missing(
                    Problem(
                        f"class {other.name.value} subclasses the recipe class {cls.name.value}: porter would rename "
                        "the methods it overrides; make it one class, or port the base recipe alone",
                        other,
                    )
                )
        self.cls = cls
        self.methods = {stmt.name.value: stmt for stmt in block_statements(cls) if isinstance(stmt, cst.FunctionDef)}
        # Attributes set in other base classes (mixins) are out of sight: unknown then.
        others = [name for name in base_names(cls) if name not in (UPSTREAM_BASE, "object")]
        self.attributes = None if others else set(self.methods) | self.index.self_stores

    def _read_train(self) -> None:
        self._need(RECIPE)
        self.train = self.methods.get("train")
        if self.train is None:
            raise _Missing(Problem(f"class {self.cls.name.value} has no `train` method", self.cls))

    def self_calls(self, root: cst.CSTNode) -> List[Tuple[cst.BaseStatement, str]]:
        """(statement, method) for each method of the recipe a statement under `root` calls on `self`."""
        names = [name for name in self.methods if name not in ("__init__", "setup", "load_checkpoint", "cleanup")]
        return [
            (stmt, name)
            for stmt in self.index.statements_using_self(root, names)
            for name in names
            if self.index.self_calls(stmt, name)
        ]

    def _reachable(self, start: cst.FunctionDef) -> Dict[str, List[cst.FunctionDef]]:
        """Each method `start` reaches through calls on `self`, with the path to it;
        save methods are never walked into (their saves are sites of their callers)."""
        paths = {start.name.value: [start]}
        queue = deque([start])
        while queue:
            method = queue.popleft()
            for _, name in self.self_calls(method):
                if name not in paths and name not in SAVE_METHODS:
                    paths[name] = paths[method.name.value] + [self.methods[name]]
                    queue.append(self.methods[name])
        return paths

    # -- the epoch loop ------------------------------------------------------------------

    def _read_epoch_loop(self) -> None:
        self._need(TRAIN)
        loops = [
            (path, stmt, ancestors)
            for path in self._reachable(self.train).values()
            for stmt, ancestors in iter_statements(path[-1])
            if isinstance(stmt, cst.For) and isinstance(stmt.target, cst.Name) and m.matches(stmt.iter, _EPOCH_RANGE)
        ]
        if len(loops) != 1:
            raise _Missing(
                Problem(
                    "expected one epoch loop `for <epoch> in range(self.epochs_run, self.total_epochs)` in "
                    f"`train` or the methods it calls, found {len(loops)}",
                    loops[1][1] if len(loops) > 1 else self.train,
                )
            )
        ((path, loop, ancestors),) = loops
        method = path[-1]
        nested = [ancestor for ancestor in ancestors if isinstance(ancestor, (cst.FunctionDef, cst.ClassDef))]
        if nested:
            raise _Missing(
                Problem(
                    f"the epoch loop is in `{nested[-1].name.value}`, defined inside `{method.name.value}`: porter starts "
                    "its clocks in the method and resets them in the loop, which a nested function would only shadow; "
                    "make the nested function a method",
                    loop,
                )
            )
        (holder,) = [
            stmt
            for stmt in block_statements(method)
            if stmt is loop or any(s is loop for s, _ in iter_statements(stmt))
        ]
        self.epoch = EpochLoop(
            method=method,
            loop=loop,
            holder=holder,
            variable=loop.target.value,
            epochs_run=node_code(loop.iter.args[0].value),
            total_epochs=node_code(loop.iter.args[1].value),
            path=path,
            body_depth=METHOD_BODY_DEPTH + len(ancestors) + 1,
        )

    def _read_epoch_count(self) -> None:
        self._need(EPOCH_LOOP)
        counter = self.epoch.epochs_run.split(".", 1)[1]
        counts = [
            stmt
            for stmt in block_statements(self.epoch.loop)
            if m.matches(
                stmt,
                m.SimpleStatementLine(
                    body=[
                        m.AugAssign(
                            target=m.Attribute(value=m.Name("self"), attr=m.Name(counter)),
                            operator=m.AddAssign(),
                            value=m.Integer("1"),
                        )
                    ]
                ),
            )
        ]
        if len(counts) != 1:
            raise _Missing(
                Problem(
                    f"expected one `{self.epoch.epochs_run} += 1` directly in the epoch loop, found {len(counts)}",
                    counts[1] if len(counts) > 1 else self.epoch.loop,
                )
            )
        self.epoch_count = counts[0]

    @property
    def step_counter(self) -> Optional[str]:
        """`self.global_step`: what the step-logging block counts, else the usual counter."""
        if self.logging is not None:
            return self.logging.step_counter
        return "self.global_step" if "global_step" in self.index.self_stores else None

    @property
    def epoch_end(self) -> Optional[cst.BaseStatement]:
        """Where an epoch ends: after its count and after the epoch's own save, when the
        save comes after the count, so the epoch's time includes its save."""
        if self.epoch_count is None:
            return None
        body = list(block_statements(self.epoch.loop))
        start = body.index(self.epoch_count)
        saving = {
            id((site.ancestors + (site.statement,))[site.ancestors.index(self.epoch.loop) + 1])
            for site in self.saves
            if site.place == "epoch" and site.method is self.epoch.method
        }
        later = [stmt for stmt in body[start + 1 :] if id(stmt) in saving]
        return later[-1] if later else self.epoch_count

    # -- step logging --------------------------------------------------------------------

    def _read_step_logging(self) -> None:
        self._need(EPOCH_LOOP)
        found = []
        unguarded = []  # early-2024 loops log every step, with no block around the call
        for method, root, epoch_variable, ancestors in self._loop_scopes():
            for stmt, inner in iter_statements(root, ancestors):
                if isinstance(stmt, cst.If) and _logging_counter(stmt.test) is not None:
                    found.append((stmt, method, epoch_variable, inner))
                elif called_name(stmt) == METRIC_LOGGER_CALL and not any(
                    _logging_counter(a.test) for a in inner if isinstance(a, cst.If)
                ):
                    unguarded.append((stmt, method, epoch_variable, inner))
        if not found and len(unguarded) == 1:
            self._read_unguarded_logging(*unguarded[0])
            return
        if len(found) != 1:
            raise _Missing(
                Problem(
                    "expected one step-logging block `if self.global_step % self._log_every_n_steps == 0:` (or one "
                    f"`{METRIC_LOGGER_CALL}(..., step=self.<counter>)` in the step loop, logging every step) in the epoch "
                    f"loop or the methods it calls, found {len(found)} blocks and {len(unguarded)} calls outside one",
                    found[1][0] if len(found) > 1 else self.epoch.loop,
                )
            )
        ((block, method, epoch_variable, ancestors),) = found
        calls = [
            (stmt, name)
            for stmt, _ in iter_statements(block)
            for name in (called_name(stmt),)
            if name in (METRIC_LOGGER_CALL, RL_LOG_CALL)
        ]
        if len(calls) != 1:
            raise _Missing(
                Problem(
                    f"expected one `{METRIC_LOGGER_CALL}(...)` or `{RL_LOG_CALL}(...)` call in the step-logging block, "
                    f"found {len(calls)}",
                    calls[1][0] if len(calls) > 1 else block,
                )
            )
        ((log_call, name),) = calls
        loops = [a for a in ancestors if isinstance(a, (cst.For, cst.While)) and a is not self.epoch.loop]
        logging = StepLogging(
            block=block,
            method=method,
            epoch_variable=epoch_variable,
            kind="rl" if name == RL_LOG_CALL else "sft",
            log_call=log_call,
            step_counter=node_code(_logging_counter(block.test)),
            step_loop=loops[-1] if loops else None,
        )
        if logging.kind == "rl":
            logging.stats = _logged_stats(expression_of(log_call))
        else:
            _read_metrics(logging, block)
        self.logging = logging

    def _read_unguarded_logging(self, log_call, method, epoch_variable, ancestors) -> None:
        """A metric-logger call right in the step loop: every step logs, the loop is its block."""
        loops = [a for a in ancestors if isinstance(a, (cst.For, cst.While)) and a is not self.epoch.loop]
        step = next(
            (
                arg.value
                for arg in expression_of(log_call).args
                if arg.keyword is not None and arg.keyword.value == "step"
            ),
            None,
        )
        if not loops or not m.matches(step, m.Attribute(value=m.Name("self"), attr=m.Name())):
            raise _Missing(
                Problem(
                    f"`{METRIC_LOGGER_CALL}(...)` logs outside a step-logging block: porter reads such a call only in a "
                    "step loop, with `step=self.<counter>`",
                    log_call,
                )
            )
        logging = StepLogging(
            block=loops[-1],
            method=method,
            epoch_variable=epoch_variable,
            kind="sft",
            log_call=log_call,
            step_counter=node_code(step),
            step_loop=loops[-1],
            every_step=True,
        )
        _read_metrics(logging, loops[-1])
        self.logging = logging

    def _loop_scopes(self) -> Iterator[Tuple[cst.FunctionDef, cst.CSTNode, Optional[str], Ancestors]]:
        """(method, root, the epoch's name there, ancestors) for the epoch loop and for
        each method called from inside it, transitively, with how the epoch reaches it."""
        yield self.epoch.method, self.epoch.loop, self.epoch.variable, (self.epoch.loop,)
        seen = {self.epoch.method.name.value}
        queue = deque([(self.epoch.loop, self.epoch.variable)])
        while queue:
            root, epoch_variable = queue.popleft()
            for stmt, name in self.self_calls(root):
                if name in seen or name in SAVE_METHODS:
                    continue
                seen.add(name)
                method = self.methods[name]
                inner = _parameter_receiving(self.index, method, stmt, epoch_variable)
                yield method, method, inner, ()
                queue.append((method, inner))

    # -- save sites ----------------------------------------------------------------------

    def _read_saves(self) -> None:
        self._need(EPOCH_LOOP)
        loop_methods = {id(method) for method in self.epoch.path}
        if self.logging is not None:
            loop_methods |= {id(m_) for m_ in self._path_to(self.logging.method)}
        for method, in_epoch, in_step, epoch_variable in self._loop_methods(loop_methods):
            for stmt, ancestors in iter_statements(method):
                site = self._save_site(stmt, ancestors, method, loop_methods)
                if site is None:
                    continue
                site.place, site.epoch_variable = self._place(
                    stmt, ancestors, method, in_epoch, in_step, epoch_variable
                )
                self.saves.append(site)

    def _path_to(self, method: cst.FunctionDef) -> List[cst.FunctionDef]:
        return self._reachable(self.train).get(method.name.value, [])

    def _loop_methods(self, loop_methods: Set[int]) -> Iterator[Tuple[cst.FunctionDef, bool, bool, Optional[str]]]:
        """Each method of the training loop, whether its calls come from inside the epoch
        loop and a step loop, and the epoch's name there."""
        visited: Set[int] = set()

        def visit(method, in_epoch, in_step, epoch_variable):
            if id(method) in visited:
                return
            visited.add(id(method))
            yield method, in_epoch, in_step, epoch_variable
            for stmt, name in self.self_calls(method):
                callee = self.methods[name]
                if id(callee) not in loop_methods:
                    continue
                ancestors = _ancestors_in(method, stmt)
                inside, step, variable = self._context(stmt, ancestors, method, in_epoch, in_step, epoch_variable)
                yield from visit(callee, inside, step, _parameter_receiving(self.index, callee, stmt, variable))

        yield from visit(self.train, False, False, None)

    def _context(self, stmt, ancestors, method, in_epoch, in_step, epoch_variable):
        loop = self.epoch.loop
        if method is self.epoch.method and any(a is loop for a in ancestors):
            below = ancestors[ancestors.index(loop) + 1 :]
            return True, any(isinstance(a, (cst.For, cst.While)) for a in below), loop.target.value
        if in_epoch:
            return True, in_step or any(isinstance(a, (cst.For, cst.While)) for a in ancestors), epoch_variable
        return False, False, epoch_variable

    def _place(self, stmt, ancestors, method, in_epoch, in_step, epoch_variable) -> Tuple[str, Optional[str]]:
        inside, step, variable = self._context(stmt, ancestors, method, in_epoch, in_step, epoch_variable)
        if inside:
            return ("step" if step else "epoch"), variable
        runner = self._runner(method)
        if runner is None:
            return "after", variable
        order = {id(s): position for position, (s, _) in enumerate(iter_statements(method))}
        return ("after" if order[id(stmt)] > order[id(runner)] else "before"), variable

    def _runner(self, method: cst.FunctionDef) -> Optional[cst.BaseStatement]:
        """The statement of `method` that runs the epoch loop: the loop itself, or the
        call towards the method that holds it."""
        if method is self.epoch.method:
            return self.epoch.loop
        if method not in self.epoch.path:
            return None
        name = self.epoch.path[self.epoch.path.index(method) + 1].name.value
        return next((s for s, called in self.self_calls(method) if called == name), None)

    def _save_site(self, stmt, ancestors, method, loop_methods) -> Optional[SaveSite]:
        expr = _statement_call(stmt)
        if expr is None:
            return None
        callee = dotted_name(expr.func)
        if callee is None or not callee.startswith("self."):
            return None
        parts = callee.split(".")
        site = SaveSite(stmt, method, ancestors, expr, callee, kind="", place="", epoch_variable=None)
        if parts[-1] in SAVE_METHODS:
            site.kind = "method" if len(parts) == 2 else "inline"
            return site
        if len(parts) != 2 or parts[1] not in self.methods:
            return None
        helper = self.methods[parts[1]]
        if id(helper) in loop_methods:
            return None
        saves = self._saves_inside(helper, set())
        if not saves:
            return None
        site.kind, site.helper, site.helper_saves = "helper", helper, saves
        site.helper_rotation = next((stmt for stmt in block_statements(helper) if _deletes_checkpoints(stmt)), None)
        site.helper_other = _other_work(helper, saves, site.helper_rotation)
        return site

    def _saves_inside(self, method: cst.FunctionDef, seen: Set[int]) -> List[cst.BaseStatement]:
        """The save statements `method` runs, itself or through the methods it calls."""
        if id(method) in seen:
            return []
        seen.add(id(method))
        found = []
        for stmt, _ in iter_statements(method):
            expr = _statement_call(stmt)
            callee = dotted_name(expr.func) if expr is not None else None
            if callee and callee.startswith("self.") and callee.rsplit(".", 1)[-1] in SAVE_METHODS:
                found.append(stmt)
        for stmt, name in self.self_calls(method):
            if name not in SAVE_METHODS and self._saves_inside(self.methods[name], seen):
                found.append(stmt)
        return found

    # -- the dataset ---------------------------------------------------------------------

    def _read_dataset_setup(self) -> None:
        self._need(RECIPE)
        names = [name for name in SETUP_DATA_METHODS if name in self.methods]
        if not names:
            raise _Missing(
                Problem(f"class {self.cls.name.value} has no `_setup_data` (or `setup_data`) method", self.cls)
            )
        setup_data = self.methods[names[0]]
        several = len(self.index.statements_using_self(self.cls, [names[0]])) > 1
        body = list(block_statements(setup_data))
        branches = [s for s in body if isinstance(s, cst.If) and m.matches(s.test, _LIST_CONFIG_TEST)]
        if len(branches) == 1:
            (branch,) = branches
            variable = _dataset_variable(branch)
            if variable is None:
                raise _Missing(
                    Problem("the ListConfig branch and its `else` assign no common dataset variable", branch)
                )
            self.dataset = DatasetSetup(
                setup_data,
                "list-config",
                branch,
                branch.test.args[0].value.value,
                dataset_variable=variable,
                assigns_packed=any(
                    m.findall(stmt, m.AssignTarget(target=m.Name("packed"))) for stmt in block_statements(branch)
                ),
                several_setups=several,
            )
            return
        if not branches:
            params = [p.name.value for p in setup_data.params.params]
            mix = _dataset_mix(setup_data, params)
            if mix is not None:
                self.dataset = mix
                return
            singles = [s for s in body if _instantiated_config(s, params) is not None]
            if len(singles) == 1:
                variable, cfg = _instantiated_config(singles[0], params)
                self.dataset = DatasetSetup(
                    setup_data, "single", singles[0], cfg, dataset_variable=variable, several_setups=several
                )
                return
        flow = dataset_flow(setup_data, self.index)
        config = _config_parameter(setup_data)
        if flow is not None and config is not None:
            self.dataset = DatasetSetup(
                setup_data,
                "flow",
                flow.replaced[0],
                config,
                dataset_variable=flow.variable,
                assigns_packed=any(m.findall(stmt, m.AssignTarget(target=m.Name("packed"))) for stmt in flow.replaced),
                several_setups=several,
                replaced=flow.replaced,
                loader=flow.loader,
            )
            return
        raise _Missing(
            Problem(
                "expected, directly in `"
                + setup_data.name.value
                + "`, one `if isinstance(<dataset config>, ListConfig):`, or "
                "one `ds = config.instantiate(<dataset config>, ...)`, or a loop over the dataset configs filling a "
                "`datasets` and a `weights` dict (a mix), or a set handed to a data loader or sampler that a statement "
                f"of it binds, found {len(branches)} ListConfig branches",
                branches[1] if len(branches) > 1 else setup_data,
            )
        )


def _walk_names(tree: ast.AST) -> Iterator[ast.Name]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.Name))


# -- recognising classes ---------------------------------------------------------------------


def base_name(arg: cst.Arg) -> Optional[str]:
    """The last component of a base class expression: `a.B` gives `B`."""
    name = dotted_name(arg.value)
    return name.rsplit(".", 1)[-1] if name is not None else None


def base_names(cls: cst.ClassDef) -> List[str]:
    return [name for name in map(base_name, cls.bases) if name is not None]


def recipe_classes(module: cst.Module) -> List[cst.ClassDef]:
    """Module-level classes that subclass FTRecipeInterface."""
    return [s for s in module.body if isinstance(s, cst.ClassDef) and UPSTREAM_BASE in base_names(s)]


def not_a_training_recipe(tree: ast.Module, ported_base_modules: Collection[str]) -> Optional[str]:
    """Why a module is skipped, in words that say what it is; None for a training
    recipe. A recipe is already ported when it inherits the RecipeBase of one of
    `ported_base_modules` (porter's runtime, the contract's); a class of that name from
    anywhere else is someone else's. Read from the stdlib ast: skipped files are never
    parsed with libcst."""
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    bases = {cls.name: [_ast_name(base) for base in cls.bases] for cls in classes}
    if any(UPSTREAM_BASE in names for names in bases.values()):
        return None
    imported = {
        alias.asname or alias.name: node.module or ""
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    heirs = [cls.name for cls in classes if PORTED_BASE in bases[cls.name]]
    if heirs:
        origin = imported.get(PORTED_BASE)
        if origin in ported_base_modules:
            return f"already ported ({heirs[0]} inherits {PORTED_BASE} from {origin})"
        return (
            f"not a training recipe: {heirs[0]} inherits a {PORTED_BASE} from {origin or 'this module'}, which is not the "
            f"runtime's ({' or '.join(sorted(ported_base_modules))}), and no class subclasses {UPSTREAM_BASE}"
        )
    for cls in classes:
        for base in bases[cls.name]:
            if base in OTHER_INTERFACES:
                return f"{OTHER_INTERFACES[base]}: {cls.name} subclasses {base}; porter ports training recipes ({UPSTREAM_BASE} subclasses)"
            origin = imported.get(base, "")
            if "Recipe" in base or "recipes" in origin.split("."):
                where = f" (from {origin})" if origin else ""
                return f"subclass of {base}{where}: port that recipe; porter ports {UPSTREAM_BASE} subclasses"
    found = ", ".join(f"{cls.name}({', '.join(bases[cls.name])})" for cls in classes)
    return f"not a training recipe: no {UPSTREAM_BASE} subclass" + (f" (classes: {found})" if found else "")


def _ast_name(node: ast.expr) -> str:
    """The last component of a base class expression: `a.B` gives `B`."""
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ast.unparse(node)


# -- small matchers and readers -----------------------------------------------------------------

_EPOCH_RANGE = m.Call(
    func=m.Name("range"),
    args=[
        m.Arg(value=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?epochs_run")))),
        m.Arg(value=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?total_epochs")))),
    ],
)
_LOGGING_TEST = m.Comparison(
    left=m.BinaryOperation(
        left=m.Attribute(value=m.Name("self"), attr=m.Name()),
        operator=m.Modulo(),
        right=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?log_every_n_steps"))),
    ),
    comparisons=[m.ComparisonTarget(operator=m.Equal(), comparator=m.Integer("0"))],
)
_LIST_CONFIG_TEST = m.Call(func=m.Name("isinstance"), args=[m.Arg(value=m.Name()), m.Arg(value=m.Name("ListConfig"))])
_STEP_TIME = m.BinaryOperation(
    left=m.Call(func=m.Attribute(value=m.Name("time"), attr=m.Name("perf_counter"))),
    operator=m.Subtract(),
    right=m.Name(),
)
_MEMORY_STATS = m.Call(func=m.Attribute(attr=m.Name("get_memory_stats")))


def conjuncts(test: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    """`a`, `b` and `c` of a test `a and (b and c)`; the test itself otherwise."""
    if isinstance(test, cst.BooleanOperation) and isinstance(test.operator, cst.And):
        yield from conjuncts(test.left)
        yield from conjuncts(test.right)
    else:
        yield test


def _logging_counter(test: cst.BaseExpression) -> Optional[cst.Attribute]:
    """`self.<counter>` of a test with a `self.<counter> % self._log_every_n_steps == 0` conjunct."""
    for part in conjuncts(test):
        if m.matches(part, _LOGGING_TEST):
            return part.left.left
    return None


def _statement_call(stmt: cst.CSTNode) -> Optional[cst.Call]:
    """The call of an expression statement `f(...)`, or of `x = f(...)`."""
    small = single_small_statement(stmt)
    value = small.value if isinstance(small, (cst.Expr, cst.Assign, cst.AnnAssign)) else None
    return value if isinstance(value, cst.Call) else None


def _ancestors_in(method: cst.FunctionDef, target: cst.BaseStatement) -> Ancestors:
    for stmt, ancestors in iter_statements(method):
        if stmt is target:
            return ancestors
    return ()


def _parameter_receiving(
    index: SourceIndex, method: cst.FunctionDef, stmt: cst.CSTNode, variable: Optional[str]
) -> Optional[str]:
    """The parameter of `method` that the call `self.<method>(...)` in `stmt` passes
    `variable` to, if it does."""
    if variable is None:
        return None
    params = [p.name.value for p in method.params.params]
    if params and params[0] == "self":
        params = params[1:]
    for call in index.self_calls(stmt, method.name.value):
        for position, arg in enumerate(call.args):
            if isinstance(arg, ast.Name) and arg.id == variable and position < len(params):
                return params[position]
        for keyword in call.keywords:
            if isinstance(keyword.value, ast.Name) and keyword.value.id == variable:
                return keyword.arg
    return None


def _logged_stats(call: cst.Call) -> Optional[str]:
    stats = [
        arg.value
        for arg in call.args
        if isinstance(arg.value, cst.Call)
        and isinstance(arg.value.func, cst.Name)
        and arg.value.func.value.endswith("Stats")
    ]
    return node_code(stats[0]) if len(stats) == 1 else None


def _read_metrics(logging: StepLogging, block: cst.CSTNode) -> None:
    """The SFT block's metric dict: its name or literal, its keys, the step time."""
    call = expression_of(logging.log_call)
    logged = call.args[0].value if call.args else None
    keys: Optional[List[str]] = []
    if isinstance(logged, cst.Dict):
        logging.inline_metrics = logged
        keys = _literal_keys(logged, logging)
    elif isinstance(logged, cst.Name):
        logging.metric_dict = name = logged.value
        assigned = False
        for stmt, _ in iter_statements(block):
            small = single_small_statement(stmt)
            if isinstance(small, cst.Assign) and any(m.matches(t.target, m.Name(name)) for t in small.targets):
                assigned = True
                found = _literal_keys(small.value, logging) if isinstance(small.value, cst.Dict) else None
                keys = None if found is None or keys is None else keys + found
            elif isinstance(small, cst.Assign) and any(
                m.matches(t.target, m.Subscript(value=m.Name(name))) for t in small.targets
            ):
                index = small.targets[0].target.slice[0].slice
                key = index.value if isinstance(index, cst.Index) else None
                if keys is not None:
                    keys = keys + [key.evaluated_value] if isinstance(key, cst.SimpleString) else None
            expr = expression_of(stmt)
            if isinstance(expr, cst.Call) and m.matches(
                expr.func, m.Attribute(value=m.Name(name), attr=m.Name("update"))
            ):
                argument = expr.args[0].value if expr.args else None
                if isinstance(argument, cst.Dict):
                    found = _literal_keys(argument, logging)
                    keys = keys + found if found is not None and keys is not None else None
                elif not (argument is not None and m.matches(argument, _MEMORY_STATS)):
                    keys = None  # updated from something porter cannot read
                # torchtune's memory stats add keys the step event reads with .get()
        if not assigned:
            keys = None
    else:
        keys = None
    logging.metric_keys = tuple(keys) if keys is not None else None
    for stmt, _ in iter_statements(block):
        small = single_small_statement(stmt)
        if (
            isinstance(small, cst.Assign)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
            and m.matches(small.value, _STEP_TIME)
        ):
            logging.step_time = small.targets[0].target.value
            logging.step_clock = small.value.right.value
            break


def _literal_keys(value: cst.Dict, logging: StepLogging) -> Optional[List[str]]:
    """The string keys of a dict literal; None if it has another kind of key. A `**`
    merge adds keys porter cannot read: `logging.merged_metrics` says so."""
    keys = []
    for element in value.elements:
        if isinstance(element, cst.StarredDictElement):
            logging.merged_metrics = True
            continue
        if not isinstance(element, cst.DictElement) or not isinstance(element.key, cst.SimpleString):
            return None
        keys.append(element.key.evaluated_value)
    return keys


def _other_work(
    helper: cst.FunctionDef, saves: List[cst.BaseStatement], rotation: Optional[cst.BaseStatement]
) -> Optional[cst.BaseStatement]:
    """A statement of `helper` that is neither a save, nor its timing and log lines, nor
    an `if` around them, nor its rotation of old checkpoints (which the runtime does with
    `porter.keep_last_n_checkpoints`): the work that makes it more than a save."""
    saving = {id(stmt) for stmt in saves} | ({id(rotation)} if rotation is not None else set())
    for stmt in block_statements(helper):
        if not _only_saving(stmt, saving):
            return stmt
    return None


def _only_saving(stmt: cst.BaseStatement, saving: Set[int]) -> bool:
    if id(stmt) in saving or is_log_call(stmt) or is_docstring(stmt) or _is_timer(stmt):
        return True
    if m.matches(stmt, m.SimpleStatementLine(body=[m.Pass() | m.Return(value=None)])):
        return True
    if isinstance(stmt, cst.If):
        blocks = [stmt.body] + ([stmt.orelse] if stmt.orelse is not None else [])
        return all(_only_saving(inner, saving) for block in blocks for inner in block_statements(block))
    return False


_DELETES = ("rmtree", "remove", "unlink", "rm")


def _deletes_checkpoints(stmt: cst.BaseStatement) -> bool:
    """A `for` loop over old checkpoints whose body only deletes (and logs): a rotation."""
    if not isinstance(stmt, cst.For) or stmt.orelse is not None:
        return False
    body = list(block_statements(stmt))
    deletes = [inner for inner in body if (called_name(inner) or "").rsplit(".", 1)[-1] in _DELETES]
    return bool(deletes) and all(inner in deletes or is_log_call(inner) for inner in body)


def kept_by_rotation(stmt: cst.For) -> Optional[int]:
    """K of a rotation over `...[:-K]`: how many checkpoints it kept, when it says."""
    for part in m.findall(
        stmt.iter, m.Slice(lower=None, upper=m.UnaryOperation(operator=m.Minus(), expression=m.Integer()))
    ):
        return int(part.upper.expression.value)
    return None


def is_log_call(stmt: cst.BaseStatement) -> bool:
    name = called_name(stmt)
    return name is not None and name.rsplit(".", 1)[-1] in LOG_METHODS


def _is_timer(stmt: cst.BaseStatement) -> bool:
    small = single_small_statement(stmt)
    return isinstance(small, cst.Assign) and m.matches(
        small.value, m.Call(func=m.Attribute(value=m.Name("time"), attr=m.Name("perf_counter")))
    )


def _dataset_variable(branch: cst.If) -> Optional[str]:
    """The name both the ListConfig branch and its `else` assign."""
    if not isinstance(branch.orelse, cst.Else):
        return None

    def assigned(block) -> List[str]:
        names = []
        for stmt in block_statements(block):
            small = single_small_statement(stmt)
            if isinstance(small, cst.Assign) and isinstance(small.value, cst.Call):
                names += [t.target.value for t in small.targets if isinstance(t.target, cst.Name)]
        return names

    common = [name for name in assigned(branch.orelse) if name in assigned(branch)]
    return "ds" if "ds" in common else (common[0] if common else None)


def _instantiated_config(stmt: cst.BaseStatement, params: Sequence[str]) -> Optional[Tuple[str, str]]:
    """(variable, config) for a statement `variable = config.instantiate(config, ...)` whose
    config is a parameter of `_setup_data`."""
    small = single_small_statement(stmt)
    if not (
        isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name)
    ):
        return None
    value = small.value
    if not (isinstance(value, cst.Call) and dotted_name(value.func) == "config.instantiate" and value.args):
        return None
    first = value.args[0].value
    if isinstance(first, cst.Name) and first.value in params:
        return small.targets[0].target.value, first.value
    return None


def _config_parameter(setup_data: cst.FunctionDef) -> Optional[str]:
    """The parameter `_setup_data` is given the dataset config in: the first after `self`."""
    params = [p.name.value for p in setup_data.params.params]
    return params[1] if len(params) > 1 else None


def _dataset_mix(setup_data: cst.FunctionDef, params: Sequence[str]) -> Optional[DatasetSetup]:
    """The loop `for ... in enumerate(<param>)` over dataset configs that fills two
    dicts, `<datasets>[key] = load_hf_dataset(...)` and `<weights>[key] = ...`."""
    for stmt in block_statements(setup_data):
        if not (isinstance(stmt, cst.For) and m.matches(stmt.iter, m.Call(func=m.Name("enumerate")))):
            continue
        iterated = stmt.iter.args[0].value
        if not (isinstance(iterated, cst.Name) and iterated.value in params):
            continue
        filled: Dict[str, str] = {}
        for assign in m.findall(stmt.body, m.Assign(targets=[m.AssignTarget(target=m.Subscript(value=m.Name()))])):
            role = "datasets" if m.matches(assign.value, m.Call(func=m.Name("load_hf_dataset"))) else "weights"
            filled.setdefault(role, assign.targets[0].target.value.value)
        if set(filled) == {"datasets", "weights"}:
            return DatasetSetup(setup_data, "mix", stmt, iterated.value, mix=filled)
    return None
