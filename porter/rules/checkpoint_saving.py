"""P004 checkpoint-saving: checkpoint saving leaves the training loop; the runtime owns it.

Each save site the shape found (a call of the save method, of a checkpointer, or of a
helper method that only saves) is routed by where it is:
- in a loop inside the epoch loop: the runtime's step hook, `porter.save_every_n_steps`;
- in the epoch loop: the runtime's epoch hook, `porter.save_every_n_epochs`; when the
  epoch loop has no save of its own, the hook goes right after the epoch count;
- after the epoch loop: nothing; the runtime saves the final weights at the last epoch.
The save goes as a unit with its timing and log lines, and with the `if`s that only
guard it when their test is the save's schedule (`step % save_every_n_steps == 0`); a
user's own condition stays around the hook. The hook takes the save's place, inside any
`try`, `with` or `else` around it. A recipe that saves inline with no save method gets
one, `_save_checkpoint(epoch)`, holding the moved save.

Every routed save yields a reviewer note, with what its call passed that the runtime
does not pass the same way. A save the hook cannot take over (a helper that saves and
does other work, a save whose result is used, a save method needing arguments the
runtime cannot pass, ...) keeps every save the recipe's, as below, with one note saying
which save and why: half a schedule moved to the runtime would change what is saved.

Under a runtime contract without a save hook the runtime saves nothing: every save
stays the recipe's, in its place, with its arguments and schedule (calling the renamed
`_save_checkpoint`, or the runtime's public wrapper where the contract's wrappers pass
their arguments on), and each is noted.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Set, Tuple

import libcst as cst
import libcst.matchers as m

from porter.edits import Edits
from porter.errors import PortError
from porter.outcomes import CHANGED, KEPT, MOVED, Note
from porter.rules.base import PortingRule
from porter.shape import (
    conjuncts,
    kept_by_rotation,
    EPOCH_COUNT,
    EPOCH_LOOP,
    is_log_call,
    RecipeShape,
    SaveSite,
    SAVES,
)
from porter.verify import ported_method
from porter.wrapper_calls import wrapper_call
from porter.syntax import (
    block_statements,
    containing_block,
    dotted_name,
    expression_of,
    leading_blank_lines,
    METHOD_BODY_DEPTH,
    node_code,
    single_small_statement,
)
from runtime.contract import SAVE_ARGUMENTS

# Names a test may read and still be only the save's schedule, not a user's condition.
_SCHEDULE_WORDS = ("save", "every", "steps_per_epoch", "max_steps", "total_steps", "epochs_run", "total_epochs")
_PLACES = {"step": "the save every N steps", "epoch": "the epoch save", "after": "the final save after the loop"}
_DONE = {
    "step": "is now the runtime's step hook, in its place: `porter.save_every_n_steps` sets how often (default: never), not the config",
    "epoch": "is now the runtime's epoch hook, in its place: `porter.save_every_n_epochs` sets how often (default: every epoch), and the last epoch always saves",
    "after": "goes: the runtime saves the final weights at the last epoch's end",
}


@dataclass
class Route:
    site: SaveSite
    unit: List[cst.BaseStatement]  # what goes: the save, its timing and log lines, its schedule `if`s
    depth: int  # the block depth of the unit's first statement
    guard: Optional[cst.If] = None  # a user's `if` around the unit, kept
    guard_test: Optional[str] = None  # its test without the schedule's conjuncts, when it had some
    timing: bool = False  # the unit has the save's timing and log lines
    dropped: List[str] = field(default_factory=list)  # the schedule conditions the runtime's policy replaces


@dataclass
class Anchors:
    routes: List[Route]
    epoch_hook_after: Optional[cst.BaseStatement]  # the epoch count, when no epoch save holds the hook
    moved: Optional[SaveSite] = None  # the inline save that becomes `_save_checkpoint`
    moved_body: str = ""
    kept: List[SaveSite] = field(default_factory=list)  # saves that stay the recipe's
    # Why the saves stay the recipe's under a contract with a save hook: the save porter
    # could not route, and why (None: the contract has no save hook).
    unroutable: Optional[Tuple[cst.CSTNode, str]] = None


class CheckpointSaving(PortingRule):
    RULE_ID = "P004"
    NAME = "checkpoint-saving"
    DESCRIPTION = (
        "Route every checkpoint save of the training loop to the runtime's hooks (step, "
        "epoch) or drop it (final), with its timing, log lines and schedule."
    )
    NEEDS = (EPOCH_LOOP, EPOCH_COUNT, SAVES)
    TEMPLATE = "checkpoint_saving.py.j2"

    def find(self, shape: RecipeShape) -> Anchors:
        if self.contract.save_hook is None:
            return Anchors(routes=[], epoch_hook_after=None, kept=list(shape.saves))
        try:
            return self._routed(shape)
        except PortError as error:
            # One save the runtime cannot take over: every save stays the recipe's, as
            # under a contract without a save hook, rather than half the schedule moving.
            return Anchors(
                routes=[], epoch_hook_after=None, kept=list(shape.saves), unroutable=(error.node, error.message)
            )

    def _routed(self, shape: RecipeShape) -> Anchors:
        save_method = shape.methods.get("save_checkpoint")
        if save_method is not None:
            _check_signature(save_method, self.RULE_ID)
        for site in shape.saves:
            self._check_site(shape, site, has_method=save_method is not None)
        routes = [self._route(shape, site) for site in shape.saves]
        anchors = Anchors(
            routes,
            epoch_hook_after=None if any(site.place == "epoch" for site in shape.saves) else shape.epoch_count,
        )
        if save_method is None:
            if "_save_checkpoint" in shape.methods:
                raise PortError(
                    self.RULE_ID,
                    "the class has a private `_save_checkpoint` and no `save_checkpoint`: RecipeBase would call it as "
                    "the recipe's save method; rename it, or make it the recipe's `save_checkpoint`",
                    shape.methods["_save_checkpoint"],
                )
            anchors.moved, anchors.moved_body = self._moved_save(shape)
        return anchors

    def _check_site(self, shape: RecipeShape, site: SaveSite, has_method: bool) -> None:
        line = shape.index.line
        if not isinstance(single_small_statement(site.statement), cst.Expr):
            raise PortError(
                self.RULE_ID,
                f"the result of `{site.callee}(...)` is used; porter moves only save statements",
                site.statement,
            )
        if site.kind == "method" and not has_method:
            raise PortError(
                self.RULE_ID, f"`{site.callee}(...)` calls a save method the class does not define", site.statement
            )
        if site.kind == "helper" and site.helper_other is not None:
            raise PortError(
                self.RULE_ID,
                f"`{site.callee}(...)` saves a checkpoint (line {line(site.helper_saves[0])}) and does more in "
                f"`{site.helper.name.value}` (line {line(site.helper_other)}); porter cannot give only the save to "
                "the runtime: move the other work out of it, or save through the save method",
                site.statement,
            )
        if site.place == "before":
            raise PortError(
                self.RULE_ID,
                "a checkpoint save before the epoch loop: porter cannot tell what it is for",
                site.statement,
            )
        if site.place == "step" and shape.step_counter is None:
            raise PortError(
                self.RULE_ID,
                "a save every N steps, and no step counter to give the runtime's step hook",
                site.statement,
            )
        if site.place in ("step", "epoch") and site.epoch_variable is None:
            raise PortError(
                self.RULE_ID,
                f"the save is in `{site.method.name.value}`, which is not passed the epoch; the runtime's hook needs it",
                site.statement,
            )

    def _route(self, shape: RecipeShape, site: SaveSite) -> Route:
        ancestors = list(site.ancestors)
        owner: cst.CSTNode = ancestors[-1] if ancestors else site.method
        block = list(containing_block(owner, site.statement))
        unit = _with_timing(block, site.statement)
        route = Route(site, unit, depth=METHOD_BODY_DEPTH + len(ancestors), timing=len(unit) > 1)
        # Climb the `if`s that hold nothing but the unit, inside the loop the save is in.
        while (
            isinstance(owner, cst.If)
            and owner.orelse is None
            and len(block) == len(route.unit)
            and list(block_statements(owner)) == block
        ):
            schedule, user = _split_test(owner.test, shape, site)
            if user and site.place != "after":
                route.guard = owner
                if schedule:
                    route.dropped += [_one_line(part) for part in schedule]
                    route.guard_test = " and ".join(node_code(part) for part in user)
                break
            route.dropped.append(_one_line(owner.test))
            route.unit = [owner]
            ancestors.pop()
            route.depth -= 1
            owner = ancestors[-1] if ancestors else site.method
            block = list(containing_block(owner, route.unit[0]))
        if site.place == "after" and len(block) == len(route.unit):
            raise PortError(
                self.RULE_ID,
                f"the final save is all that its `{type(owner).__name__.lower()}` block holds; porter cannot remove "
                "it without removing the block",
                site.statement,
            )
        return route

    def _moved_save(self, shape: RecipeShape) -> Tuple[SaveSite, str]:
        """The inline save that becomes the body of a new `_save_checkpoint(epoch)`."""
        for place in ("epoch", "after", "step"):
            sites = [site for site in shape.saves if site.place == place]
            if not sites:
                continue
            bodies = {_moved_code(shape, site) for site in sites}
            if len(bodies) > 1:
                raise PortError(
                    self.RULE_ID,
                    f"{len(bodies)} different inline saves ({_PLACES[place]}) and no save method: porter moves one save "
                    "into `_save_checkpoint`; give the recipe a save method",
                    sites[1].statement,
                )
            site = sites[0]
            _check_locals(shape, site, self.RULE_ID)
            return site, bodies.pop()
        raise PortError(
            self.RULE_ID,
            f"class {shape.cls.name.value} has no `save_checkpoint` method and its training loop saves no "
            "checkpoint: the runtime could not save its weights",
            shape.cls,
        )

    # -- edits -----------------------------------------------------------------------

    def edit(self, shape: RecipeShape, anchors: Anchors, edits: Edits) -> None:
        for route in anchors.routes:
            hook = self._hook(shape, route)
            first, *rest = route.unit
            edits.replace(first, hook)
            for stmt in rest:
                edits.remove(stmt)
            if route.guard_test is not None:
                test = cst.parse_expression(route.guard_test)
                edits.change(route.guard, lambda node, test=test: node.with_changes(test=test))
        if anchors.epoch_hook_after is not None:
            edits.insert_after(
                anchors.epoch_hook_after,
                self.snippet(
                    "epoch_hook",
                    depth=shape.epoch.body_depth,
                    hook=self.contract.save_hook,
                    epoch=shape.epoch.variable,
                    epoch_len=shape.epoch.total_epochs,
                ),
            )
        if anchors.moved is not None:
            (method,) = self.snippet("save_method", depth=1, body=anchors.moved_body)
            blank, _ = leading_blank_lines(shape.train)
            edits.insert_before(shape.train, [method.with_changes(leading_lines=blank)], own_lines=True, made=False)

    def _hook(self, shape: RecipeShape, route: Route) -> List[cst.BaseStatement]:
        site = route.site
        hook = self.contract.save_hook
        if site.place == "step":
            return self.snippet(
                "step_hook", depth=route.depth, hook=hook, epoch=site.epoch_variable, step=shape.step_counter
            )
        if site.place == "epoch":
            return self.snippet(
                "epoch_hook",
                depth=route.depth,
                hook=hook,
                epoch=site.epoch_variable,
                epoch_len=shape.epoch.total_epochs,
            )
        return []

    # -- notes and checks --------------------------------------------------------------

    def notes(self, shape: RecipeShape, anchors: Anchors) -> List[Note]:
        line = shape.index.line
        if anchors.unroutable is not None:
            node, why = anchors.unroutable
            lines = ", ".join(str(line(site.statement)) for site in anchors.kept)
            saves = f"every save stays the recipe's (line{'s' * (len(anchors.kept) > 1)} {lines}), with its arguments and schedule"
            return [
                self.note(
                    line(node),
                    KEPT,
                    f"{saves if anchors.kept else 'the recipe saves no checkpoint, and the job saves none'}, "
                    f"since the runtime's save hook cannot take this one over: {why}; the runtime's own save settings "
                    "(`porter.save_every_n_*`) do not apply to this recipe",
                )
            ]
        notes = [self._kept_note(shape, site) for site in anchors.kept]
        for route in anchors.routes:
            site = route.site
            what = f"{_PLACES[site.place]} (`{node_code(site.call.func)}(...)`"
            if site.kind == "helper":
                what += f", which saves in `{site.helper.name.value}`; that method stays, unused"
                if site.helper_rotation is not None:
                    kept = kept_by_rotation(site.helper_rotation)
                    what += (
                        f"; it also deleted old checkpoints (line {line(site.helper_rotation)}), which the runtime does "
                        f"when `porter.keep_last_n_checkpoints` is set{f' (it kept {kept})' if kept else ''}"
                    )
            what += ")" + (", with its timing and log lines," if route.timing else "")
            note = f"{what} {_DONE[site.place]}"
            if route.dropped:
                note += (
                    "; its condition "
                    + " and ".join(f"`{text}`" for text in route.dropped)
                    + " is the runtime's policy now"
                )
            if route.guard is not None:
                test = (
                    _one_line(cst.parse_expression(route.guard_test))
                    if route.guard_test
                    else _one_line(route.guard.test)
                )
                note += f"; it stays under the recipe's own `if {test}:`"
            differences = _argument_differences(shape, route, anchors)
            if differences:
                note += "; " + differences
            notes.append(self.note(line(site.statement), MOVED, note))
        if anchors.epoch_hook_after is not None:
            notes.append(
                self.note(
                    line(anchors.epoch_hook_after),
                    CHANGED,
                    "the epoch loop saved no checkpoint of its own; the runtime's epoch hook, added after "
                    f"`{shape.epoch.epochs_run} += 1`, saves every epoch (`porter.save_every_n_epochs`) and always at the last",
                )
            )
        if anchors.moved is not None:
            notes.append(
                self.note(
                    line(anchors.moved.statement),
                    MOVED,
                    "this save moved into a new `_save_checkpoint(epoch)`, which the runtime calls at every save; "
                    "check it saves what the loop saved",
                )
            )
        return sorted(notes, key=lambda note: note.line)

    def _kept_note(self, shape: RecipeShape, site: SaveSite) -> Note:
        callee = node_code(site.call.func)
        how = ""
        if site.kind == "method":
            how = (
                "; it calls the runtime's public `save_checkpoint`, which hands `_save_checkpoint` the same values"
                if self._through_wrapper(shape, site)
                else "; it calls the renamed `_save_checkpoint`"
            )
        return self.note(
            shape.index.line(site.statement),
            KEPT,
            f"{_PLACES[site.place]} (`{callee}(...)`) stays the recipe's, "
            f"with its arguments and schedule: the runtime of contract `{self.contract.name}` has no save hook{how}",
        )

    def _through_wrapper(self, shape: RecipeShape, site: SaveSite) -> bool:
        """Whether P001 keeps this save's call on the runtime's public wrapper."""
        statement = shape.index.ast_node(site.statement)
        calls = shape.index.self_calls(site.statement, "save_checkpoint")
        return bool(calls) and all(
            wrapper_call(self.contract, "save_checkpoint", call, statement, shape.index.ast_node(site.method)).through
            for call in calls
        )

    def check(self, ported: ast.Module, shape: RecipeShape, anchors: Anchors) -> List[str]:
        problems = []
        for site in anchors.kept:
            method = ported_method(ported, shape, site.method)
            saved = site.callee.rsplit(".", 1)[-1].lstrip("_")
            if method is None or not any(
                isinstance(call, ast.Call) and ast.unparse(call.func).rsplit(".", 1)[-1].lstrip("_") == saved
                for call in ast.walk(method)
            ):
                problems.append(f"the save at line {shape.index.line(site.statement)} is gone")
        for route in anchors.routes:
            method = ported_method(ported, shape, route.site.method)
            for call in ast.walk(method) if method is not None else ():
                if isinstance(call, ast.Call) and ast.unparse(call.func).endswith("save_checkpoint"):
                    problems.append(f"`{method.name}` still saves at line {call.lineno}")
        return problems


# -- helpers ---------------------------------------------------------------------------------


def _check_signature(method: cst.FunctionDef, rule_id: str) -> None:
    params = method.params
    names = [p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params)][1:]
    if "epoch" not in names and not isinstance(params.star_kwarg, cst.Param):
        raise PortError(rule_id, "`save_checkpoint` has no `epoch` parameter, which the runtime passes by name", method)
    for param in (*params.posonly_params, *params.params[1:], *params.kwonly_params):
        if param.default is None and param.name.value not in SAVE_ARGUMENTS:
            raise PortError(
                rule_id,
                f"`save_checkpoint` requires `{param.name.value}`, which the runtime cannot pass (it passes "
                f"{', '.join(SAVE_ARGUMENTS)})",
                method,
            )


def _with_timing(block: Sequence[cst.BaseStatement], save: cst.BaseStatement) -> List[cst.BaseStatement]:
    """`save`, with the log lines and the timer that wrap it: `start = time.perf_counter()`,
    `log.info(...)`, save, `log.info(... start ...)`."""
    start = end = block.index(save)
    timers = _names_read_by_log_call(block, end + 1)
    if timers:
        begin = start
        while begin > 0 and is_log_call(block[begin - 1]):
            begin -= 1
        if begin > 0 and _assigns_timer(block[begin - 1], timers):
            start, end = begin - 1, end + 1
    return list(block[start : end + 1])


def _names_read_by_log_call(block: Sequence[cst.BaseStatement], index: int) -> Set[str]:
    if index >= len(block) or not is_log_call(block[index]):
        return set()
    return {name.value for name in m.findall(expression_of(block[index]), m.Name())}


def _assigns_timer(stmt: cst.BaseStatement, names: Set[str]) -> bool:
    small = single_small_statement(stmt)
    return (
        isinstance(small, cst.Assign)
        and len(small.targets) == 1
        and dotted_name(small.targets[0].target) in names
        and isinstance(small.value, cst.Call)
        and dotted_name(small.value.func) == "time.perf_counter"
    )


def _split_test(test: cst.BaseExpression, shape: RecipeShape, site: SaveSite) -> Tuple[list, list]:
    """The conjuncts of `test` that only schedule the save, and the user's own."""
    loop_names = {
        target.value
        for ancestor in site.ancestors
        if isinstance(ancestor, cst.For)
        for target in m.findall(ancestor.target, m.Name())
    }
    schedule, user = [], []
    for part in conjuncts(test):
        (schedule if _is_schedule(part, shape, loop_names) else user).append(part)
    return schedule, user


def _is_schedule(part: cst.BaseExpression, shape: RecipeShape, loop_names: Set[str]) -> bool:
    attributes = {node.attr.value for node in m.findall(part, m.Attribute(value=m.Name("self")))}
    counter = shape.step_counter.split(".")[-1] if shape.step_counter else None
    names = {node.value for node in m.findall(part, m.Name())} - {"self"} - attributes
    return (
        bool(attributes | names)
        and all(attr == counter or any(word in attr for word in _SCHEDULE_WORDS) for attr in attributes)
        and names <= loop_names
    )


def _moved_code(shape: RecipeShape, site: SaveSite) -> str:
    """The save statement as the new method's body: its epoch is the method's `epoch`."""
    epoch = site.epoch_variable or (shape.epoch.variable if site.method is shape.epoch.method else None)
    statement = site.statement.with_changes(leading_lines=())
    if epoch is not None:
        statement = statement.visit(_RenameName(epoch, "epoch"))
    return node_code(statement).strip()


class _RenameName(cst.CSTTransformer):
    def __init__(self, old: str, new: str) -> None:
        super().__init__()
        self.old, self.new = old, new

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        return updated_node.with_changes(value=self.new) if updated_node.value == self.old else updated_node


def _check_locals(shape: RecipeShape, site: SaveSite, rule_id: str) -> None:
    """A save moved into a method may read `self`, module names and the epoch only."""
    method = shape.index.ast_node(site.method)
    local = {arg.arg for arg in ast.walk(method) if isinstance(arg, ast.arg)} | {
        node.id for node in ast.walk(method) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)
    }
    epoch = site.epoch_variable or shape.epoch.variable
    read = {node.id for node in ast.walk(shape.index.ast_node(site.statement)) if isinstance(node, ast.Name)}
    outside = sorted(read & local - {epoch, "self"})
    if outside:
        raise PortError(
            rule_id,
            f"the inline save reads `{outside[0]}`, a local of `{site.method.name.value}`: porter moves a save into "
            "`_save_checkpoint` only when it reads nothing but `self`, module names and the epoch",
            site.statement,
        )


def _argument_differences(shape: RecipeShape, route: Route, anchors: Anchors) -> str:
    """What the routed call passed that the runtime's call will not pass the same way."""
    site = route.site
    if site.kind != "method":
        if anchors.moved is None or site is anchors.moved or _moved_code(shape, site) == anchors.moved_body:
            return ""
        return f"it passed `{_arguments(site.call)}`; the runtime's saves pass what line {shape.index.line(anchors.moved.statement)} passed"
    params = [p.name.value for p in shape.methods["save_checkpoint"].params.params][1:]
    expected = {
        "epoch": {site.epoch_variable} if site.place != "after" else None,
        "step": {shape.step_counter},
        "full_tensors": {"False" if site.place == "step" else "True"},
        "is_intermediate_checkpoint": {"False" if site.place == "after" else "True"},
    }
    differing = []
    for position, arg in enumerate(site.call.args):
        name = arg.keyword.value if arg.keyword is not None else (params[position] if position < len(params) else None)
        code = node_code(arg.value)
        if name not in expected:
            differing.append(f"`{name or code}={code}`, which the runtime does not pass" if name else f"`{code}`")
        elif expected[name] is not None and code not in expected[name]:
            runtime = {
                "full_tensors": "False at step saves and True at an epoch's end, as torchtune main's loops do",
                "is_intermediate_checkpoint": "False only at the final save",
            }.get(name, "its own value")
            differing.append(f"`{name}={code}`, where the runtime passes {runtime}")
    return ("it passed " + ", ".join(differing)) if differing else ""


def _one_line(node: cst.CSTNode) -> str:
    """An expression's code on one line, as a note quotes it."""
    return ast.unparse(ast.parse(node_code(node).strip(), mode="eval"))


def _arguments(call: cst.Call) -> str:
    return ", ".join(
        (f"{arg.keyword.value}=" if arg.keyword is not None else arg.star) + _one_line(arg.value) for arg in call.args
    )
