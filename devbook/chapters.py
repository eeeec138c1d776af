"""Execute one chapter (a Jupytext MyST notebook) at a preset with papermill.

Used by ``python -m devbook run``, by ``devbook.book`` (``make book``) and by the chapter tests.
The chapter's ``parameters`` cell is read without running anything, so an unknown preset, an
unknown parameter or a value of the wrong type fails before any computation.
"""

from __future__ import annotations

import ast
import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from devbook.paths import repo_root
from devbook.presets import PRESETS, check_preset, coerce
from devbook.progress import EXECUTING

EXECUTED = Path("_build") / "executed"

# Run by the kernel at start-up, before the first cell (IPython's ``exec_lines``).
#: Code the kernel runs before a chapter (progress bars to the terminal, warnings without paths).
KERNEL_SETUP = (
    "import devbook.chapters as _devbook_chapters; _devbook_chapters.prepare_kernel(); del _devbook_chapters"
)


def _format_warning(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """A warning as ``Category: message``, without the file path and source line of its origin."""
    return f"{category.__name__}: {message}\n"


def prepare_kernel() -> None:
    """Set up a kernel that executes a chapter for the book (called through ``KERNEL_SETUP``).

    Warnings are still shown in the page, but as ``Category: message``: Python's default format
    starts with the path of the code that warned (a temporary file of the kernel for a chapter
    cell, a path into the virtual environment for a library), a build machine's path that means
    nothing to a reader.

    tqdm's "IProgress not found" notice is silenced: a library importing ``tqdm.auto`` in a
    kernel without ipywidgets raises it, and it says nothing about the chapter (devbook's own
    bars go to the terminal, :mod:`devbook.progress`). Every other warning is shown.
    """
    from tqdm.std import TqdmWarning

    warnings.formatwarning = _format_warning
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)


def is_notebook(path: Path) -> bool:
    """Whether a MyST markdown file carries a Jupytext header (and so has code cells)."""
    head = path.read_text(encoding="utf-8")[:2000]
    return (
        head.startswith("---") and "jupytext:" in head and "{code-cell}" in path.read_text(encoding="utf-8")
    )


def load(path: str | Path) -> Any:
    """The chapter as an in-memory ``nbformat`` notebook (converted with jupytext)."""
    import jupytext

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no chapter at {path}")
    if path.suffix not in {".md", ".ipynb"}:
        raise ValueError(f"a chapter is a MyST .md (or .ipynb) file, got {path}")
    return jupytext.read(path)


def parameters(notebook: Any, source: str | Path = "<chapter>") -> dict[str, Any]:
    """Defaults of the one cell tagged ``parameters``; its first parameter must be ``preset``."""
    cells = [c for c in notebook.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{source}: expected exactly one cell tagged 'parameters', found {len(cells)}")
    defaults: dict[str, Any] = {}
    for node in ast.parse(cells[0].source).body:
        if not (
            isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
        ):
            raise ValueError(f"{source}: the parameters cell may only hold `name = literal` lines")
        defaults[node.targets[0].id] = ast.literal_eval(node.value)
    if not defaults or next(iter(defaults)) != "preset":
        raise ValueError(f"{source}: the first parameter must be `preset`")
    check_preset(defaults["preset"])
    return defaults


def validate(defaults: Mapping[str, Any], preset: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The chapter's parameters for ``preset`` and ``overrides``, checked against its defaults."""
    check_preset(preset)
    params: dict[str, Any] = {"preset": preset}
    for name, value in overrides.items():
        if name == "preset":
            raise ValueError("give the preset with --preset, not as -p preset=...")
        if name not in defaults:
            valid = ", ".join(f"{k} ({type(v).__name__})" for k, v in defaults.items() if k != "preset")
            raise ValueError(
                f"unknown parameter {name!r}; this chapter takes: {valid or 'none besides preset'}"
            )
        params[name] = coerce(name, value, defaults[name])
    return params


def parse_value(text: str) -> Any:
    """A command-line value: a Python literal if it parses as one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def output_path(chapter: str | Path, preset: str) -> Path:
    """Where the executed notebook of ``chapter`` at ``preset`` goes (under ``_build/executed``)."""
    chapter = Path(chapter).resolve()
    root = repo_root()
    try:
        relative = chapter.relative_to(root)
    except ValueError:
        relative = Path(chapter.name)
    return root / EXECUTED / preset / relative.with_suffix(".ipynb")


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set the environment variable ``name`` to ``value`` inside the block, then restore it."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def execute(
    chapter: str | Path,
    preset: str = "cpu",
    overrides: Mapping[str, Any] | None = None,
    output: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Execute ``chapter`` with papermill at ``preset``; returns the executed notebook's path.

    Parameters
    ----------
    chapter
        A Jupytext MyST chapter (or an ``.ipynb``) with one cell tagged ``parameters``.
    preset
        ``smoke``, ``cpu`` or ``paper``.
    overrides
        Other parameters of the chapter, checked against its defaults before anything runs.
    output
        Where the executed notebook goes; default :func:`output_path`.
    progress
        Whether papermill shows its per-cell progress bar.

    Returns
    -------
    Path
        The executed notebook. The kernel runs with ``DEVBOOK_EXECUTING=1`` in its environment,
        so the chapter's progress bars (:mod:`devbook.progress`) go to this process's terminal
        and not into the notebook, and it shows warnings without file paths
        (:func:`prepare_kernel`).
    """
    import papermill

    chapter = Path(chapter)
    notebook = load(chapter)
    params = validate(parameters(notebook, chapter), preset, overrides or {})
    out = Path(output) if output else output_path(chapter, preset)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _environment(EXECUTING, "1"):  # the kernel inherits this process's environment
        papermill.execute_notebook(
            notebook,
            str(out),
            parameters=params,
            kernel_name="python3",
            cwd=str(repo_root()),
            progress_bar=progress,
            log_output=False,
            extra_arguments=[f"--IPKernelApp.exec_lines={KERNEL_SETUP}"],
        )
    _record_paths(out, chapter)
    return out


def _repo_relative(path: Path) -> str:
    """``path`` relative to the repository if it is inside it, else its file name."""
    try:
        return str(path.resolve().relative_to(repo_root()))
    except ValueError:
        return path.name


def _record_paths(out: Path, chapter: Path) -> None:
    """Set papermill's ``input_path`` / ``output_path`` metadata to repo-relative paths.

    Given an in-memory notebook, papermill records the whole notebook as ``input_path`` (the
    file doubles in size), and ``output_path`` is a path on the build machine; both reach
    readers through the page's download button.
    """
    import nbformat

    notebook = nbformat.read(out, as_version=4)
    meta = notebook.metadata.setdefault("papermill", {})
    meta["input_path"], meta["output_path"] = _repo_relative(chapter), _repo_relative(out)
    nbformat.write(notebook, out)


__all__ = [
    "PRESETS",
    "execute",
    "load",
    "output_path",
    "parameters",
    "parse_value",
    "prepare_kernel",
    "validate",
]
