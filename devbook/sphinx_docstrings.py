"""A small Sphinx extension for the API reference page: docstrings are plain text with math
notation, so ``|x|`` means an absolute value, not an RST substitution. Before autodoc parses a
docstring, every ``|`` outside an inline literal is escaped."""

from __future__ import annotations

import re
from typing import Any

_LITERAL = re.compile(r"(``.*?``)")


def escape_bars(line: str) -> str:
    """``line`` with each ``|`` outside ````…```` literals escaped as ``\\|``."""
    parts = _LITERAL.split(line)
    return "".join(p if p.startswith("``") else p.replace("|", r"\|") for p in parts)


def _process(app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]) -> None:
    lines[:] = [escape_bars(line) for line in lines]


def setup(app: Any) -> dict[str, Any]:
    """Register the docstring hook (Sphinx extension entry point)."""
    app.connect("autodoc-process-docstring", _process)
    return {"parallel_read_safe": True}
