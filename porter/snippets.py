"""Renders the snippets porter inserts from the Jinja2 templates in `templates/`.

Each snippet is formatted with black at the indentation it will live at, so its line
breaks are black's, then parsed into libcst statements: the code around it is never
reformatted, which keeps untouched upstream lines byte-identical.
"""

from __future__ import annotations

import functools
import textwrap
from typing import List

import black
import jinja2
import libcst as cst

_INDENT = "    "
_BLACK_MODE = black.Mode()


@functools.lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("porter.templates", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


@functools.lru_cache(maxsize=None)
def format_at_depth(code: str, depth: int) -> str:
    """Black-format `code` as if it were nested `depth` blocks deep; return it dedented."""
    opening = "".join(f"{_INDENT * level}if _:\n" for level in range(depth))
    formatted = black.format_str(
        opening + textwrap.indent(code, _INDENT * depth), mode=_BLACK_MODE
    )
    body = formatted.splitlines(keepends=True)[depth:]
    return textwrap.dedent("".join(body))


def render(name: str, **context: object) -> str:
    """The text of template `name` rendered with `context`."""
    return _environment().get_template(name).render(**context)


def statements(name: str, depth: int, **context: object) -> List[cst.BaseStatement]:
    """Template `name` as libcst statements, formatted for a block `depth` levels deep."""
    return list(_parsed(format_at_depth(render(name, **context), depth)))


@functools.lru_cache(maxsize=None)
def _parsed(code: str) -> tuple:
    # libcst nodes are immutable: one parse serves every file that inserts this code.
    return tuple(cst.parse_module(code).body)


def expression(name: str, **context: object) -> cst.BaseExpression:
    return cst.parse_expression(render(name, **context).strip())
