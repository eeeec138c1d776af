"""devbook.theory: the computations behind the theory chapter (book/theory/llc.md).

Sublevel areas against closed forms, Hessians of the potentials, the estimator wrapper that
captures warnings, the notes the chapter glues from results, the step-size search (on a stub
estimator, so every branch is exercised), the free-energy crossing, and the figures (built
without touching matplotlib's global rcParams).
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys
import warnings

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest

from devbook import known, llc, theory, theory_plots
from devbook.paths import repo_root

SMALL = {"num_chains": 3, "num_draws": 60, "num_burnin": 10}


@pytest.fixture(scope="module")
def healthy() -> llc.LLCResult:
    """A real estimate, marked healthy (short chains need not pass the convergence check)."""
    result = theory.estimate_quietly(known.power_sum((1, 2)), seed=0, **SMALL).result
    assert result is not None
    return dataclasses.replace(result, converged=True, rhat=1.0, diagnosis=["ok"] * SMALL["num_chains"])


def test_potential_on_shape_and_values() -> None:
    case = known.power_sum((1, 2))
    w1, w2 = np.array([[0.5, -1.0], [0.0, 2.0]]), np.array([[0.5, 0.0], [-1.0, 1.0]])
    assert np.allclose(theory.potential_on(case, w1, w2), w1**2 + w2**4)
    with pytest.raises(ValueError, match="not a potential"):
        theory.potential_on(known.polynomial_model((2,), n=8), w1, w2)


# The strip's indicator is a step in w1, which the trapezoid rule resolves only to a grid spacing.
@pytest.mark.parametrize(
    ("case", "area", "rtol"),
    [
        (known.quadratic((2.0, 2.0)), lambda e: math.pi * e, 2e-3),  # disc of radius sqrt(eps)
        (known.power_sum((1, 0)), lambda e: 4 * math.sqrt(e), 1e-2),  # strip of width 2 sqrt(eps), height 2
        (
            known.quadratic((2.0, 200.0)),
            lambda e: math.pi * e / 10,
            2e-3,
        ),  # ellipse, semi-axes sqrt(e), sqrt(e)/10
    ],
)
def test_sublevel_area_closed_forms(case: known.KnownCase, area, rtol: float) -> None:
    eps = np.array([1e-4, 1e-2, 0.1])
    got = theory.sublevel_area(case, eps, 2_000)
    assert np.allclose(got, [area(e) for e in eps], rtol=rtol)


def test_sublevel_area_whole_box_and_slope() -> None:
    case = known.power_sum((1, 2))
    assert theory.sublevel_area(case, np.array([10.0]), 200)[0] == pytest.approx(4.0)
    eps = np.geomspace(1e-8, 1e-3, 8)
    assert theory.loglog_slope(eps, theory.sublevel_area(case, eps, 1_000)) == pytest.approx(0.75, abs=0.01)


def test_loglog_slope_of_power_law() -> None:
    x = np.geomspace(1e-3, 1.0, 10)
    slope = theory.loglog_slope(x, 3 * x**0.25)
    assert isinstance(slope, float) and slope == pytest.approx(0.25)


def test_hessian_and_half_rank() -> None:
    assert np.allclose(theory.hessian_eigenvalues(known.quadratic((2.0, 200.0))), [2.0, 200.0])
    ev = theory.hessian_eigenvalues(known.power_sum((1, 2)))
    assert np.allclose(ev, [0.0, 2.0])
    assert theory.half_hessian_rank(ev) == 0.5
    assert theory.half_hessian_rank(theory.hessian_eigenvalues(known.normal_crossing((1, 1)))) == 0.0


def test_potential_table(healthy: llc.LLCResult) -> None:
    pots = {"a": known.quadratic((2.0, 2.0)), "b": known.power_sum((1, 2))}
    table = theory.potential_table(pots, {"a": 1.0, "b": 0.75}, {"a": healthy, "b": healthy})
    assert list(table["potential"]) == ["a", "b"]
    assert list(table["Hessian eigenvalues"]) == ["2, 2", "0, 2"]
    assert list(table["½ rank(H)"]) == [1.0, 0.5]
    assert list(table["exact λ"]) == [1.0, 0.75]
    assert table["SGLD λ̂"].iloc[1] == healthy.mean and table["± std"].iloc[0] == healthy.std


def test_estimate_quietly_matches_estimate_llc_and_prints_nothing() -> None:
    case = known.power_sum((1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning escaping estimate_quietly fails the test
        est = theory.estimate_quietly(case, seed=3, epsilon=1e-7, num_chains=3, num_draws=40)
    assert est.result is not None and not est.result.converged
    assert any("still drifting" in m for m in est.messages)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = llc.estimate_llc(
            case.model, case.loss_fn, case.data, case.config(epsilon=1e-7, num_chains=3, num_draws=40), seed=3
        )
    assert est.result.mean == ref.mean and np.array_equal(est.result.per_chain, ref.per_chain)


def test_estimate_quietly_all_diverged() -> None:
    est = theory.estimate_quietly(known.power_sum((1, 2)), seed=0, epsilon=1.0, num_chains=2, num_draws=30)
    assert est.result is None and len(est.messages) == 1 and "diverged" in est.messages[0]


def test_flags_and_flag_note(healthy: llc.LLCResult) -> None:
    drifting = dataclasses.replace(healthy, converged=False, rhat=1.5)
    split = dataclasses.replace(healthy, diagnosis=["diverged", "ok", "ok"])
    assert theory.flags(healthy) == [] and theory.flags(None) == ["every chain diverged"]
    assert theory.flags(split) == ["1 of 3 chains diverged"]
    assert theory.flags(drifting) == [f"not converged (split-R̂ = 1.50 > {llc.RHAT_MAX})"]
    none = theory.flag_note({"x": healthy, "y": healthy})
    assert none.startswith("The estimator flagged none of the 2 estimates")
    note = theory.flag_note({"x": healthy, "$y$": drifting, "z": None}, "cases")
    assert note == (
        "The estimator flagged 2 of the 3 cases: $y$, not converged (split-R̂ = 1.50 > "
        f"{llc.RHAT_MAX}); z, every chain diverged."
    )


def test_known_case_table_and_summary(healthy: llc.LLCResult) -> None:
    a, b = known.power_sum((1, 2)), known.power_sum((2, 2))
    table = theory.known_case_table([a, b], {a.name: theory.Estimate(healthy), b.name: theory.Estimate(None)})
    assert list(table["case"]) == [a.description, b.description]
    assert table["λ̂"].iloc[0] == healthy.mean and np.isnan(table["λ̂"].iloc[1])
    assert table["chains ok"].iloc[1] == "all diverged"
    assert table["(λ̂ − λ)/λ"].iloc[0] == pytest.approx((healthy.mean - 0.75) / 0.75)
    summary = theory.known_summary(table)
    within = int(abs(healthy.mean - 0.75) <= 2 * healthy.std)
    assert summary == {
        "n-cases": 2,
        "n-within": within,
        "max-relerr": abs(table["(λ̂ − λ)/λ"].iloc[0]),
        "median-relerr": abs(table["(λ̂ − λ)/λ"].iloc[0]),
    }
    assert type(summary["n-cases"]) is int and type(summary["max-relerr"]) is float


def _stub_estimator(
    monkeypatch: pytest.MonkeyPatch,
    healthy: llc.LLCResult,
    partial: tuple[float, float],
    all_from: float,
    calls: list[float],
) -> None:
    """estimate_quietly replaced: no chain diverges below partial[0], one of three does in
    [partial[0], partial[1]), all do from all_from on."""

    def fake(case: known.KnownCase, *, seed: int, epsilon: float, **settings) -> theory.Estimate:
        calls.append(epsilon)
        if epsilon >= all_from:
            return theory.Estimate(None, ["all diverged"])
        if partial[0] <= epsilon < partial[1]:
            return theory.Estimate(dataclasses.replace(healthy, diagnosis=["diverged", "ok", "ok"]), ["some"])
        return theory.Estimate(healthy)

    monkeypatch.setattr(theory, "estimate_quietly", fake)


def test_find_partial_divergence_on_grid(monkeypatch: pytest.MonkeyPatch, healthy: llc.LLCResult) -> None:
    calls: list[float] = []
    _stub_estimator(monkeypatch, healthy, (3.0, 5.0), 5.0, calls)
    sweep, point = theory.find_partial_divergence(
        known.power_sum((1, 2)), [1.0, 2.0, 4.0, 8.0], seed=0, num_chains=3
    )
    assert calls == [1.0, 2.0, 4.0, 8.0] and point.epsilon == 4.0 and point.diverged == 1
    assert [s.diverged for s in sweep] == [0, 0, 1, 3]


def test_find_partial_divergence_bisects(monkeypatch: pytest.MonkeyPatch, healthy: llc.LLCResult) -> None:
    calls: list[float] = []
    _stub_estimator(monkeypatch, healthy, (5.0, 5.5), 5.5, calls)
    sweep, point = theory.find_partial_divergence(
        known.power_sum((1, 2)), [1.0, 4.0, 16.0], seed=0, num_chains=3
    )
    assert calls[:3] == [1.0, 4.0, 16.0] and calls[3] == pytest.approx(8.0)  # sqrt(4 · 16)
    assert 5.0 <= point.epsilon < 5.5 and point.diverged == 1 and sweep[-1] is point
    assert len(sweep) == len(calls)


def test_find_partial_divergence_falls_back(monkeypatch: pytest.MonkeyPatch, healthy: llc.LLCResult) -> None:
    calls: list[float] = []
    _stub_estimator(monkeypatch, healthy, (0.0, 0.0), 5.0, calls)  # never partial: jump at 5
    sweep, point = theory.find_partial_divergence(
        known.power_sum((1, 2)), [1.0, 4.0, 16.0], seed=0, num_chains=3, bisect_steps=5
    )
    assert len(calls) == 3 + 5 and point.diverged == 0
    assert point.epsilon == max(s.epsilon for s in sweep if s.result is not None)
    _stub_estimator(monkeypatch, healthy, (0.0, 0.0), 0.5, [])  # all diverge everywhere
    with pytest.raises(ValueError, match="every chain diverged"):
        theory.find_partial_divergence(known.power_sum((1, 2)), [1.0, 2.0], seed=0, num_chains=3)


def test_divergence_note_wraps_and_escapes(healthy: llc.LLCResult) -> None:
    msg = "SGLD chains [0] diverged (chain 0: nβ·(L − L_n(w*)) = 106 > divergence_threshold 100) " * 3
    note = theory.divergence_note(
        theory.SweepPoint(1.0, theory.Estimate(healthy, [msg, "second"]), 1), width=60
    )
    lines = note.splitlines()
    assert all(line.startswith(">") for line in lines) and max(len(line) for line in lines) <= 80
    assert r"L\_n(w\*)" in note and r"\[0\]" in note and lines[-1] == "> second"
    assert theory.divergence_note(theory.SweepPoint(1.0, theory.Estimate(healthy), 0)) == "> (no warning)"


def test_escape_start_and_start_at() -> None:
    case = known.power_sum((1, 2))
    w1 = theory.escape_start(case, multiple=4)
    assert w1 == math.sqrt(4 * 0.75 / case.sgld["nbeta"])
    assert theory.start_at(case, 0, w1) is case
    assert case.model.w.detach()[0].item() == w1 and case.w_star["w"][0].item() == 0.0
    assert theory.scaled_loss(case, case.sgld["nbeta"]) == pytest.approx(4 * 0.75)


def test_scenarios(healthy: llc.LLCResult) -> None:
    nc = dataclasses.replace(healthy, diagnosis=["not_converged", "ok", "ok"], rhat=1.7)
    scen = {
        "h": healthy,
        "d": dataclasses.replace(healthy, diagnosis=["diverged", "diverged", "ok"]),
        "e": dataclasses.replace(healthy, diagnosis=["escaped"] * 3),
        "n": nc,
    }
    table = theory.scenario_table(scen)
    assert list(table.columns) == ["scenario", "λ̂ (kept chains)", "std", *llc.DIAGNOSES]
    assert list(table["diverged"]) == [0, 2, 0, 0] and list(table["ok"]) == [3, 1, 0, 2]
    nums = theory.failure_numbers(scen)
    assert (nums["div-count"], nums["esc-count"], nums["nc-count"]) == (2, 3, 1)
    assert nums["nc-rhat"] == 1.7 and nums["healthy-mean"] == healthy.mean
    with pytest.raises(ValueError):
        theory.failure_numbers({"h": healthy})


def test_free_energy_and_n_critical() -> None:
    alpha, beta = (0.30, 2.0, 0.0), (0.25, 8.0, 0.0)
    n = theory.n_critical(alpha, beta)
    assert theory.free_energy(n, *alpha) == pytest.approx(theory.free_energy(n, *beta), abs=1e-8)
    assert 0.05 * n == pytest.approx(6.0 * math.log(n))  # n ΔL = Δλ log n
    with pytest.raises(ValueError, match="alpha must win"):
        theory.n_critical(beta, alpha)
    assert theory.transition_numbers(alpha, beta) == {"ncrit": n, "dL": 0.30 - 0.25, "dlam": 6.0, "dc": 0.0}
    b = theory.transition_numbers((0.20, 8.0, 0.0), (0.1995, 5.0, 12.0))
    assert (b["dlam"], b["dc"]) == (3.0, 12.0) and b["dL"] == 0.20 - 0.1995


def test_import_leaves_rcparams_alone() -> None:
    code = (
        "import matplotlib; before = dict(matplotlib.rcParams); import devbook.theory; "
        "changed = sorted(k for k, v in matplotlib.rcParams.items() if before[k] != v); "
        "assert not changed, changed"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=repo_root())


def test_figures(healthy: llc.LLCResult) -> None:
    before = dict(matplotlib.rcParams)
    pots = {"$w_1^2$": known.power_sum((1, 0)), "$w_1^2 + w_2^4$": known.power_sum((1, 2))}
    eps = np.geomspace(1e-6, 1e-3, 4)
    a, b = known.power_sum((1, 2)), known.power_sum((2, 2))
    table = theory.known_case_table(
        [a, b], {a.name: theory.Estimate(healthy), b.name: theory.Estimate(healthy)}
    )
    scen = {f"s{i}": healthy for i in range(4)}
    sweep = [
        theory.SweepPoint(1e-3, theory.Estimate(healthy), 0),
        theory.SweepPoint(1e-2, theory.Estimate(None), 3),
    ]
    phases = {
        "Type A": {"alpha": (0.30, 2.0, 0.0), "beta": (0.25, 8.0, 0.0)},
        "Type B": {"alpha": (0.20, 8.0, 0.0), "beta": (0.1995, 5.0, 12.0)},
    }
    n_crit = {k: theory.n_critical(p["alpha"], p["beta"]) for k, p in phases.items()}
    figs = [
        (theory_plots.plot_landscapes(pots, 0.02, grid=21), 8),
        (
            theory_plots.plot_volume_scaling(
                eps, {k: theory.sublevel_area(c, eps, 50) for k, c in pots.items()}, pots
            ),
            1,
        ),
        (theory_plots.plot_known_cases(table), 2),
        (theory_plots.plot_failure_traces(scen, 0.75), 4),
        (theory_plots.plot_eps_sweep(sweep, 0.75, "title"), 1),
        (theory_plots.plot_free_energy(phases, n_crit), 2),
    ]
    for fig, n_axes in figs:
        assert len(fig.axes) == n_axes
        plt.close(fig)
    assert dict(matplotlib.rcParams) == before
