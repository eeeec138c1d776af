"""Essential dynamics (devbook.ed) against exact answers: analytic curves, a planted form,
Brownian motion and its null."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from devbook.ed import (
    cusps,
    find_forms,
    form_potential,
    osculating_circles,
    phase_surrogate,
    sigma_schedule,
    smooth,
    step_lengths,
    trajectory_pca,
    vertices,
    walk_surrogate,
)
from devbook.ed.synthetic import (
    brownian,
    circle,
    cusp_form,
    cycloid,
    ellipse,
    log_spiral,
    parabola,
    semicubical,
)

SIGMA = 2.0  # below ~1.5 samples the sampled derivative kernels alias on slowly varying curves


def at(t: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Parameter values at fractional sample indices."""
    return np.interp(pos, np.arange(len(t)), t)


@pytest.fixture(autouse=True)
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_smoothing_derivatives_are_exact_on_polynomials() -> None:
    t = np.linspace(-1, 1, 2001)
    dt = t[1] - t[0]
    sm = smooth(np.column_stack([t, t**2, t**3]), 3.0)
    inner = slice(100, -100)
    assert np.allclose(sm.position[:, 0], t, atol=1e-12)  # odd reflection keeps lines
    assert np.allclose(sm.d1[:, 0], dt, rtol=1e-9)
    assert np.allclose(sm.d2[inner, 1], 2 * dt**2, rtol=1e-6)
    assert np.allclose(sm.d3[inner, 2], 6 * dt**3, rtol=1e-5)
    assert np.allclose(sm.position[inner, 1], t[inner] ** 2 + 9 * dt**2, atol=1e-12)


def test_varying_sigma_matches_constant_sigma_locally() -> None:
    t = np.linspace(0, 3, 1500)
    x = np.column_stack([np.sin(2 * t), np.cos(3 * t)])
    sig = sigma_schedule(len(t), 2.0, 30.0, flat=0.2)
    assert sig[0] == sig[299] == 2.0 and sig[-1] == 30.0
    varying = smooth(x, sig)
    for i in (100, 700, 1300):
        const = smooth(x, sig[i])
        assert np.allclose(varying.position[i], const.position[i], atol=1e-4)
        assert np.allclose(varying.d1[i], const.d1[i], atol=1e-5)


def test_smoothing_rejects_bad_input() -> None:
    x = np.zeros((50, 2))
    with pytest.raises(ValueError, match="NaN"):
        smooth(np.where(np.arange(100)[:, None] == 7, np.nan, 1.0) * np.ones((100, 2)))
    with pytest.raises(ValueError, match="one value per sample"):
        smooth(x, np.ones(49))
    with pytest.raises(ValueError, match="fewer than the smoothing needs"):
        smooth(x, 20.0)


def test_parabola_one_vertex_evolute_cusp_at_half() -> None:
    t, c = parabola(801)
    v = vertices(c, SIGMA)
    assert len(v) == 1 and abs(at(t, v.position)[0]) < 1e-3
    assert np.allclose(v.centre[0], [0.0, 0.5], atol=1e-3)
    assert len(cusps(c, SIGMA)) == 0


@pytest.mark.parametrize("a, b", [(2.0, 1.0), (3.0, 1.5)])
def test_ellipse_four_vertices_and_evolute_cusps(a: float, b: float) -> None:
    t, c = ellipse(1000, a, b)
    v = vertices(c, SIGMA, periodic=True)
    assert len(v) == 4
    angles = at(np.append(t, 2 * np.pi), v.position)
    nearest = np.round(angles / (np.pi / 2)) * (np.pi / 2)
    assert np.abs(angles - nearest).max() < 0.01
    assert sorted(np.round(nearest / (np.pi / 2)).astype(int) % 4) == [0, 1, 2, 3]
    e = a**2 - b**2  # evolute cusps: (±e/a, 0) for the ends of the major axis, (0, ∓e/b)
    expected = np.column_stack([e / a * np.cos(nearest), -e / b * np.sin(nearest)])
    assert np.allclose(v.centre, expected, atol=2e-3)
    assert len(cusps(c, SIGMA, periodic=True)) == 0


def test_circle_and_log_spiral_have_no_vertices() -> None:
    _, c = circle(1000)
    assert len(vertices(c, SIGMA, periodic=True)) == 0
    _, s = log_spiral(3000)
    assert len(vertices(s, SIGMA)) == 0
    assert len(cusps(s, SIGMA)) == 0


def test_semicubical_cusp_at_zero() -> None:
    t, c = semicubical(801)
    cu = cusps(c, SIGMA)
    assert len(cu) == 1 and abs(at(t, cu.position)[0]) < 5e-3
    assert cu.strength[0] > np.radians(170)
    assert len(vertices(c, SIGMA)) == 0


def test_cycloid_cusps_and_vertices() -> None:
    t, c = cycloid(3000)
    cu, v = cusps(c, SIGMA), vertices(c, SIGMA)
    assert np.allclose(at(t, cu.position), [2 * np.pi, 4 * np.pi], atol=5e-3)
    assert np.allclose(at(t, v.position), [np.pi, 3 * np.pi, 5 * np.pi], atol=5e-3)
    # radius 4 at the top; the evolute is the cycloid shifted down by 2
    assert np.allclose(v.radius, 4.0, rtol=1e-3)
    assert np.allclose(v.centre[:, 1], -2.0, atol=5e-3)


def test_osculating_circles_at_inflection_and_zero_speed() -> None:
    t = np.linspace(0, 4 * np.pi, 800)
    c = osculating_circles(np.column_stack([t, np.sin(t)]), SIGMA)
    assert np.isfinite(c.centre).all() and not np.isnan(c.radius).any()
    line = osculating_circles(np.column_stack([t, 2 * t]), SIGMA)
    assert np.isinf(line.radius).all() and np.isfinite(line.centre).all()
    still = osculating_circles(np.ones((100, 2)), SIGMA)
    assert (still.radius == 0).all() and np.allclose(still.centre, 1.0)


def test_coarse_spacing_turns_a_vertex_into_a_rejected_sharp_point() -> None:
    _, coarse = parabola(11)
    v = vertices(coarse, 1.0)
    assert len(v) == 0 and v.rejected.reason.str.startswith("spacing").any()
    _, fine = parabola(201)
    assert len(vertices(fine, SIGMA)) == 1


def test_pca_round_trip() -> None:
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((300, 3)) * [5, 2, 1]
    basis = np.linalg.qr(rng.standard_normal((400, 3)))[0].T
    x = 7.0 + scores @ basis
    pca = trajectory_pca(x, 3)
    assert np.allclose(pca.to_function_space(pca.scores), x, atol=1e-9)
    assert np.allclose(pca.explained_variance_ratio.sum(), 1.0)
    exact = trajectory_pca(x, 3)
    randomized = trajectory_pca(np.vstack([x] * 2), 3)  # 600 × 400: randomised solver
    assert np.allclose(np.abs(randomized.components), np.abs(exact.components), atol=1e-6)


def test_walk_surrogate_keeps_step_lengths_and_brownian_spectrum() -> None:
    ell = np.random.default_rng(1).uniform(0.5, 2.0, 399)
    for dim in (50, 10**6):  # direct, and the Bartlett factor (dim ≥ steps)
        w = walk_surrogate(ell, dim, np.random.default_rng(2))
        assert np.allclose(np.linalg.norm(np.diff(w.astype(float), axis=0), axis=1), ell, rtol=1e-5)
    k = np.arange(1, 5)
    ratios = trajectory_pca(walk_surrogate(np.ones(399), 10**6, np.random.default_rng(0)), 4)
    assert np.allclose(ratios.explained_variance_ratio, 6 / (np.pi**2 * k**2), atol=3e-3)


def test_phase_surrogate_keeps_power_spectrum() -> None:
    rng = np.random.default_rng(0)
    x = np.cumsum(rng.standard_normal((256, 3)), axis=0)
    y = phase_surrogate(x, rng)
    line = x[0] + np.linspace(0, 1, len(x))[:, None] * (x[-1] - x[0])
    power = lambda z: np.abs(np.fft.rfft(z - line, axis=0))  # noqa: E731
    assert np.allclose(power(x), power(y), rtol=1e-8, atol=1e-8)
    assert not np.allclose(x, y)


def test_planted_form_found_lifted_and_significant() -> None:
    planted = cusp_form(601, 50, noise=1e-3, seed=0)
    res = find_forms(planted.proxies, planted.steps, sigma=8.0, n_surrogates=20, seed=0)
    significant = res.table[res.table.p_value <= 0.05]
    assert len(significant) == 1
    row = significant.iloc[0]
    assert abs(row["index"] - planted.index) <= 3
    assert row["features"] == "C C C" and row["residual"] < 0.01
    form = res.forms[int(significant.index[0])]
    scale = np.ptp(planted.curve, axis=0).max()
    assert np.linalg.norm(form.point - planted.point) < 0.01 * scale
    assert all(row[f"pc{i}_b6"] == "both" for i in (1, 2, 3))
    assert row["start"] < planted.steps[planted.index] < row["end"]
    direct = form_potential(planted.proxies, form)
    assert np.allclose(direct, res.potentials[int(significant.index[0])], rtol=1e-6, atol=1e-9)


def test_brownian_midpoint_vertex_is_not_significant() -> None:
    n, dim = 400, 2000
    x = brownian(n, dim, np.random.default_rng(0))
    pca = trajectory_pca(x, 3)
    k = np.arange(1, 4)
    assert np.allclose(pca.explained_variance_ratio, 6 / (np.pi**2 * k**2), atol=0.02)
    sigma = 20.0
    v = vertices(pca.scores[:, :2], sigma)
    apparent = v.position[np.argmin(np.abs(v.position / (n - 1) - 0.5))]
    assert abs(apparent / (n - 1) - 0.5) < 0.1  # the apparent vertex
    strict = find_forms(x, np.arange(n), sigma=sigma, n_surrogates=20, seed=0)
    assert not (strict.table.p_value <= 0.05).any()
    loose = find_forms(x, np.arange(n), sigma=sigma, n_surrogates=20, seed=0, min_planes=2)
    there = loose.table[np.abs(loose.table["index"] - apparent) <= 2 * sigma + 1]
    assert len(there) >= 1 and (there.p_value > 0.05).all()


def test_find_forms_rejects_bad_input() -> None:
    x = np.random.default_rng(0).standard_normal((100, 20)).cumsum(0)
    steps = np.arange(100.0)
    bad = x.copy()
    bad[3, 4] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        find_forms(bad, steps, n_surrogates=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        find_forms(x, steps[::-1], n_surrogates=0)
    with pytest.raises(ValueError, match="one value per sample"):
        find_forms(x, steps, sigma=np.ones(99), n_surrogates=0)
    with pytest.raises(ValueError, match="fewer than the smoothing needs"):
        find_forms(x[:30], steps[:30], sigma=10.0, n_surrogates=0)
    with pytest.raises(ValueError, match="at least 3 PCs"):
        find_forms(x, steps, n_components=2, n_surrogates=0)


def test_step_lengths() -> None:
    x = np.array([[0.0, 0.0], [3.0, 4.0], [3.0, 5.0]])
    assert np.allclose(step_lengths(x), [5.0, 1.0])
