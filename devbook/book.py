"""Build the book: execute every chapter of ``_toc.yml`` at a preset, then render it strictly.

``make book`` calls :func:`build`. Executed notebooks go to ``_build/executed/<preset>/``; a
staging copy of the book (config, toc, executed notebooks, plain pages) is rendered by Jupyter
Book 1.x with ``-W -n --keep-going`` into ``_build/html``, so any warning fails the build.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from devbook.chapters import execute, is_notebook
from devbook.paths import repo_root
from devbook.presets import check_preset


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


def chapters(root: Path | None = None) -> list[Path]:
    """The toc's pages that are notebooks (MyST with a Jupytext header), as repo-relative paths."""
    import yaml

    root = root or repo_root()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    return [Path(f + ".md") for f in toc_files(toc) if is_notebook(root / (f + ".md"))]


def build(preset: str = "cpu") -> Path:
    """Execute all chapters at ``preset`` and render ``_build/html``; returns the HTML folder."""
    import yaml

    check_preset(preset)
    root = repo_root()
    stage = root / "_build" / "src" / preset
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml", "references.bib"):
        if (root / name).exists():
            shutil.copy(root / name, stage / name)
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    timings = []
    for page in toc_files(toc):
        source = root / (page + ".md")
        target = stage / page
        target.parent.mkdir(parents=True, exist_ok=True)
        if is_notebook(source):
            start = time.perf_counter()
            executed = execute(source, preset)
            timings.append((page, time.perf_counter() - start))
            print(f"[book] {page}: executed at {preset} in {timings[-1][1]:.0f} s", flush=True)
            shutil.copy(executed, target.with_suffix(".ipynb"))
        else:
            shutil.copy(source, target.with_suffix(".md"))
    html = root / "_build" / "html"
    if html.exists():
        shutil.rmtree(html)
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(stage), "--path-output", str(root),
               "-W", "-n", "--keep-going"]
    subprocess.run(command, check=True)
    for page, seconds in timings:
        print(f"[book] {page}: {seconds:.0f} s at {preset}")
    print(f"[book] rendered {html / 'index.html'}")
    return html
