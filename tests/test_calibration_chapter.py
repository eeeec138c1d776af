"""The calibration chapter's helpers: the regression calibration presets, the E.3.1 temperature
grid, the E.3.2 roughness, the recommendation's text, the figures and the
scorecard's calibration verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from devbook.llc import SGLDConfig


def _table(verdicts: dict[tuple[float, float, float], list[str]]) -> pd.DataFrame:
    rows = [
        {"step": s, "epsilon": e, "nbeta": b, "gamma": g, "verdict": v}
        for (e, b, g), vs in verdicts.items()
        for s, v in zip((10, 1000), vs)
    ]
    return pd.DataFrame(rows)


def test_regression_calibration_config_grid_and_probes():
    from devbook.llc import default_nbeta
    from devbook.regression import SETTING
    from devbook.regression import calibration as rcal

    cfg = rcal.calibration_config("cpu")
    sgld = SETTING.sgld("cpu")
    g = rcal.grid(cfg, sgld)
    assert len(g) == len(cfg["epsilon"]) * len(cfg["nbeta"]) * len(cfg["gamma"])
    assert default_nbeta(sgld.batch_size) in g.nbeta  # nβ None resolved to m / log m
    assert (sgld.epsilon, sgld.resolved_nbeta, sgld.gamma) in set(zip(g.epsilon, g.nbeta, g.gamma))
    assert rcal.cell_preset(sgld, cfg).num_chains == cfg["chains"]
    assert rcal.probe_steps([0, 1, 10, 100, 1000, 10_000], [0.0, 0.5, 1.0]) == [1, 100, 10_000]
    with pytest.raises(ValueError, match="after initialisation"):
        rcal.probe_steps([0], [1.0])
    with pytest.raises(ValueError, match="fractions"):
        rcal.calibration_config("cpu", probes=[1.5])
    with pytest.raises(ValueError, match="valid"):
        rcal.calibration_config("cpu", chainz=3)
    with pytest.raises(ValueError, match="seed_steps"):
        rcal.calibration_config("cpu", seed_steps=2)


def test_temperature_grid_holds_the_scales_and_reaches_watanabe():
    from devbook.calibration import Recommendation
    from devbook.llc import default_nbeta
    from devbook.regression import SETTING
    from devbook.regression import calibration as rcal

    sgld = SETTING.sgld("cpu")
    rec = Recommendation(
        SGLDConfig(epsilon=1e-3, gamma=30.0, nbeta=20.0, num_chains=2, num_draws=10), {}, None
    )
    g = rcal.temperature_grid(rec, sgld, [1.0, 4.0])
    assert g.nbeta[-1] == pytest.approx(default_nbeta(sgld.num_samples))
    assert g.nbeta[0] == pytest.approx(default_nbeta(sgld.batch_size))
    for e, b, c in zip(g.epsilon, g.nbeta, g.gamma):
        assert e * b / 2 == pytest.approx(1e-3 * 20 / 2) and e * c / 2 == pytest.approx(1e-3 * 30 / 2)


def test_roughness():
    from devbook.regression.calibration import roughness

    assert roughness(np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(0.0)
    assert roughness(np.array([1.0, 3.0, 1.0, 3.0])) == pytest.approx(4.0 / 2.0)
    assert math.isnan(roughness(np.array([1.0, 2.0])))
    assert roughness(np.array([1.0, np.nan, 2.0, 3.0])) == pytest.approx(0.0)


def test_recommendation_text():
    from devbook.regression import SETTING
    from devbook.regression import calibration as rcal

    sgld = SETTING.sgld("smoke")
    eps, nb, g = sgld.epsilon, sgld.resolved_nbeta, sgld.gamma
    ok = _table({(eps, nb, g): ["ok", "ok"], (eps * 3, nb, g): ["diverged", "ok"]})
    rec, text = rcal.recommendation_text(ok, sgld)
    assert rec is not None and "**ε**" in text and "diverged" in text
    bad = _table({(eps, nb, g): ["not_converged", "ok"]})
    rec, text = rcal.recommendation_text(bad, sgld)
    assert rec is None and "No recommendation" in text and "not_converged at step 10" in text


def test_calibration_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from devbook import calibration_plots as cp

    t = _table({(1e-3, 10.0, 1.0): ["ok", "diverged"], (1e-2, 10.0, 1.0): ["escaped", "not_converged"]})
    t = t.assign(llc=[1.0, np.nan, -0.5, 2.0], nbeta=10.0)
    fig = cp.grid_heatmaps(t, {"chosen": {"epsilon": 1e-3, "nbeta": 10.0, "gamma": 1.0}})
    assert len(fig.axes) == 2
    plt.close(fig)
    temps = pd.DataFrame({"nbeta": [5.0, 50.0], "llc": [1.0, 4.0], "verdict": ["ok", "not_converged"]})
    fig = cp.temperature_figure(temps.assign(llc_over_nbeta=temps["llc"] / temps["nbeta"]), {"m/log m": 10.0})
    plt.close(fig)
    seeds = pd.DataFrame(
        {"step": [10, 100, 1000], "same_seed": [1.0, 2.0, 3.0], "fresh_seed": [1.5, 1.8, 3.3]}
    )
    fig = cp.seed_figure(seeds, {"same_seed": 0.0, "fresh_seed": 0.2})
    plt.close(fig)


def test_calibration_scorecard_verdicts():
    from devbook import scorecard as sc

    assert (
        sc.judge_seed_smoothing({"cal-rough-same": 0.01, "cal-rough-fresh": 0.05}, "cpu")[1] == "reproduced"
    )
    assert sc.judge_seed_smoothing({"cal-rough-same": 0.05, "cal-rough-fresh": 0.01}, "cpu")[1] == "differs"
    assert sc.judge_early_divergence({"cal-div-earlier": 3, "cal-div-final": 1}, "cpu")[1] == "reproduced"
    assert sc.judge_early_divergence({"cal-div-earlier": 1, "cal-div-final": 1}, "cpu")[1] == "differs"
    assert (
        sc.judge_early_divergence({"cal-div-earlier": 0, "cal-div-final": 0}, "cpu")[1]
        == "not reachable at this scale"
    )
    good = {"cal-t-cold-verdict": "not_converged", "cal-t-n-ok-hotter": 2}
    assert sc.judge_watanabe(good, "cpu")[1] == "reproduced"
    assert sc.judge_watanabe({**good, "cal-t-cold-verdict": "ok"}, "cpu")[1] == "differs"
    assert sc.judge_watanabe({**good, "cal-t-n-ok-hotter": 0}, "cpu")[1] == "not reachable at this scale"
    assert {c.chapter for c in sc.CALIBRATION_CLAIMS} == {"book/theory/calibration"}
    assert all(c in sc.CLAIMS for c in sc.CALIBRATION_CLAIMS)
