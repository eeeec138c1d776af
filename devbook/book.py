"""Build the book: execute every chapter of ``_toc.yml`` at a preset, then render it strictly.

``make book`` calls :func:`build`, which is :func:`execute_chapters` then :func:`render`;
``make test`` renders the smoke notebooks that the chapter tests executed with
``python -m devbook.book render --preset smoke --html _build/smoke/html``.

Executed notebooks go to ``_build/executed/<preset>/``. :func:`stage` lays out a copy of the
book for Jupyter Book (config, toc, plain pages, and the executed notebooks made ready for
readers by :func:`prepare_notebook`: parameter cells hidden, a note of the preset and
parameters under the title) together with MathJax from the npm package ``mathjax``
(:func:`fetch_mathjax`), which the pages load from the build itself, so formulas typeset with
no network. Jupyter Book 1.x renders it with ``-W -n --keep-going``, so any warning fails.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from devbook.chapters import execute, is_notebook, output_path, parameters
from devbook.paths import repo_root
from devbook.presets import PRESETS, check_preset

MATHJAX_VERSION = "3.2.2"
# sha256 of the npm registry's mathjax-3.2.2.tgz (npm also checks its own sha512 integrity).
#: sha256 of the pinned MathJax tarball.
MATHJAX_SHA256 = "1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09"
# The staging folder that _config.yml names in html_static_path: its mathjax/ folder becomes
# _build/html/_static/mathjax/, and mathjax_path (mathjax/tex-chtml.js) points into it.
MATHJAX_STATIC = "_mathjax"


def toc_files(toc: dict[str, Any]) -> list[str]:
    """Every ``file`` entry of a Jupyter Book toc, root first, in reading order."""
    files = [toc["root"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                files.append(node["file"])
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []):
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk({k: v for k, v in toc.items() if k in ("parts", "chapters")})
    return files


def pages(root: Path | None = None) -> list[str]:
    """The toc's pages (without suffix, e.g. ``book/theory/llc``), root first, in reading order."""
    import yaml

    root = root or repo_root()
    return toc_files(yaml.safe_load((root / "_toc.yml").read_text()))


#: Pages that read what the other chapters computed, so they are executed after all of them.
EXECUTED_LAST = ("book/scorecard",)


def chapters(root: Path | None = None) -> list[Path]:
    """The toc's notebook pages (MyST with a Jupytext header) as repo-relative paths, in
    execution order: reading order, with :data:`EXECUTED_LAST` moved to the end."""
    root = root or repo_root()
    found = [f for f in pages(root) if is_notebook(root / (f + ".md"))]
    ordered = [f for f in found if f not in EXECUTED_LAST] + [f for f in found if f in EXECUTED_LAST]
    return [Path(f + ".md") for f in ordered]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_mathjax(cache: Path | None = None) -> Path:
    """The npm package ``mathjax@3.2.2`` as a tarball in ``cache``, fetched with ``npm pack`` once.

    Parameters
    ----------
    cache
        Folder for the tarball; default ``<repo>/.cache/mathjax``.

    Returns
    -------
    Path
        ``<cache>/mathjax-3.2.2.tgz``, whose sha256 is checked against :data:`MATHJAX_SHA256`.

    Raises
    ------
    RuntimeError
        If npm is missing or fails, or the tarball's checksum is not the pinned one.
    """
    cache = cache or repo_root() / ".cache" / "mathjax"
    tarball = cache / f"mathjax-{MATHJAX_VERSION}.tgz"
    if not tarball.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError(
                "MathJax for the book comes from the npm registry, but npm is not installed "
                "(Debian: apt-get install -y npm)"
            )
        cache.mkdir(parents=True, exist_ok=True)
        print(f"[book] fetching mathjax@{MATHJAX_VERSION} with npm pack into {cache}", flush=True)
        done = subprocess.run(
            [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--pack-destination", str(cache)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not tarball.exists():
            raise RuntimeError(f"npm pack mathjax@{MATHJAX_VERSION} failed:\n{done.stderr.strip()}")
    digest = _sha256(tarball)
    if digest != MATHJAX_SHA256:
        raise RuntimeError(
            f"{tarball} has sha256 {digest}, not the pinned {MATHJAX_SHA256}; delete it to fetch it again"
        )
    return tarball


def install_mathjax(target: Path, tarball: Path | None = None) -> Path:
    """Unpack MathJax's browser build (the package's ``es5/``) into ``target/mathjax``.

    Returns the folder holding ``tex-chtml.js`` (with its fonts and TeX extensions beside it).
    """
    tarball = tarball or fetch_mathjax()
    folder = target / "mathjax"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    prefix = "package/es5/"
    with tarfile.open(tarball) as archive:
        members = []
        for member in archive.getmembers():
            if member.name.startswith(prefix) and member.isfile():
                member.name = member.name[len(prefix) :]
                members.append(member)
        archive.extractall(folder, members=members, filter="data")
    if not (folder / "tex-chtml.js").exists():
        raise RuntimeError(f"{tarball} holds no es5/tex-chtml.js")
    return folder


def execution_note(used: Mapping[str, Any]) -> str:
    """The line under a page's title that says at which preset and parameters it was executed."""
    rest = [f"`{name} = {value!r}`" for name, value in used.items() if name != "preset"]
    tail = f" with parameters {', '.join(rest)}" if rest else ""
    return f"*Executed at preset `{used['preset']}`{tail}.*"


def prepare_notebook(notebook: Any, source: str | Path = "<chapter>") -> Any:
    """An executed chapter made ready for readers (the notebook is changed in place and returned).

    The ``parameters`` cell and papermill's ``injected-parameters`` cell are tagged
    ``remove-cell`` (the reader sees no parameter code), and :func:`execution_note` goes under
    the page's title (the first line starting with ``#`` in the first markdown cell), giving the preset and
    every parameter the chapter ran with: its defaults, updated by what papermill injected.
    Papermill's record of the input and output paths is dropped.
    """
    import nbformat

    papermill = notebook.metadata.get("papermill", {})
    used = dict(parameters(notebook, source))
    used.update(papermill.get("parameters", {}))
    for key in ("input_path", "output_path"):  # build-machine paths, offered by the download button
        papermill.pop(key, None)
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if ("parameters" in tags or "injected-parameters" in tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
    note = execution_note(used)
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    lines = first.source.split("\n") if first is not None else []
    title = next((i for i, line in enumerate(lines) if line.startswith("# ")), None)
    if first is None or title is None:
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(note))
    else:
        first.source = "\n".join(lines[: title + 1] + ["", note, ""] + lines[title + 1 :])
    return notebook


def stderr_outputs(notebook: Any) -> list[tuple[int, str]]:
    """``(cell index, text)`` of every stderr stream in an executed notebook (warnings, logs)."""
    return [
        (i, "".join(o.get("text", "")))
        for i, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "stream" and o.get("name") == "stderr"
    ]


def stage(preset: str, executed: Mapping[str, Path], root: Path | None = None) -> Path:
    """Lay out ``_build/src/<preset>``: what Jupyter Book renders, MathJax included.

    Parameters
    ----------
    preset
        The preset the notebooks were executed at (names the staging folder).
    executed
        For each notebook page of the toc (``book/theory/llc``), its executed ``.ipynb``.
    root
        The repository root.

    Returns
    -------
    Path
        The staging folder. Stderr output left in a notebook (a warning) stays in the page and
        is listed on the terminal, so that it is seen and fixed, not hidden.
    """
    import nbformat

    root = root or repo_root()
    folder = root / "_build" / "src" / preset
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        if (root / name).exists():
            shutil.copy(root / name, folder / name)
    for page in pages(root):
        target = folder / page
        target.parent.mkdir(parents=True, exist_ok=True)
        if page not in executed:
            shutil.copy(root / (page + ".md"), target.with_suffix(".md"))
            continue
        notebook = prepare_notebook(nbformat.read(executed[page], as_version=4), executed[page])
        for cell, text in stderr_outputs(notebook):
            print(f"[book] {page}: stderr in cell {cell}: {text.strip().splitlines()[0][:200]}", flush=True)
        nbformat.write(notebook, target.with_suffix(".ipynb"))
    install_mathjax(folder / MATHJAX_STATIC)
    return folder


def execute_chapters(preset: str = "cpu", root: Path | None = None) -> dict[str, Path]:
    """Execute every notebook page of the toc at ``preset``; ``{page: executed notebook}``."""
    check_preset(preset)
    root = root or repo_root()
    executed, timings = {}, []
    for chapter in chapters(root):
        page, start = str(chapter.with_suffix("")), time.perf_counter()
        executed[page] = execute(root / chapter, preset)
        timings.append((page, time.perf_counter() - start))
        print(f"[book] {page}: executed at {preset} in {timings[-1][1]:.0f} s", flush=True)
    for page, seconds in timings:
        print(f"[book] {page}: {seconds:.0f} s at {preset}")
    return executed


def executed_chapters(preset: str, root: Path | None = None) -> dict[str, Path]:
    """The notebooks already executed at ``preset`` for every notebook page of the toc.

    Raises
    ------
    FileNotFoundError
        Naming each page whose executed notebook is missing, and how to make it.
    """
    check_preset(preset)
    root = root or repo_root()
    executed = {
        page: output_path(root / (page + ".md"), preset)
        for page in pages(root)
        if is_notebook(root / (page + ".md"))
    }
    missing = [page for page, path in executed.items() if not path.exists()]
    if missing:
        raise FileNotFoundError(
            f"not executed at preset {preset}: {', '.join(missing)} (make them with "
            f"`python -m devbook run {missing[0]}.md --preset {preset}`, `make test` for smoke, "
            f"or build and render at once with `python -m devbook build --preset {preset}`)"
        )
    return executed


def render(
    preset: str = "cpu",
    html: str | Path | None = None,
    executed: Mapping[str, Path] | None = None,
    root: Path | None = None,
) -> Path:
    """Render executed notebooks into HTML strictly (any Sphinx warning fails), executing nothing.

    Parameters
    ----------
    preset
        Which executed notebooks (``_build/executed/<preset>/``) to render.
    html
        Where the HTML goes (replaced whole); default ``_build/html``.
    executed
        ``{page: notebook}`` to render instead of :func:`executed_chapters`'s.
    root
        The book's folder (``_config.yml``, ``_toc.yml``); default the repository.

    Returns
    -------
    Path
        The HTML folder (open its ``index.html``).

    Raises
    ------
    subprocess.CalledProcessError
        If Jupyter Book fails or warns.
    """
    root = root or repo_root()
    executed = executed if executed is not None else executed_chapters(preset, root)
    start = time.perf_counter()
    folder = stage(preset, executed, root)
    output = root / "_build" / "render" / preset  # Jupyter Book writes <output>/_build/{html,.doctrees}
    if output.exists():
        shutil.rmtree(output)
    command = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        str(folder),
        "--path-output",
        str(output),
        "-W",
        "-n",
        "--keep-going",
    ]
    subprocess.run(command, check=True)
    target = Path(html) if html else root / "_build" / "html"
    target = target if target.is_absolute() else root / target
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(output / "_build" / "html"), str(target))
    print(
        f"[book] rendered {target / 'index.html'} at preset {preset} in {time.perf_counter() - start:.0f} s"
    )
    return target


def build(preset: str = "cpu") -> Path:
    """Execute all chapters at ``preset`` and render ``_build/html``; returns the HTML folder."""
    return render(preset, executed=execute_chapters(preset))


def main(argv: list[str] | None = None) -> int:
    """``python -m devbook.book render --preset P [--html DIR]``: render without executing."""
    parser = argparse.ArgumentParser(prog="python -m devbook.book", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    command = sub.add_parser("render", help="render the notebooks already executed at a preset")
    command.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    command.add_argument("--html", default=None, help="HTML folder (default _build/html)")
    args = parser.parse_args(argv)
    try:
        render(args.preset, args.html)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(
            f"error: jupyter-book failed (exit {error.returncode}); its warnings are above", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
