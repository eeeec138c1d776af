"""Synthetic trajectories with known geometry, for the tests and the theory chapter.

- analytic plane curves with exactly known vertices, evolute cusps and cusps: :func:`parabola`,
  :func:`ellipse`, :func:`circle`, :func:`log_spiral`, :func:`semicubical`, :func:`cycloid`
  :func:`hyperbola` (each returns the parameter ``t`` and the ``(n, 2)`` curve);
- :func:`brownian`: a random walk in R^D, whose PC scores are close to ``cos(kπs)`` with
  explained-variance ratios ``6/(π²k²)`` (paper App. B.7);
- :func:`cusp_form`: a 3-D curve whose coordinates are each even or odd about ``t*``, with a
  stationary point there, embedded with noise in R^D: every PC plane has a cusp at ``t*`` and
  the centres lift exactly to the curve's point (App. B.3, Lemma B.3);
- :func:`toy_form`: the toy model of a form of App. B.4, simulated as a gradient flow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.integrate import solve_ivp

Curve = tuple[NDArray[np.float64], NDArray[np.float64]]


def _stack(t: NDArray[np.float64], x: NDArray[np.float64], y: NDArray[np.float64]) -> Curve:
    return t, np.column_stack([x, y])


def parabola(n: int = 801, half_width: float = 1.0) -> Curve:
    """``(t, t²)`` on ``[-w, w]``: one vertex at 0, evolute cusp at ``(0, 1/2)``."""
    t = np.linspace(-half_width, half_width, n)
    return _stack(t, t, t**2)


def ellipse(n: int = 1000, a: float = 2.0, b: float = 1.0) -> Curve:
    """``(a cos t, b sin t)``, closed: vertices at ``kπ/2``; evolute cusps at
    ``(±(a²−b²)/a, 0)`` and ``(0, ±(a²−b²)/b)``."""
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    return _stack(t, a * np.cos(t), b * np.sin(t))


def circle(n: int = 1000, radius: float = 1.0) -> Curve:
    """A closed circle: constant curvature, no vertex."""
    return ellipse(n, radius, radius)


def log_spiral(n: int = 3000, growth: float = 0.15, turns: float = 3.0) -> Curve:
    """``e^{bt}(cos t, sin t)``: its radius of curvature grows monotonically, no vertex."""
    t = np.linspace(0.0, 2 * np.pi * turns, n)
    r = np.exp(growth * t)
    return _stack(t, r * np.cos(t), r * np.sin(t))


def semicubical(n: int = 801, half_width: float = 1.0) -> Curve:
    """``(t², t³)``: a cusp at 0."""
    t = np.linspace(-half_width, half_width, n)
    return _stack(t, t**2, t**3)


def cycloid(n: int = 3000, start: float = 0.5, stop: float = 6 * np.pi - 0.5) -> Curve:
    """``(t − sin t, 1 − cos t)``: cusps at ``2πk``, vertices at odd multiples of π."""
    t = np.linspace(start, stop, n)
    return _stack(t, t - np.sin(t), 1 - np.cos(t))


def hyperbola(n: int = 1000, a: float = 0.05, half_width: float = 1.0) -> Curve:
    """``(t, √(t² + a²))``: one vertex at 0 with radius ``a``, centre ``(0, 2a)``."""
    t = np.linspace(-half_width, half_width, n)
    return _stack(t, t, np.sqrt(t**2 + a**2))


def brownian(n: int, dim: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """A random walk of ``n`` positions in R^dim with standard normal steps."""
    steps = rng.standard_normal((n - 1, dim))
    return np.vstack([np.zeros(dim), np.cumsum(steps, axis=0)])


def _embed(
    curve: NDArray[np.float64], dim: int, noise: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """``offset + curve @ frame + noise``; returns (proxies, frame, offset)."""
    frame = np.linalg.qr(rng.standard_normal((dim, curve.shape[1])))[0].T
    offset = rng.standard_normal(dim)
    proxies = offset + curve @ frame + noise * rng.standard_normal((len(curve), dim))
    return proxies, frame, offset


@dataclass(frozen=True)
class Planted:
    """A trajectory with one planted form: checkpoint ``index``, function-space ``point``."""

    proxies: NDArray[np.float64]
    steps: NDArray[np.float64]
    index: int
    point: NDArray[np.float64]
    curve: NDArray[np.float64]


def cusp_form(n: int = 601, dim: int = 50, noise: float = 1e-3, seed: int = 0) -> Planted:
    """``(u², 1.5u³, 0.6 cos πu)``, ``u ∈ [-1, 1]``, embedded in R^dim with Gaussian noise.

    Coordinates are even, odd and even about ``u = 0`` and all critical there, so every PC
    plane has a cusp at the middle checkpoint and the form is the curve's point there.
    """
    rng = np.random.default_rng(seed)
    u = np.linspace(-1.0, 1.0, n)
    curve = np.column_stack([u**2, 1.5 * u**3, 0.6 * np.cos(np.pi * u)])
    proxies, frame, offset = _embed(curve, dim, noise, rng)
    mid = n // 2
    return Planted(proxies, np.arange(n) * 10.0, mid, offset + curve[mid] @ frame, curve)


@dataclass(frozen=True)
class ToyForm:
    """:func:`toy_form`'s trajectory (fields as :class:`Planted`); ``heuristic`` is h (the
    outputs on S it heads for), ``outputs_s`` the ``(n, 2)`` outputs on S, ``u`` the fast
    parameter."""

    proxies: NDArray[np.float64]
    steps: NDArray[np.float64]
    index: int
    point: NDArray[np.float64]
    curve: NDArray[np.float64]
    heuristic: NDArray[np.float64]
    outputs_s: NDArray[np.float64]
    u: NDArray[np.float64]


def toy_form(
    n: int = 600,
    duration: float = 40.0,
    fast: float = 0.05,
    drive: float = 0.05,
    slow: float = 0.01,
    dim: int = 60,
    noise: float = 1e-4,
    seed: int = 0,
) -> ToyForm:
    """The toy model of a form (paper App. B.4), as a gradient flow.

    The outputs on a subset S of inputs are ``f_S(u) = h + (1 + u⁴)(cos u, sin u)``: the
    accessible direction ``u`` moves them along a curve that touches the circle of radius 1
    around the heuristic ``h = 0`` with contact of order 4 at ``u = 0``, so the heuristic loss
    ``ℓ_h = |f_S − h|²`` has a degenerate (quartic) minimum there. Gradient flow of
    ``fast·ℓ_h(u) − drive·u + slow·|v − v*|²``: u runs quickly towards 0, crosses it slowly
    (the drive, the rest of the loss on S) and stalls just past it (the heuristic exhausted),
    while the slow mode ``v ∈ R²`` (the other outputs) keeps relaxing towards ``v*``. The form
    is ``(h, v(t*))`` at the time ``t*`` when u = 0. Outputs are embedded in R^dim with noise.
    """
    v_star = np.array([1.0, -0.6])

    def flow(_t: float, y: NDArray[np.float64]) -> NDArray[np.float64]:
        u, v = y[0], y[1:]
        grad_u = fast * 2.0 * (1.0 + u**4) * 4.0 * u**3 - drive
        return np.concatenate([[-grad_u], -2.0 * slow * (v - v_star)])

    steps = np.linspace(0.0, duration, n)
    sol = solve_ivp(
        flow, (0.0, duration), [-1.5, 0.0, 0.0], t_eval=steps, method="LSODA", rtol=1e-10, atol=1e-12
    )
    u, v = sol.y[0], sol.y[1:].T
    f_s = (1.0 + u**4)[:, None] * np.column_stack([np.cos(u), np.sin(u)])
    curve = np.column_stack([f_s, v])
    proxies, frame, offset = _embed(curve, dim, noise, np.random.default_rng(seed))
    index = int(np.argmin(np.abs(u)))
    point = offset + np.concatenate([[0.0, 0.0], v[index]]) @ frame
    return ToyForm(proxies, steps, index, point, curve, np.zeros(2), f_s, u)
