"""Whether a recipe's own call of an interface method (`self.load_checkpoint(...)`) may go
through the runtime's public wrapper of it, or must call the renamed `_` method.

A call goes through the wrapper only where the wrapper hands the `_` method the very
values the call passes (runtime/contract.py, `Wrapper`): its own arguments, or the node
of `self.cfg` the recipe passes as `cfg.<node>` of the config its `setup(cfg)` or
`__init__(cfg)` is given (the contract's `run_recipe` gives both the config RecipeBase
holds as `self.cfg`), and returns the result where the recipe uses it. Otherwise the
renamed method, as without a wrapper; P001 renames and P004 describes kept saves by
this one answer.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Optional

from runtime.contract import ITS_ARGUMENTS, RuntimeContract

# The methods the runtime calls with its config first (after `self`).
_GIVEN_THE_CONFIG = ("__init__", "setup")


@dataclass(frozen=True)
class WrapperCall:
    through: bool  # the call keeps the public method, and so the wrapper's own work
    why: str  # why not, where the runtime has a wrapper; "" otherwise


def wrapper_call(
    contract: RuntimeContract, name: str, call: ast.Call, statement: ast.stmt, method: Optional[ast.FunctionDef]
) -> WrapperCall:
    """How the call `self.<name>(...)` in `statement` of `method` is ported."""
    wrapper = contract.wrapper(name)
    if wrapper is None:
        return WrapperCall(False, "")
    shown = f"RecipeBase.{name}({', '.join(wrapper.parameters)})"
    used = not (isinstance(statement, ast.Expr) and statement.value is call)
    if used and not wrapper.returns:
        return WrapperCall(False, f"the recipe uses its result and {shown} does not return it")
    if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
        return WrapperCall(False, "it passes `*` or `**` arguments, which porter cannot match to the wrapper's")
    if not wrapper.binds(len(call.args), tuple(k.arg for k in call.keywords)):
        return WrapperCall(False, f"its arguments do not fit {shown}")
    if wrapper.passes == ITS_ARGUMENTS:
        return WrapperCall(True, "")
    values = [*call.args, *(k.value for k in call.keywords)]
    passed = ast.unparse(values[0]) if len(values) == 1 else None
    if passed == wrapper.passes or passed == _as_config_node(method, wrapper.config_node):
        return WrapperCall(True, "")
    return WrapperCall(
        False,
        f"it passes `{', '.join(ast.unparse(v) for v in values)}`, and {shown} hands `_{name}` `{wrapper.passes}` instead",
    )


def _as_config_node(method: Optional[ast.FunctionDef], node: str) -> Optional[str]:
    """`cfg.<node>`, spelled with the name `method` gives the runtime's config, when it is
    given it and never rebinds that name."""
    if method is None or method.name not in _GIVEN_THE_CONFIG or len(method.args.args) < 2:
        return None
    config = method.args.args[1].arg
    rebound = any(isinstance(n, ast.Name) and n.id == config and isinstance(n.ctx, ast.Store) for n in ast.walk(method))
    return None if rebound else f"{config}.{node}"
