"""devbook.scorecard: values read from executed notebooks, verdict rules, chapter keys exist."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devbook import scorecard
from devbook.paths import repo_root
from tests.test_glue import glued_patterns, split


def fake_notebook(path: Path, values: dict) -> None:
    """An executed notebook whose cells glue ``values`` (papermill's record format)."""
    outputs = [
        {
            "output_type": "display_data",
            "metadata": {"scrapbook": {"name": k, "mime_prefix": "application/papermill.record/"}},
            "data": {"application/papermill.record/text/plain": repr(v)},
        }
        for k, v in values.items()
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "outputs": outputs}]}))


def test_glued_values_parses_literals(tmp_path: Path) -> None:
    fake_notebook(tmp_path / "a.ipynb", {"n": 3, "s": "A, B", "x": 0.25})
    assert scorecard.glued_values(tmp_path / "a.ipynb") == {"n": 3, "s": "A, B", "x": 0.25}


def test_stage_verdicts() -> None:
    judge = scorecard.judge_stage_types(list("AABBA"), "lr-reached", "lr")
    assert judge({"lr-stage-types": "A, A, B", "lr-reached": "LR1, LR2, LR3"}, "cpu")[1] == "reproduced"
    assert judge({"lr-stage-types": "A, B", "lr-reached": "LR1, LR2, LR3"}, "cpu")[1] == "differs"
    assert (
        judge({"lr-stage-types": "A, A, B, B, A", "lr-reached": "LR1, LR2, LR3, LR4, LR5"}, "paper")[1]
        == "reproduced"
    )


def test_head_and_staircase_verdicts() -> None:
    judge = scorecard.judge_heads("lm-best-prefix", "not reachable at this scale")
    assert (
        judge({"lm-best-prefix": 0.05, "lm-head-threshold": 0.3}, "cpu")[1] == "not reachable at this scale"
    )
    assert judge({"lm-best-prefix": 0.05, "lm-head-threshold": 0.3}, "paper")[1] == "differs"
    assert judge({"lm-best-prefix": 0.6, "lm-head-threshold": 0.3}, "cpu")[1] == "reproduced"
    assert scorecard.judge_staircases({"tms-num-measured": 5, "tms-frac-up": 0.6}, "cpu")[1] == "differs"
    assert (
        scorecard.judge_staircases({"tms-num-measured": 0, "tms-frac-up": 0.0}, "cpu")[1]
        == "not reachable at this scale"
    )


def test_curvature_verdict() -> None:
    judge = scorecard.judge_curvature_misses
    assert judge({"hs-n-llc-ms": 4, "hs-found-either": 2}, "cpu")[1] == "reproduced"
    assert judge({"hs-n-llc-ms": 3, "hs-found-either": 3}, "cpu")[1] == "differs"
    assert judge({"hs-n-llc-ms": 0, "hs-found-either": 0}, "cpu")[1] == "not reachable at this scale"
    forms = scorecard.judge_forms
    assert (
        forms({"lf-n-reachable": 2, "lf-n-paper-found": 2, "lf-n-significant": 3}, "cpu")[1] == "reproduced"
    )
    assert forms({"lf-n-reachable": 2, "lf-n-paper-found": 1, "lf-n-significant": 1}, "cpu")[1] == "differs"
    assert (
        forms({"lf-n-reachable": 0, "lf-n-paper-found": 0, "lf-n-significant": 0}, "cpu")[1]
        == "not reachable at this scale"
    )


def test_language_forms_verdict() -> None:
    judge = scorecard.judge_language_forms
    assert judge({"lmf-n-reachable": 2, "lmf-n-paper-found": 2, "lmf-n-significant": 2}, "paper") == (
        "2 of the 2 paper forms whose stage this run reaches found (2 significant forms)",
        "reproduced",
    )
    assert (
        judge({"lmf-n-reachable": 1, "lmf-n-paper-found": 0, "lmf-n-significant": 3}, "cpu")[1] == "differs"
    )
    assert (
        judge({"lmf-n-reachable": 0, "lmf-n-paper-found": 0, "lmf-n-significant": 1}, "cpu")[1]
        == "not reachable at this scale"
    )
    assert "book/language/forms" in scorecard.keys_by_chapter()


def test_one_layer_boundary_verdict() -> None:
    judge = scorecard.judge_one_layer_boundary
    paper = {"ol-first-1l": 400, "ol-first-2l": 900, "ol-match-rank": 2}
    assert judge(paper, "paper") == (
        "first boundaries: one layer at step 400, two layers at 900; the two-layer's is the one-layer's boundary 2",
        "reproduced",
    )
    assert judge({"ol-first-1l": 3, "ol-first-2l": 3, "ol-match-rank": 1}, "cpu")[1] == "reproduced"
    assert judge({"ol-first-1l": 13, "ol-first-2l": 3, "ol-match-rank": 0}, "cpu")[1] == "differs"
    assert (
        judge({"ol-first-1l": -1, "ol-first-2l": 3, "ol-match-rank": 0}, "cpu")[1]
        == "not reachable at this scale"
    )


def test_scorecard_reads_executed_notebooks(tmp_path: Path) -> None:
    (tmp_path / "devbook").mkdir()
    claim = scorecard.CLAIMS[2]  # regression stages
    fake_notebook(
        tmp_path / "_build/executed/cpu" / f"{claim.chapter}.ipynb",
        {"lr-stage-types": "A, A, B", "lr-reached": "LR1, LR2, LR3"},
    )
    table = scorecard.scorecard("cpu", (claim, scorecard.CLAIMS[3]), root=tmp_path)
    assert list(table["verdict"]) == ["reproduced", "not executed"]
    assert "{doc}`/book/regression/stages`" in scorecard.scorecard_markdown(table)


@pytest.mark.parametrize("chapter", sorted(scorecard.keys_by_chapter()))
def test_every_scorecard_key_is_glued_by_its_chapter(chapter: str) -> None:
    code, _ = split((repo_root() / f"{chapter}.md").read_text(encoding="utf-8"))
    patterns = glued_patterns(code)
    missing = [k for k in scorecard.keys_by_chapter()[chapter] if not any(p.fullmatch(k) for p in patterns)]
    assert not missing, f"{chapter} does not glue {missing}"
