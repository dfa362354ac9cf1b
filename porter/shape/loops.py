"""The epoch loop (in `train` or in a method `train` calls) and the epoch count in it."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import List, Optional

import libcst as cst
import libcst.matchers as m

from porter.index import SourceIndex
from porter.shape.parts import Missing, Problem
from porter.shape.recipe import MethodCalls
from porter.syntax import block_statements, iter_statements, METHOD_BODY_DEPTH, node_code

_EPOCH_RANGE = m.Call(
    func=m.Name("range"),
    args=[
        m.Arg(value=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?epochs_run")))),
        m.Arg(value=m.Attribute(value=m.Name("self"), attr=m.Name(m.MatchRegex(r"_?total_epochs")))),
    ],
)


@dataclass(frozen=True)
class EpochLoop:
    method: cst.FunctionDef  # `train`, or the method train calls that holds the loop
    loop: cst.For
    holder: cst.BaseStatement  # the statement of the method's body that holds the loop
    variable: str  # `curr_epoch`
    epochs_run: str  # `self.epochs_run` (`self._epochs_run` in PPO)
    total_epochs: str  # `self.total_epochs`
    path: List[cst.FunctionDef]  # train, ..., method: how train reaches the loop
    body_depth: int  # the block depth of the loop's body, a method's body being 2


def read_epoch_loop(train: cst.FunctionDef, calls: MethodCalls) -> EpochLoop:
    loops = [
        (path, stmt, ancestors)
        for path in calls.reachable(train).values()
        for stmt, ancestors in iter_statements(path[-1])
        if isinstance(stmt, cst.For) and isinstance(stmt.target, cst.Name) and m.matches(stmt.iter, _EPOCH_RANGE)
    ]
    if len(loops) != 1:
        raise Missing(
            Problem(
                "expected one epoch loop `for <epoch> in range(self.epochs_run, self.total_epochs)` in "
                f"`train` or the methods it calls, found {len(loops)}",
                loops[1][1] if len(loops) > 1 else train,
            )
        )
    ((path, loop, ancestors),) = loops
    method = path[-1]
    nested = [ancestor for ancestor in ancestors if isinstance(ancestor, (cst.FunctionDef, cst.ClassDef))]
    if nested:
        raise Missing(
            Problem(
                f"the epoch loop is in `{nested[-1].name.value}`, defined inside `{method.name.value}`: porter starts "
                "its clocks in the method and resets them in the loop, which a nested function would only shadow; "
                "make the nested function a method",
                loop,
            )
        )
    (holder,) = [
        stmt for stmt in block_statements(method) if stmt is loop or any(s is loop for s, _ in iter_statements(stmt))
    ]
    return EpochLoop(
        method=method,
        loop=loop,
        holder=holder,
        variable=loop.target.value,
        epochs_run=node_code(loop.iter.args[0].value),
        total_epochs=node_code(loop.iter.args[1].value),
        path=path,
        body_depth=METHOD_BODY_DEPTH + len(ancestors) + 1,
    )


def read_epoch_count(epoch: EpochLoop) -> cst.BaseStatement:
    """The `self.epochs_run += 1` directly in the epoch loop."""
    counter = epoch.epochs_run.split(".", 1)[1]
    counts = [
        stmt
        for stmt in block_statements(epoch.loop)
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
        raise Missing(
            Problem(
                f"expected one `{epoch.epochs_run} += 1` directly in the epoch loop, found {len(counts)}",
                counts[1] if len(counts) > 1 else epoch.loop,
            )
        )
    return counts[0]


def parameter_receiving(
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
