"""Progress bars that show where a person is watching, never in the rendered book.

Every long loop in ``devbook`` uses :func:`progress` (imported as ``tqdm``). Where the bar goes:

- a chapter executed by :func:`devbook.chapters.execute` (``make book``, ``make test``,
  ``python -m devbook run``): that function sets ``DEVBOOK_EXECUTING=1`` for the kernel, and
  the bar is written as plain text to the kernel process's *terminal* stderr — the terminal of
  the papermill parent — so it never enters the executed notebook or the HTML page;
- a chapter run interactively in Jupyter: a widget bar when ``ipywidgets`` is installed, else
  a text bar in the cell output (``tqdm.auto`` behaviour, without its "IProgress not found"
  warning);
- a plain Python process: a text bar on stderr.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.std import tqdm as text_tqdm

EXECUTING = "DEVBOOK_EXECUTING"

_terminal_stream: IO[str] | None = None


def executing() -> bool:
    """Whether this process is a kernel executing a chapter for :mod:`devbook.chapters`."""
    return os.environ.get(EXECUTING) == "1"


def terminal() -> IO[str]:
    """A text stream onto the process's original stderr (file descriptor 2 at start-up).

    In an IPython kernel, ``sys.stderr`` is sent to the notebook, and ipykernel (6 or later)
    also redirects file descriptor 2 itself into the notebook, keeping a duplicate of the
    original descriptor; this returns a stream on that duplicate, so what is written to it
    reaches the terminal that launched the kernel and not the notebook. Outside a kernel it
    is ``sys.__stderr__``.
    """
    global _terminal_stream
    if _terminal_stream is None:
        fd = getattr(sys.stderr, "_original_stdstream_copy", None)
        if isinstance(fd, int):
            _terminal_stream = io.TextIOWrapper(
                os.fdopen(os.dup(fd), "wb", buffering=0), encoding="utf-8", write_through=True
            )
        else:
            _terminal_stream = sys.__stderr__ or sys.stderr
    return _terminal_stream


def _in_notebook() -> bool:
    """Whether this is an IPython kernel (Jupyter), not a terminal or plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def _widget_tqdm() -> type | None:
    """``tqdm.notebook.tqdm`` when ipywidgets is importable, else ``None``."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return None
    return notebook_tqdm


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> text_tqdm:
    """A tqdm progress bar over ``iterable`` that never ends up in a rendered page.

    Parameters
    ----------
    iterable
        What to iterate over, as for ``tqdm``; ``None`` for a manual bar (``total=...``,
        ``bar.update(n)``).
    **kwargs
        Passed to ``tqdm`` (``desc``, ``total``, ``initial``, ``disable``, ``mininterval``...).
        A ``file`` given here is honoured only outside chapter execution.

    Returns
    -------
    tqdm.std.tqdm
        A text bar on the terminal while a chapter is executed by ``devbook.chapters``
        (``DEVBOOK_EXECUTING=1``); a widget bar in interactive Jupyter when ipywidgets is
        installed; a text bar on stderr otherwise.
    """
    if executing():
        kwargs["file"] = terminal()
        return text_tqdm(iterable, **kwargs)
    if _in_notebook():
        widget = _widget_tqdm()
        if widget is not None:
            return widget(iterable, **kwargs)
    return text_tqdm(iterable, **kwargs)


__all__ = ["EXECUTING", "executing", "progress", "terminal"]
