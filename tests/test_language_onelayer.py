"""devbook.language.onelayer: boundary comparison, loss-fall share, evidence changes, verdict text."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from devbook.language import onelayer

STEPS = [0, 3, 13, 58, 267, 572, 2035, 20000]


def table(bounds: list[int], types: str) -> pd.DataFrame:
    """A stage table with boundaries ``bounds`` between step 0 and 20,000."""
    edges = [0, *bounds, 20000]
    return pd.DataFrame(
        {
            "start": edges[:-1],
            "end": edges[1:],
            "type": list(types),
            "dloss": np.zeros(len(types)),
            "dllc": np.zeros(len(types)),
        }
    )


def test_boundaries_are_the_ends_but_the_last() -> None:
    assert onelayer.boundaries(table([3, 572], "ABA")) == [3, 572]
    assert onelayer.boundaries(table([], "A")) == []


def test_same_first_boundary() -> None:
    cmp = onelayer.compare_boundaries(table([3, 572], "ABA"), table([3, 13, 572], "ABAA"), STEPS)
    assert cmp.same_first and cmp.first_gap == 0 and cmp.match_rank == 1
    text = onelayer.comparison_markdown(cmp, 0.1, 0.2)
    assert "both at step 3: the same checkpoint" in text and "its first" in text and "10%" in text


def test_paper_pattern_second_boundary_matches() -> None:
    """The paper's finding: the two-layer's first boundary is the one-layer's second."""
    cmp = onelayer.compare_boundaries(table([267, 572], "ABA"), table([572], "AA"), STEPS)
    assert not cmp.same_first
    assert cmp.match_rank == 2 and cmp.first_gap == -1
    text = onelayer.comparison_markdown(cmp, 0.5, 0.6)
    assert "1 sweep checkpoint apart, not the same step" in text and "its number 2" in text


def test_no_match_and_no_boundary() -> None:
    cmp = onelayer.compare_boundaries(table([58], "AB"), table([2035], "AA"), STEPS)
    assert cmp.match_rank == 0 and cmp.first_gap == -3
    assert "is not a boundary of the one-layer model" in onelayer.comparison_markdown(cmp, None, None)
    empty = onelayer.compare_boundaries(table([], "A"), table([572], "AA"), STEPS)
    assert empty.first_one is None and empty.first_gap is None and not empty.same_first
    assert "nothing to compare" in onelayer.comparison_markdown(empty, None, 0.5)


def test_stray_boundary_raises() -> None:
    with pytest.raises(ValueError, match="not sweep checkpoints"):
        onelayer.compare_boundaries(table([4], "AB"), table([572], "AA"), STEPS)


def test_loss_fall_share() -> None:
    steps, loss = [0, 10, 100], [8.0, 6.0, 4.0]
    assert onelayer.loss_fall_share(steps, loss, 10) == pytest.approx(0.5)
    assert onelayer.loss_fall_share(steps, loss, 100) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="never falls"):
        onelayer.loss_fall_share(steps, [1.0, 1.0, 2.0], 10)


def test_evidence_changes() -> None:
    steps = np.array([0, 3, 20000])
    res = {
        "step": steps,
        "loss": np.array([8.0, 7.0, 5.0]),
        "bigram_score": np.array([9.0, 6.0, 4.5]),
        "bigram_entropy": np.array([4.0, 4.0, 4.0]),
        "pos_loss": np.array([[8.0, 8.0], [7.0, 7.0], [5.0, 5.0]]),
        "pos_loss_ablated": np.array([[8.0, 8.0], [7.0, 7.5], [5.0, 6.0]]),
        "ngram_score_3": np.array([1.0, 1.1, 1.5]),
        "ngram_score_4": np.array([1.0, 1.0, 1.2]),
    }
    out = onelayer.evidence_changes(res, table([3], "AA"))
    assert list(out.index) == ["LM1 (A) 0–3", "LM2 (A) 3–20,000"]
    np.testing.assert_allclose(out["bigram gap"], [-3.0, -1.5])
    np.testing.assert_allclose(out["positional gap"], [0.5, 0.5])
    np.testing.assert_allclose(out["3-gram score"], [0.1, 0.4])
