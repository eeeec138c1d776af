"""The null test of forms (devbook.ed): the flatness statistic against exact answers, the toy
model of a form of App. B.4 against its surrogates, and calibration on Brownian motion."""

from __future__ import annotations

import numpy as np
import pytest

from devbook.ed import Smoothed, find_forms, flatness, sigma_schedule, smooth, sphere_fit
from devbook.ed.presets import TABLE
from devbook.ed.synthetic import brownian, toy_form


def test_sphere_fit_is_exact_on_a_sphere() -> None:
    rng = np.random.default_rng(0)
    centre = np.array([1.0, -2.0, 0.5])
    d = rng.standard_normal((40, 3))
    pts = centre + 3.0 * d / np.linalg.norm(d, axis=1, keepdims=True)
    assert np.allclose(sphere_fit(pts), centre, atol=1e-9)


def _unsmoothed(curve: np.ndarray, sigma: float) -> Smoothed:
    """A curve taken as already smoothed with ``sigma`` (flatness reads only the positions)."""
    z = np.zeros_like(curve)
    return Smoothed(curve, z, z, z, np.full(len(curve), sigma))


def test_flatness_is_zero_on_a_sphere_one_on_a_line() -> None:
    t = np.linspace(0.0, 1.0, 300)
    a, b = 3 * np.sin(4 * t) + 2 * t, 1.2 * np.cos(7 * t)  # wanders in latitude and longitude
    centre = np.array([0.5, -1.0, 2.0])
    on_sphere = centre + 2.0 * np.column_stack([np.cos(a) * np.cos(b), np.sin(a) * np.cos(b), np.sin(b)])
    value, found = flatness(_unsmoothed(on_sphere, 5.0), 150.0)
    assert value < 1e-9
    assert np.linalg.norm(found - centre) < 2.0  # the arc (1 rad) pins the centre only near its plane
    line = np.column_stack([t, 2 * t, -t])
    assert flatness(smooth(line, 5.0), 150.0)[0] == pytest.approx(1.0, abs=1e-6)
    assert flatness(_unsmoothed(np.ones((100, 3)), 3.0), 50.0)[0] == 1.0
    rng = np.random.default_rng(1)
    walk = np.cumsum(rng.standard_normal((300, 3)), axis=0)
    values = [flatness(smooth(walk, 5.0), float(i))[0] for i in range(30, 270, 20)]
    assert all(0.0 <= v <= 1.0 for v in values) and np.median(values) > 0.01


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_toy_form_is_found_and_significant(preset: str) -> None:
    """App. B.4's form, at the chapter's sizes and σ schedule, against 20 + 20 surrogates."""
    n = TABLE[preset]["toy_checkpoints"]
    toy = toy_form(n, seed=0)
    sigma = sigma_schedule(n, n / 150, n / 30, flat=0.2)
    res = find_forms(toy.proxies, toy.steps, sigma=sigma, n_surrogates=20, seed=0)
    near = res.table[np.abs(res.table["index"] - toy.index) <= 2 * sigma[toy.index] + 1]
    assert len(near) >= 1
    best = near.loc[near.p_value.idxmin()]
    assert best["kind"] == "vertex" and best["p_value"] < 0.05
    assert best["flatness"] < res.null.best_flatness.min()


@pytest.mark.slow
def test_null_p_values_are_calibrated_on_brownian_motion() -> None:
    """Brownian paths are the null: over 20 paths the smallest p-value of each path's forms
    (1 where it has none) is not much smaller than uniform."""
    n, sigma = 200, 10.0
    smallest = []
    for seed in range(20):
        x = brownian(n, 500, np.random.default_rng([7, seed]))
        res = find_forms(x, np.arange(n), sigma=sigma, n_surrogates=20, seed=seed)
        smallest.append(float(res.table.p_value.min()) if len(res.table) else 1.0)
    p = np.array(smallest)
    assert np.sum(p <= 0.05) <= 2
    assert np.mean(p <= 0.25) <= 0.4
    assert np.mean(p) >= 0.35


def test_flat_tol_is_checked() -> None:
    x = np.random.default_rng(0).standard_normal((100, 20)).cumsum(0)
    with pytest.raises(ValueError, match="flat_tol"):
        find_forms(x, np.arange(100.0), flat_tol=0.0, n_surrogates=0)
