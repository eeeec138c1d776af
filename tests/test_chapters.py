"""Every chapter of _toc.yml executes at the smoke preset through papermill, the scorecard last
(it reads the others' executed notebooks); the HTML is rendered from these afterwards."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devbook.book import chapters
from devbook.chapters import execute
from devbook.paths import repo_root

CHAPTERS = chapters()  # in execution order: the scorecard last


def test_toc_lists_chapters() -> None:
    assert CHAPTERS, "_toc.yml lists no executable chapter"


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[str(c) for c in CHAPTERS])
def test_chapter_executes_at_smoke(chapter: Path) -> None:
    out = execute(repo_root() / chapter, "smoke", progress=False)
    notebook = json.loads(out.read_text())
    errors = [o for c in notebook["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and 'preset = "smoke"' in "".join(injected[0]["source"])
