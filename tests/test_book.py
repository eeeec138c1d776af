"""The build's reader-facing parts: progress bars off the page, parameter cells, strict render."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings
from pathlib import Path

import nbformat
import pytest

from devbook import book, chapters, progress
from devbook.paths import repo_root


def _executed_notebook() -> nbformat.NotebookNode:
    """What papermill writes: title, the parameters cell, then its injected-parameters cell."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter\n\nIt begins."),
        nbformat.v4.new_code_cell('preset = "cpu"\nseed = 0\nsteps = 10', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            '# Parameters\npreset = "smoke"\nseed = 3\n', metadata={"tags": ["injected-parameters"]}
        ),
        nbformat.v4.new_code_cell(
            "x = 1", outputs=[nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful\n")]
        ),
    ]
    nb.metadata["papermill"] = {
        "parameters": {"preset": "smoke", "seed": 3},
        "input_path": "/work/x/book/a.md",
        "output_path": "/work/x/_build/a.ipynb",
    }
    return nb


def test_prepare_notebook_hides_parameter_cells_and_states_them() -> None:
    nb = book.prepare_notebook(_executed_notebook())
    assert "remove-cell" in nb.cells[1].metadata.tags and "remove-cell" in nb.cells[2].metadata.tags
    assert "remove-cell" not in nb.cells[3].metadata.get("tags", [])
    lines = nb.cells[0].source.split("\n")
    assert lines[0] == "# A chapter"
    assert lines[2] == "*Executed at preset `smoke` with parameters `seed = 3`, `steps = 10`.*"
    assert lines[-1] == "It begins."
    assert nb.metadata.papermill == {"parameters": {"preset": "smoke", "seed": 3}}


def test_prepare_notebook_without_a_title_puts_the_note_first() -> None:
    nb = _executed_notebook()
    nb.cells[0].source = "No heading here."
    nb = book.prepare_notebook(nb)
    assert nb.cells[0].source.startswith("*Executed at preset `smoke`")
    assert book.execution_note({"preset": "cpu"}) == "*Executed at preset `cpu`.*"


def test_stderr_outputs_are_listed() -> None:
    assert book.stderr_outputs(_executed_notebook()) == [(3, "UserWarning: careful\n")]


def test_progress_goes_to_the_terminal_while_executing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    terminal = tmp_path / "terminal"
    fd = os.open(terminal, os.O_WRONLY | os.O_CREAT)

    class KernelStderr(io.StringIO):  # ipykernel's OutStream keeps the original fd 2 like this
        _original_stdstream_copy = fd

    notebook = KernelStderr()
    monkeypatch.setattr(sys, "stderr", notebook)
    monkeypatch.setattr(progress, "_terminal_stream", None)
    monkeypatch.setenv(progress.EXECUTING, "1")
    for _ in progress.progress(range(3), desc="executing-bar", mininterval=0):
        pass
    progress._terminal_stream.flush()
    os.close(fd)
    assert "executing-bar" in terminal.read_text() and "3/3" in terminal.read_text()
    assert notebook.getvalue() == ""


def test_progress_is_plain_tqdm_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(progress.EXECUTING, raising=False)
    stream = io.StringIO()
    for _ in progress.progress(range(2), desc="plain-bar", file=stream, mininterval=0):
        pass
    assert "plain-bar" in stream.getvalue()


def test_kernel_warnings_name_no_path() -> None:
    with warnings.catch_warnings():
        chapters.prepare_kernel()
        text = warnings.formatwarning("drifting", UserWarning, "/tmp/ipykernel_1/2.py", 5, "x = 1")
        assert text == "UserWarning: drifting\n"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            chapters.prepare_kernel()
            from tqdm.std import TqdmWarning

            warnings.warn(
                "IProgress not found. Please update jupyter and ipywidgets.", TqdmWarning, stacklevel=1
            )
            warnings.warn("a real warning", UserWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == ["a real warning"]


def test_mathjax_is_pinned(tmp_path: Path) -> None:
    folder = book.install_mathjax(tmp_path)
    assert (folder / "tex-chtml.js").stat().st_size > 500_000
    assert (folder / "output" / "chtml" / "fonts" / "woff-v2" / "MathJax_Main-Regular.woff").exists()
    fake = tmp_path / "cache" / f"mathjax-{book.MATHJAX_VERSION}.tgz"
    fake.parent.mkdir()
    fake.write_bytes(b"not mathjax")
    with pytest.raises(RuntimeError, match="not the pinned"):
        book.fetch_mathjax(fake.parent)


def _tiny_book(root: Path, page: str) -> Path:
    (root / "_config.yml").write_text((repo_root() / "_config.yml").read_text())
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (root / "intro.md").write_text(page)
    return root


def test_render_is_strict(tmp_path: Path) -> None:
    root = _tiny_book(tmp_path, "# Intro\n\nA reference to {glue:text}`nothing-glued` and $x^2$.\n")
    with pytest.raises(subprocess.CalledProcessError):
        book.render("smoke", executed={}, root=root)
    (root / "intro.md").write_text("# Intro\n\nMath: $x^2$.\n")
    html = book.render("smoke", executed={}, root=root)
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    assert "_static/mathjax/tex-chtml.js" in (html / "intro.html").read_text()


def test_render_names_missing_notebooks(tmp_path: Path) -> None:
    chapter = (repo_root() / "book" / "tms" / "growth-and-form.md").read_text()
    root = _tiny_book(tmp_path, "# Intro\n")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapter\n")
    (root / "chapter.md").write_text(chapter)
    with pytest.raises(FileNotFoundError, match="not executed at preset smoke: chapter"):
        book.executed_chapters("smoke", root)
