"""Presets and chapter parameters fail fast, with messages that list what is valid."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devbook import chapters, presets
from devbook.paths import repo_root

TABLE = {
    "smoke": {"steps": 10, "lr": 0.1, "name": "a", "flag": False},
    "cpu": {"steps": 100, "lr": 0.1, "name": "a", "flag": False},
}

CHAPTER = """---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# A chapter

```{{code-cell}} ipython3
:tags: [parameters]

preset = "cpu"
steps = 3
rate = 0.5
```

```{{code-cell}} ipython3
from pathlib import Path
Path({marker!r}).write_text(f"{{preset}} {{steps}} {{rate}}")
```
"""


def test_resolve_applies_and_checks_overrides() -> None:
    assert presets.resolve(TABLE, "smoke", {"steps": 5, "lr": 1})["steps"] == 5
    assert presets.resolve(TABLE, "smoke", {"lr": 1})["lr"] == 1.0
    with pytest.raises(ValueError, match="unknown preset 'huge'.*smoke, cpu, paper"):
        presets.resolve(TABLE, "huge")
    with pytest.raises(ValueError, match="preset 'paper' is not defined here"):
        presets.resolve(TABLE, "paper")
    with pytest.raises(ValueError, match="unknown parameter 'stepz'.*steps: int"):
        presets.resolve(TABLE, "cpu", {"stepz": 1})
    with pytest.raises(ValueError, match="'steps' must be of type int"):
        presets.resolve(TABLE, "cpu", {"steps": "many"})
    with pytest.raises(ValueError, match="'flag' must be of type bool"):
        presets.resolve(TABLE, "cpu", {"flag": 1})
    with pytest.raises(ValueError, match="'steps' must be of type int"):
        presets.resolve(TABLE, "cpu", {"steps": True})


@pytest.fixture()
def chapter(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "ran.txt"
    path = tmp_path / "chapter.md"
    path.write_text(CHAPTER.format(marker=str(marker)))
    return path, marker


def test_parameters_are_read_without_running(chapter: tuple[Path, Path]) -> None:
    path, marker = chapter
    assert chapters.parameters(chapters.load(path)) == {"preset": "cpu", "steps": 3, "rate": 0.5}
    assert not marker.exists()


@pytest.mark.parametrize(
    "preset, overrides, message",
    [
        ("big", {}, "unknown preset 'big'; valid presets: smoke, cpu, paper"),
        (
            "smoke",
            {"stpes": 1},
            "unknown parameter 'stpes'; this chapter takes: steps \\(int\\), rate \\(float\\)",
        ),
        ("smoke", {"steps": 1.5}, "'steps' must be of type int"),
        ("smoke", {"rate": "fast"}, "'rate' must be of type float"),
    ],
)
def test_bad_parameters_fail_before_any_computation(
    chapter: tuple[Path, Path], preset: str, overrides: dict, message: str
) -> None:
    path, marker = chapter
    with pytest.raises(ValueError, match=message):
        chapters.execute(path, preset, overrides, output=path.with_suffix(".ipynb"))
    assert not marker.exists()


def test_cli_runs_a_chapter_with_overrides(chapter: tuple[Path, Path], tmp_path: Path) -> None:
    path, marker = chapter
    out = tmp_path / "out.ipynb"
    run = [
        sys.executable,
        "-m",
        "devbook",
        "run",
        str(path),
        "--preset",
        "smoke",
        "-p",
        "steps=7",
        "-o",
        str(out),
    ]
    result = subprocess.run(run, capture_output=True, text=True, cwd=repo_root())
    assert result.returncode == 0, result.stderr
    assert marker.read_text() == "smoke 7 0.5"
    assert out.exists()


def test_cli_reports_bad_parameters(chapter: tuple[Path, Path]) -> None:
    path, marker = chapter
    run = [sys.executable, "-m", "devbook", "run", str(path), "--preset", "smoke", "-p", "rate=fast"]
    result = subprocess.run(run, capture_output=True, text=True, cwd=repo_root())
    assert result.returncode == 2
    assert "'rate' must be of type float" in result.stderr
    assert not marker.exists()


def test_output_path_mirrors_the_chapter() -> None:
    out = chapters.output_path(repo_root() / "book" / "theory" / "llc.md", "paper")
    assert out == repo_root() / "_build" / "executed" / "paper" / "book" / "theory" / "llc.ipynb"
