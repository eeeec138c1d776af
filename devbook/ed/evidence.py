"""Evidence for a form beyond the lift of its centres (paper App. B.3, B.5, B.6, B.8).

- :func:`flatness`: the test statistic of a **vertex form**. Definition B.5 calls ``(t*, p)`` a
  form when the squared distance ``V_p(t) = |c(t) − p|²`` of the developmental trajectory to
  ``p`` has contact of order 4 with its level set at ``t*``: a flat, degenerate minimum, the
  trajectory moving for a while on a sphere around ``p``; B.8 reads this flat bottom as
  evidence for a form that needs no PC plot. Over a window ``t* ± w`` (``w`` = 4σ + 1 in
  :func:`devbook.ed.forms.find_forms`, beyond the reach of the smoothing kernel) the point
  ``p`` whose potential varies least is found by linear least squares (:func:`sphere_fit`);
  the flatness is the standard deviation of ``V_p`` over the window divided by that of
  ``|c(t) − c(t*)|²``, the potential of the trajectory's own point. It lies in [0, 1]: 0 when
  the trajectory stays on a sphere, 1 for a straight pass (no point makes a line's potential
  flatter than its own). The form's point is that centre, with the directions in which the
  window's arc hardly spreads (and so does not determine it) left at the arc's mean. A vertex
  passed at speed never lifts exactly across three planes (see :mod:`devbook.ed.forms`), but
  its potential is flat; Brownian motion's apparent vertices (B.7) are flat only as far as the
  smoothing makes them, and the surrogates are too.
- :func:`influence_range`: the flat bottom of a form potential (B.8);
- :func:`b6_check`: the B.6 verdict of each PC.

A **stationary form** (a cusp in every plane, the limiting case of Lemma B.3) is the
trajectory's own point: its potential, the squared distance the trajectory moves, has flatness
1 by definition, and a folded stretch also fits a large sphere about as well as any smooth
arc, so flatness says little about it. Its evidence is that the planes' sharp points coincide
and lift exactly (the lift residual).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from devbook.ed.smoothing import Smoothed

if TYPE_CHECKING:
    from devbook.ed.forms import Form

#: Relative singular-value cut-off of :func:`sphere_fit` (directions in which the window's arc
#: spreads less than this leave the centre at the arc's mean).
SPHERE_RCOND = 1e-2


def form_window(sigma: NDArray[np.float64], index: float, time_tol: float = 2.0) -> tuple[int, int]:
    """First and last checkpoint of ``index ± (time_tol σ(index) + 1)``, clipped to the curve."""
    w = time_tol * float(np.interp(index, np.arange(len(sigma)), sigma)) + 1.0
    return max(int(np.floor(index - w)), 0), min(int(np.ceil(index + w)), len(sigma) - 1)


def _sphere_centres(points: ArrayLike, rconds: tuple[float, ...]) -> list[NDArray[np.float64]]:
    """:func:`sphere_fit` at several cut-offs from one SVD of the design matrix."""
    x = np.asarray(points, dtype=np.float64)
    mid = x.mean(0)
    y = x - mid
    scale = max(float(np.sqrt(np.mean(np.sum(y**2, axis=1)))), 1e-300)
    y = y / scale
    u, sv, vt = np.linalg.svd(np.column_stack([2.0 * y, np.ones(len(y))]), full_matrices=False)
    proj = u.T @ np.sum(y**2, axis=1)
    out = []
    for rcond in rconds:
        keep = sv > rcond * sv[0]
        sol = vt[keep].T @ (proj[keep] / sv[keep])
        out.append(mid + scale * sol[:-1])
    return out


def sphere_fit(points: ArrayLike, *, rcond: float = SPHERE_RCOND) -> NDArray[np.float64]:
    """The point ``p`` whose squared distances to ``points`` ``(n, k)`` vary least.

    Minimises ``Σ_t (|x_t − p|² − m)²`` over ``p`` and ``m``, which is linear in ``(p, m −
    |p|²)``: the algebraic sphere fit, solved by least squares on the centred and scaled
    points. An arc that hardly spreads in some direction does not determine the centre along
    it (a plane arc lies on every sphere through its circle): singular values below ``rcond``
    × the largest are dropped, which leaves the centre there at the points' mean instead of
    wherever the noise puts it (points that spread in every direction lose nothing).
    """
    return _sphere_centres(points, (rcond,))[0]


def flatness(sm: Smoothed, index: float, *, time_tol: float = 4.0) -> tuple[float, NDArray[np.float64]]:
    """Flatness of the best form potential of the smoothed trajectory around ``index``.

    Returns ``(flatness, centre)`` over :func:`form_window` (``time_tol`` σ + 1 either side):
    ``flatness`` = min over ``p`` of the std of ``|c(t) − p|²`` / the std of ``|c(t) −
    c(index)|²``, in [0, 1] (1 where the trajectory does not move at all); ``centre`` ``(k,)``
    is :func:`sphere_fit` of the window, whose directions the arc does not determine are left
    at its mean. The minimum is well determined even where its minimiser is not, so the
    statistic uses the exact minimum and the point the regularised one. See the module
    docstring.
    """
    lo, hi = form_window(sm.sigma, index, time_tol)
    c = sm.position[lo : hi + 1]
    i = min(int(index), len(sm.sigma) - 2)
    here = sm.position[i] + (index - i) * (sm.position[i + 1] - sm.position[i])
    moved = float(np.std(np.sum((c - here) ** 2, axis=1)))
    centre, exact = _sphere_centres(c, (SPHERE_RCOND, 1e-12))
    if moved <= 1e-300:
        return 1.0, centre
    best = float(np.std(np.sum((c - exact) ** 2, axis=1)))
    return min(best / moved, 1.0), centre


def influence_range(
    potential: ArrayLike, index: float, *, tol: float = 0.05, window: float = 0.0
) -> tuple[int, int]:
    """The flat bottom of a form potential around checkpoint ``index``: the contiguous run of
    checkpoints around the potential's minimum within ``index ± window`` where it stays below
    ``min + tol × (median − min)`` (the median, not the maximum, so that a large transient far
    from the form does not widen the range). Returns first and last checkpoint indices."""
    v = np.asarray(potential, dtype=np.float64)
    lo = max(int(np.floor(index - window)), 0)
    hi = min(int(np.ceil(index + window)), len(v) - 1)
    low = lo + int(np.argmin(v[lo : hi + 1]))
    below = v <= v[low] + tol * (np.median(v) - v[low])
    start, end = low, low
    while start > 0 and below[start - 1]:
        start -= 1
    while end < len(v) - 1 and below[end + 1]:
        end += 1
    return start, end


def _zero_crossings(y: NDArray[np.float64]) -> NDArray[np.float64]:
    a, b = y[:-1], y[1:]
    i = np.flatnonzero((a > 0) & (b <= 0) | (a < 0) & (b >= 0))
    return i + a[i] / (a[i] - b[i])


def b6_check(
    sm: Smoothed, scores: NDArray[np.float64], form: Form, *, time_tol: float = 2.0, tol: float = 0.1
) -> pd.DataFrame:
    """The B.6 check of every PC at the form's time, one row per PC.

    ``gap`` = (score − form coordinate) / the score's standard deviation; ``crit`` = distance
    (checkpoints) to the nearest critical point of the smoothed score (``inf`` if none). The
    verdict is ``equal`` (|gap| ≤ ``tol``), ``critical`` (``crit`` ≤ ``time_tol`` σ + 1),
    ``both`` or ``neither``.
    """
    grid = np.arange(len(sm.sigma))
    window = time_tol * float(np.interp(form.index, grid, sm.sigma)) + 1.0
    rows = []
    for i in range(scores.shape[1]):
        value = float(np.interp(form.index, grid, sm.position[:, i]))
        gap = (value - form.point_pc[i]) / max(float(scores[:, i].std()), 1e-300)
        zeros = _zero_crossings(sm.d1[:, i])
        crit = float(np.abs(zeros - form.index).min()) if zeros.size else np.inf
        equal, critical = abs(gap) <= tol, crit <= window
        verdict = (
            "both" if equal and critical else "equal" if equal else ("critical" if critical else "neither")
        )
        rows.append(
            {
                "pc": i + 1,
                "score": value,
                "coordinate": float(form.point_pc[i]),
                "gap": gap,
                "crit": crit,
                "verdict": verdict,
            }
        )
    return pd.DataFrame(rows)
