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


def test_one_layer_config_is_the_start_of_the_two_layer_run_at_its_checkpoints():
    from devbook.language import SETTING

    two = SETTING.config("cpu")
    one = onelayer.one_layer_config(two, 0.25)
    steps_two = SETTING.checkpoint_steps(two)
    assert one["n_layers"] == 1 and one["num_steps"] == min(s for s in steps_two if s >= 5000)
    assert SETTING.checkpoint_steps(one) == [s for s in steps_two if s <= one["num_steps"]]
    assert {k: v for k, v in one.items() if k not in ("n_layers", "num_steps", "checkpoint_horizon")} == {
        k: v for k, v in two.items() if k not in ("n_layers", "num_steps", "checkpoint_horizon")
    }
    full = onelayer.one_layer_config(two, 1.0)
    assert full["num_steps"] == two["num_steps"] and full["checkpoint_horizon"] == 0
    with pytest.raises(ValueError, match="share"):
        onelayer.one_layer_config(two, 0.0)


def test_compare_boundaries_drops_two_layer_boundaries_beyond_the_shorter_run():
    cmp = onelayer.compare_boundaries(
        table([3], "AB"), table([3, 2035], "ABA"), STEPS[: STEPS.index(572) + 1]
    )
    assert cmp.two == (3,) and cmp.same_first


def test_language_config_checks_corpus_format_and_horizon():
    from devbook.language import SETTING

    with pytest.raises(ValueError, match="corpus format"):
        SETTING.config("cpu", corpus_format=1)
    with pytest.raises(ValueError, match="checkpoint_horizon"):
        SETTING.config("cpu", checkpoint_horizon=10)


def test_probe_table_lists_every_probe_with_its_scores():
    from devbook.language import probes

    t = probes.probe_table()
    assert len(t) == len(probes.PROBE_RUNS) and list(t.columns[:2]) == ["configuration", "levers"]
    scores = [float(str(v).split()[0]) for v in t["prefix-matching"] if v != "—"]
    assert scores and all(0 <= v <= 1 for v in scores)
