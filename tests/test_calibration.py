"""devbook.calibration: the batched ε × nβ × γ grid, cell verdicts, the E.3.3 recommendation, and
its honesty on the models of devbook.known (calibrated without being told λ)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from devbook import known
from devbook.calibration import (
    SLOPE_MAX,
    CalibrationError,
    Grid,
    calibrate,
    calibrate_run,
    cell_summary,
    cell_verdict,
    healthy_epsilons,
    recommend,
    trace_slope,
)
from devbook.llc import SGLDConfig, estimate_llc, estimate_llc_grid
from devbook.sgld import check_cells


def _rrr():
    case = known.reduced_rank_regression(3, 1, 3, 1, n=1024)
    return case, case.config(num_chains=4, num_draws=60, num_burnin=10)


def test_grid_cells_equal_one_estimate_each_and_diverged_cells_are_recorded():
    case, base = _rrr()
    grid = Grid.product([1e-4, 3e-2], [30.0, 300.0], [1.0, 10.0])
    results = estimate_llc_grid(case.model, case.loss_fn, case.data, base, grid, seed=5)
    assert len(results) == len(grid) == 8
    n_all_diverged = 0
    for k, res in enumerate(results):
        cfg = grid.config(base, k)
        assert (res.config.epsilon, res.config.nbeta, res.config.gamma) == (cfg.epsilon, cfg.nbeta, cfg.gamma)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ref = estimate_llc(case.model, case.loss_fn, case.data, cfg, seed=5)
            except RuntimeError:  # every chain diverged: the grid records it instead of raising
                assert res.diagnosis == ["diverged"] * 4 and math.isnan(res.mean)
                n_all_diverged += 1
                continue
        np.testing.assert_array_equal(res.loss_trace, ref.loss_trace)
        assert res.diagnosis == ref.diagnosis and res.mean == ref.mean
    assert n_all_diverged >= 1  # ε = 3e-2 with nβ = 300 explodes
    sequential = estimate_llc_grid(case.model, case.loss_fn, case.data, base, grid, seed=5, vectorize=False)
    for a, b in zip(results, sequential):
        np.testing.assert_allclose(a.loss_trace, b.loss_trace, rtol=1e-10)
        assert a.diagnosis == b.diagnosis and not b.vectorized


def test_grid_in_the_paper_reparametrisation():
    g = Grid.from_scales(noise=[1e-3, 1e-2], gradient=[0.03], localisation=[0.003, 0.3])
    assert len(g) == 4
    for e, b, c in zip(g.epsilon, g.nbeta, g.gamma):
        assert e * b / 2 == pytest.approx(0.03)
        assert e * c / 2 in (pytest.approx(0.003), pytest.approx(0.3))
    p = Grid.product([1e-3, 1e-2], [10], [0.0, 1.0])
    assert p.epsilon == (1e-3, 1e-2, 1e-3, 1e-2) and p.gamma == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize(
    "cells, match",
    [
        ({"epsilon": [1e-3], "nbeta": [1.0]}, "keys"),
        ({"epsilon": [1e-3, 1e-2], "nbeta": [1.0], "gamma": [0.0]}, "one length"),
        ({"epsilon": [], "nbeta": [], "gamma": []}, "non-empty"),
        ({"epsilon": [-1e-3], "nbeta": [1.0], "gamma": [0.0]}, "epsilon"),
        ({"epsilon": [1e-3], "nbeta": [1.0], "gamma": [-1.0]}, "gamma"),
        ({"epsilon": [1e-3], "nbeta": [float("nan")], "gamma": [0.0]}, "nbeta"),
    ],
)
def test_bad_cells_are_refused(cells, match):
    with pytest.raises(ValueError, match=match):
        check_cells(cells)


def test_bad_grid_inputs_are_refused():
    case, base = _rrr()
    with pytest.raises(ValueError, match="at least one"):
        Grid.product([], [1.0], [1.0])
    with pytest.raises(ValueError, match="Grid"):
        estimate_llc_grid(case.model, case.loss_fn, case.data, base, [(1e-3, 1.0, 1.0)], seed=0)
    with pytest.raises(ValueError, match="at least one checkpoint"):
        calibrate({}, case.loss_fn, case.data, base, Grid.product([1e-3], [1.0], [1.0]), seed=0)


def test_trace_slope():
    assert trace_slope(np.full(100, 3.0)) == pytest.approx(0.0, abs=1e-12)
    rising = np.linspace(1.0, 2.0, 101)  # last half rises from 1.5 to 2.0: 25 % of the final value
    assert trace_slope(rising) == pytest.approx(0.25, rel=0.03)
    assert trace_slope(np.zeros(10)) != trace_slope(np.zeros(10))  # 0/0: nan, never "flat"
    assert trace_slope(np.r_[np.ones(5), np.nan, np.ones(4)]) != trace_slope(np.ones(3))  # nan
    assert trace_slope(np.linspace(0, 1e-6, 50)) > SLOPE_MAX  # a barely-moved chain still grows


def test_cell_verdict():
    ok = {"ok": 4, "diverged": 0, "not_converged": 0, "escaped": 0}
    assert cell_verdict(ok, 1.01, 0.01) == "ok"
    assert cell_verdict({**ok, "ok": 3, "diverged": 1}, 1.01, 0.01) == "diverged"
    assert cell_verdict({**ok, "ok": 3, "escaped": 1}, 1.01, 0.01) == "escaped"
    assert cell_verdict(ok, 1.5, 0.01) == "not_converged"
    assert cell_verdict(ok, 1.01, 0.2) == "not_converged"
    assert cell_verdict(ok, 1.01, float("nan")) == "not_converged"
    assert cell_verdict({**ok, "ok": 15, "not_converged": 1}, 1.01, 0.0) == "ok"  # 1 of 16
    assert cell_verdict({**ok, "ok": 2, "not_converged": 2}, 1.01, 0.0) == "not_converged"


def _table(verdicts: dict[tuple[float, float, float], list[str]]) -> pd.DataFrame:
    rows = [
        {"step": s, "epsilon": e, "nbeta": b, "gamma": g, "verdict": v}
        for (e, b, g), vs in verdicts.items()
        for s, v in zip((10, 1000), vs)
    ]
    return pd.DataFrame(rows)


BASE = SGLDConfig(epsilon=1.0, gamma=0.0, nbeta=1.0, num_chains=4, num_draws=100)


def test_recommend_follows_the_rule_and_gives_reasons():
    ok, nc, di, es = "ok", "not_converged", "diverged", "escaped"
    verdicts = {}
    for e, (lo, hi) in zip((1e-4, 1e-3, 1e-2, 1e-1), [(ok, nc), (ok, ok), (ok, ok), (di, ok)]):
        verdicts[(e, 10.0, 1.0)] = [lo, hi]  # γ = 1, nβ = 10: healthy at 1e-3 and 1e-2
        verdicts[(e, 100.0, 1.0)] = [di if e >= 1e-2 else nc, ok]  # nβ = 100: never healthy
        verdicts[(e, 10.0, 0.1)] = [es, ok]  # γ = 0.1: escapes early
    rec = recommend(_table(verdicts), BASE)
    assert rec.values == {"epsilon": 1e-3, "nbeta": 10.0, "gamma": 1.0}
    assert (rec.config.num_chains, rec.config.num_draws) == (4, 100)
    assert "escaped" in rec.reasons["gamma"] and "step 10" in rec.reasons["gamma"]
    assert "not_converged" in rec.reasons["nbeta"] and "diverged" in rec.reasons["nbeta"]
    assert "not_converged" in rec.reasons["epsilon"] and "diverged" in rec.reasons["epsilon"]
    summary = cell_summary(_table(verdicts))
    assert len(summary) == 12 and set(summary["verdict"]) == {"ok", "not_converged", "escaped", "diverged"}


def test_recommend_skips_an_isolated_healthy_cell_below_the_converging_range():
    row = pd.DataFrame(
        {
            "epsilon": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1],
            "verdict": ["ok", "not_converged", "ok", "ok", "diverged"],
        }
    )
    assert healthy_epsilons(row) == [1e-3, 1e-2]
    verdicts = {(e, 10.0, 1.0): [v, "ok"] for e, v in zip(row["epsilon"], row["verdict"])}
    assert recommend(_table(verdicts), BASE).config.epsilon == 1e-3


def test_recommend_names_every_cell_when_none_is_healthy():
    verdicts = {(1e-3, 10.0, 1.0): ["diverged", "ok"], (1e-4, 10.0, 1.0): ["ok", "not_converged"]}
    with pytest.raises(CalibrationError) as err:
        recommend(_table(verdicts), BASE)
    msg = str(err.value)
    assert "(ε=0.001, nβ=10, γ=1): diverged at step 10" in msg
    assert "(ε=0.0001, nβ=10, γ=1): not_converged at step 1000" in msg
    with pytest.raises(ValueError, match="calibration table"):
        recommend(pd.DataFrame({"x": [1]}), BASE)
    with pytest.raises(ValueError, match="SGLDConfig"):
        recommend(_table(verdicts), {"epsilon": 1e-3})


def test_calibrate_run_is_cached_in_the_run_store(tmp_path):
    from devbook.regression import SETTING

    run = SETTING.train(SETTING.config("smoke"), root=tmp_path, progress=False)
    sgld = SETTING.sgld("smoke", num_draws=8, num_burnin=2)
    grid = Grid.product([1e-4, 1e-3], [10.0], [100.0])
    steps = run.checkpoint_steps()[-1:]
    first = calibrate_run(SETTING, run, sgld, steps, grid)
    assert list(first["step"]) == steps * 2 and list(first["epsilon"]) == [1e-4, 1e-3]
    assert {"llc", "llc_std", "rhat", "slope", "verdict", "gradient_scale", "localisation_scale"} <= set(
        first
    )
    torch.manual_seed(123)  # the cached result does not depend on any global state
    pd.testing.assert_frame_equal(first, calibrate_run(SETTING, run, sgld, steps, grid))


#: The honesty grid: the same for every case, set without looking at any case's λ or its
#: suggested sampler (only its SGLD batch size is taken from the case).
HONESTY_GRID = Grid.product(list(10 ** np.arange(-5, -1.9, 0.5)), [10.0, 100.0, 1000.0], [0.1])
HONESTY_TOLERANCE = 0.2


def honest_estimate(case: known.KnownCase) -> tuple[float, SGLDConfig]:
    """λ̂ with the recommended sampler, on fresh seeds (not the calibration's)."""
    base = SGLDConfig(
        epsilon=1e-3,
        gamma=1.0,
        nbeta=1.0,
        num_chains=16,
        num_draws=1000,
        num_burnin=200,
        batch_size=case.sgld["batch_size"],
    )
    table = calibrate({0: case.model}, case.loss_fn, case.data, base, HONESTY_GRID, seed=0)
    config = recommend(table, base).config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimate_llc(case.model, case.loss_fn, case.data, config, seed=1).mean, config


@pytest.mark.slow
@pytest.mark.parametrize("case", known.known_cases(), ids=lambda c: c.name)
def test_recommendation_is_honest_on_every_known_case(case):
    estimate, config = honest_estimate(case)
    rel = estimate / case.true_lambda - 1
    assert abs(rel) <= HONESTY_TOLERANCE, (case.name, estimate, case.true_lambda, config)
