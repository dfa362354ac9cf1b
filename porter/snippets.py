"""Renders the snippets porter inserts from the Jinja2 templates in `templates/`.

Each rule has one template, a macro per snippet it inserts. Each snippet is formatted
with black at the indentation it will live at, so its line breaks are black's, then
parsed into libcst statements: the code around it is never reformatted, which keeps
untouched upstream lines byte-identical.
"""

from __future__ import annotations

import functools
import json
import textwrap
from typing import List, TYPE_CHECKING

import jinja2

if TYPE_CHECKING:
    import libcst as cst

_INDENT = "    "


@functools.lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("porter.templates", "."),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    environment.filters["literal"] = lambda text: json.dumps(text, ensure_ascii=False)  # a Python str literal
    return environment


@functools.lru_cache(maxsize=None)
def format_at_depth(code: str, depth: int) -> str:
    """Black-format `code` as if it were nested `depth` blocks deep; return it dedented."""
    import black  # only snippets need it; rendering a header does not

    opening = "".join(f"{_INDENT * level}if _:\n" for level in range(depth))
    formatted = black.format_str(opening + textwrap.indent(code, _INDENT * depth), mode=black.Mode())
    body = formatted.splitlines(keepends=True)[depth:]
    return textwrap.dedent("".join(body))


def render(name: str, **context: object) -> str:
    """The text of template `name` rendered with `context`."""
    return _environment().get_template(name).render(**context)


def macro(template: str, name: str, **arguments: object) -> str:
    """The text of macro `name` of `template`."""
    return str(getattr(_environment().get_template(template).module, name)(**arguments))


def statements(template: str, name: str, depth: int, **arguments: object) -> List[cst.BaseStatement]:
    """Macro `name` of `template` as libcst statements, formatted for a block `depth`
    levels deep."""
    return list(_parsed(format_at_depth(macro(template, name, **arguments), depth)))


@functools.lru_cache(maxsize=None)
def _parsed(code: str) -> tuple:
    import libcst as cst

    # libcst nodes are immutable: one parse serves every file that inserts this code.
    return tuple(cst.parse_module(code).body)
