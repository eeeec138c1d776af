"""Osculating circles, evolutes, vertices and cusps of a plane curve (paper §3.2.1, App. B.1).

For a plane curve ``c(t) = (x, y)`` with derivatives from :func:`devbook.ed.smoothing.smooth`:

- signed curvature ``κ = (x'y'' − y'x'') / |c'|³``, radius ``1/|κ|``, centre ``c + n/κ`` (``n``
  the unit normal): the centres form the **evolute**;
- a **vertex** is where ``dκ/ds`` changes sign (a cusp of the evolute, Bruce & Giblin Prop. 7.2).
  The sign of ``dκ/ds`` is that of ``g = N'|c'|² − 3N (c'·c'')`` with ``N = x'y'' − y'x''``,
  which needs no division, so it is found at zero speed and at inflections without NaN;
- a **cusp** of the curve is where the speed drops far below its median and the tangent turns
  by about π (App. B.3: "sharp points where the tangent changes discontinuously").

Candidate vertices are kept only if the radius extremum is prominent (in log radius, scipy's
``find_peaks``), persists when σ is scaled (0.75× and 1.33× by default), lies away from the ends
and from cusps, and is resolved by the checkpoint spacing: a step that turns the tangent by more
than ``max_turn_deg`` or a radius under ``min_radius_steps`` step lengths marks a sharp point of
the sampling, not a vertex (App. B.7). Rejected candidates are returned with their reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy.signal import find_peaks

from devbook.ed.smoothing import Smoothed, smooth

FAR = 1e6  # centres of (near-)inflections are put this many curve extents away
LOG_CLIP = 20.0  # log radius is clipped to ± this around log(extent)
MIN_SIGMA = 1.0  # persistence scales never smooth below this (see devbook.ed.smoothing)


@dataclass(frozen=True)
class Circles:
    """Osculating circles of a plane curve at every sample (all arrays have T rows).

    ``radius`` is ``inf`` at an inflection (its ``centre`` is then ``FAR`` extents along the
    normal) and ``0`` at zero speed (centre = the point itself, App. B.3). ``g`` has the sign of
    ``dκ/ds``; ``turn_step`` is the tangent's turn from each sample to the next (radians).
    """

    position: NDArray[np.float64]
    velocity: NDArray[np.float64]
    speed: NDArray[np.float64]
    curvature: NDArray[np.float64]
    radius: NDArray[np.float64]
    centre: NDArray[np.float64]
    g: NDArray[np.float64]
    turn_step: NDArray[np.float64]
    sigma: NDArray[np.float64]


@dataclass(frozen=True)
class Features:
    """Vertices or cusps of a plane curve: ``position`` are fractional sample indices.

    ``centre`` ``(n, 2)`` and ``radius`` belong to the osculating circle there (a cusp's centre
    is the point itself, radius 0); ``strength`` is the prominence in log radius (vertices) or
    the tangent's turn in radians (cusps). ``rejected`` lists dropped candidates and why.
    """

    kind: str
    position: NDArray[np.float64]
    centre: NDArray[np.float64]
    radius: NDArray[np.float64]
    strength: NDArray[np.float64]
    rejected: pd.DataFrame = field(repr=False)

    def __len__(self) -> int:
        return int(self.position.size)


def _plane(curve: ArrayLike | Smoothed, sigma: float | ArrayLike, periodic: bool) -> Smoothed:
    sm = curve if isinstance(curve, Smoothed) else smooth(curve, sigma, periodic=periodic)
    if sm.position.shape[1] != 2:
        raise ValueError(f"a plane curve has 2 coordinates, got {sm.position.shape[1]}")
    return sm


def circles(sm: Smoothed) -> Circles:
    """Osculating circles from a smoothed plane curve (see :func:`osculating_circles`)."""
    p, d1, d2, d3 = sm.position, sm.d1, sm.d2, sm.d3
    v2 = np.einsum("ij,ij->i", d1, d1)
    speed = np.sqrt(v2)
    scale = max(float(np.median(speed)), float(speed.max()) * 1e-6, 1e-300)
    moving = speed > 1e-9 * scale
    cross = d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0]
    kappa = np.divide(cross, speed**3, out=np.zeros_like(cross), where=moving)
    extent = max(float(np.ptp(p, axis=0).max()), 1e-300)
    flat = moving & (np.abs(kappa) * extent * FAR <= 1.0)
    radius = np.divide(1.0, np.abs(kappa), out=np.full_like(kappa, np.inf), where=~flat & moving)
    radius[~moving] = 0.0
    normal = np.divide(
        np.stack([-d1[:, 1], d1[:, 0]], 1), speed[:, None], out=np.zeros_like(d1), where=moving[:, None]
    )
    signed = np.where(
        flat,
        np.where(cross >= 0, 1.0, -1.0) * FAR * extent,
        np.sign(kappa) * np.where(np.isfinite(radius), radius, 0.0),
    )
    centre = p + normal * signed[:, None]
    ncross = d1[:, 0] * d3[:, 1] - d1[:, 1] * d3[:, 0]
    g = ncross * v2 - 3.0 * cross * np.einsum("ij,ij->i", d1, d2)
    t0, t1 = d1[:-1], d1[1:]
    turn = np.arctan2(t0[:, 0] * t1[:, 1] - t0[:, 1] * t1[:, 0], np.einsum("ij,ij->i", t0, t1))
    return Circles(p, d1, speed, kappa, radius, centre, g, np.abs(turn), sm.sigma)


def osculating_circles(
    curve: ArrayLike | Smoothed, sigma: float | ArrayLike = 1.0, *, periodic: bool = False
) -> Circles:
    """Signed curvature, radii and centres (the evolute) of a ``(T, 2)`` plane curve.

    ``curve`` is smoothed with ``sigma`` (samples; scalar or per sample) unless it is already a
    :class:`~devbook.ed.smoothing.Smoothed`. Inflections (radius ``inf``) and zero speed
    (radius 0) give finite centres and no warnings.
    """
    return circles(_plane(curve, sigma, periodic))


def _interp(values: NDArray[np.float64], pos: NDArray[np.float64]) -> NDArray[np.float64]:
    """Linear interpolation of per-sample ``values`` (rows) at fractional indices ``pos``."""
    i = np.clip(np.floor(pos).astype(int), 0, len(values) - 2)
    w = (pos - i).reshape((-1,) + (1,) * (values.ndim - 1))
    return (1.0 - w) * values[i] + w * values[i + 1]


def _sign_changes(g: NDArray[np.float64], periodic: bool) -> NDArray[np.float64]:
    """Fractional indices where ``g`` changes sign (linear interpolation)."""
    gg = np.append(g, g[0]) if periodic else g
    a, b = gg[:-1], gg[1:]
    i = np.flatnonzero((a > 0) & (b <= 0) | (a < 0) & (b >= 0))
    return (i + a[i] / (a[i] - b[i])) % len(g)


def _prominence(c: Circles, pos: NDArray[np.float64], periodic: bool) -> NDArray[np.float64]:
    """Prominence in log radius of the radius extremum nearest each candidate (2 samples)."""
    n = len(c.radius)
    extent = max(float(np.ptp(c.position, axis=0).max()), 1e-300)
    r = np.where(c.radius > 0, c.radius, extent * np.exp(-LOG_CLIP))
    s = np.clip(np.log(r / extent), -LOG_CLIP, LOG_CLIP)
    prom = np.zeros(pos.size)
    for sign in (1.0, -1.0):
        # a closed curve is tiled three times so that extrema at the seam are found
        peaks, props = find_peaks(sign * (np.tile(s, 3) if periodic else s), prominence=0.0)
        if periodic:
            peaks = peaks - n
        if peaks.size == 0:
            continue
        near = np.abs(pos[:, None] - peaks[None, :])
        if periodic:
            near = np.minimum(near, np.abs(pos[:, None] + n - peaks[None, :]))
        j = near.argmin(1)
        hit = near[np.arange(pos.size), j] <= 2.0
        prom = np.where(hit, np.maximum(prom, props["prominences"][j]), prom)
    return prom


def _candidates(
    c: Circles, periodic: bool, min_prominence: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    pos = _sign_changes(c.g, periodic)
    prom = _prominence(c, pos, periodic)
    keep = prom >= min_prominence
    return pos[keep], prom[keep]


def _table(pos: ArrayLike, reasons: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"position": np.asarray(pos, float), "reason": reasons})


def vertices(
    curve: ArrayLike,
    sigma: float | ArrayLike = 1.0,
    *,
    periodic: bool = False,
    min_prominence: float = 0.1,
    scales: tuple[float, ...] = (0.75, 1.33),
    max_turn_deg: float = 30.0,
    min_radius_steps: float = 3.0,
    cusp_speed: float = 0.1,
    edge: float = 4.0,
) -> Features:
    """Vertices of a ``(T, 2)`` plane curve: where ``dκ/ds`` changes sign, filtered.

    Parameters
    ----------
    curve, sigma, periodic
        The raw plane curve, its smoothing σ (samples; scalar or per sample), closed or not.
    min_prominence
        Least prominence of the radius extremum, in log radius (0.1 ≈ a 10 % change).
    scales
        σ is multiplied by each (never below ``MIN_SIGMA``); a vertex must reappear within
        ``σ + 1`` samples at every one.
    max_turn_deg, min_radius_steps
        A vertex where one step turns the tangent by more than ``max_turn_deg`` or whose radius
        is under ``min_radius_steps`` step lengths is a sharp point of the sampling (rejected).
    cusp_speed, edge
        Candidates where the speed is under ``cusp_speed`` × median (cusps) or within
        ``edge`` σ of an end of an open curve are rejected.

    Returns
    -------
    Features
        ``kind="vertex"``; positions are fractional sample indices.
    """
    sm = _plane(curve, sigma, periodic)
    others = [smooth(curve, np.maximum(sm.sigma * f, MIN_SIGMA), periodic=periodic) for f in scales]
    return vertices_from(
        sm,
        others,
        scales,
        periodic=periodic,
        min_prominence=min_prominence,
        max_turn_deg=max_turn_deg,
        min_radius_steps=min_radius_steps,
        cusp_speed=cusp_speed,
        edge=edge,
    )


def vertices_from(
    sm: Smoothed,
    others: list[Smoothed],
    scales: tuple[float, ...],
    *,
    periodic: bool = False,
    min_prominence: float = 0.1,
    max_turn_deg: float = 30.0,
    min_radius_steps: float = 3.0,
    cusp_speed: float = 0.1,
    edge: float = 4.0,
) -> Features:
    """:func:`vertices` from a smoothed plane curve and its smoothings at ``scales`` × σ."""
    c = circles(sm)
    n = len(c.speed)
    pos, prom = _candidates(c, periodic, min_prominence)
    reasons = np.full(pos.size, "", dtype=object)
    tol = _interp(c.sigma, pos) + 1.0
    for f, other_sm in zip(scales, others):
        other, _ = _candidates(circles(other_sm), periodic, min_prominence)
        d = np.abs(pos[:, None] - other[None, :]) if other.size else np.full((pos.size, 1), np.inf)
        if periodic:
            d = np.minimum(d, n - d)
        reasons[(d.min(1) > tol) & (reasons == "")] = f"not persistent at {f:g}σ"
    i = np.clip(np.rint(pos).astype(int), 0, n - 1)
    radius = _interp(c.radius, pos)
    turn = np.degrees(np.maximum(c.turn_step[np.clip(i - 1, 0, n - 2)], c.turn_step[np.clip(i, 0, n - 2)]))
    slow = _interp(c.speed, pos) < cusp_speed * np.median(c.speed)
    near_end = (pos < edge * c.sigma[0]) | (pos > n - 1 - edge * c.sigma[-1])
    checks = [
        (slow, "cusp"),
        (near_end & (not periodic), "edge"),
        (turn > max_turn_deg, f"spacing: a step turns the tangent by > {max_turn_deg:g}°"),
        (radius < min_radius_steps * c.speed[i], f"spacing: radius < {min_radius_steps:g} steps"),
    ]
    for bad, why in checks:
        reasons[bad & (reasons == "")] = why
    ok = reasons == ""
    return Features(
        "vertex",
        pos[ok],
        _interp(c.centre, pos[ok]),
        radius[ok],
        prom[ok],
        _table(pos[~ok], list(reasons[~ok])),
    )


def cusps(
    curve: ArrayLike,
    sigma: float | ArrayLike = 1.0,
    *,
    periodic: bool = False,
    max_speed: float = 0.1,
    min_turn_deg: float = 150.0,
    edge: float = 4.0,
) -> Features:
    """Cusps of a ``(T, 2)`` plane curve: speed minima under ``max_speed`` × the median speed
    where the tangent turns by at least ``min_turn_deg`` (≈ π) across ``±(2σ + 1)`` samples.

    Positions are fractional sample indices (parabolic refinement of the squared speed); the
    centre is the point itself (App. B.3). Candidates within ``edge`` σ of an open end are
    rejected.
    """
    sm = _plane(curve, sigma, periodic)
    c = circles(sm)
    n = len(c.speed)
    med = float(np.median(c.speed))
    idx, _ = find_peaks(-c.speed, height=-max_speed * med, plateau_size=1)
    keep, pos, turn, reasons, dropped = [], [], [], [], []
    for i in idx:
        w = int(np.ceil(2.0 * c.sigma[i])) + 1
        a, b = (i - w) % n if periodic else max(i - w, 0), (i + w) % n if periodic else min(i + w, n - 1)
        t0, t1 = c.velocity[a], c.velocity[b]
        ang = float(np.degrees(np.arctan2(abs(t0[0] * t1[1] - t0[1] * t1[0]), t0 @ t1)))
        v2 = c.speed[[(i - 1) % n, i, (i + 1) % n]] ** 2
        den = v2[0] - 2 * v2[1] + v2[2]
        p = i + (0.5 * (v2[0] - v2[2]) / den if den > 0 and 0 < i < n - 1 or periodic and den > 0 else 0.0)
        if not periodic and (p < edge * c.sigma[0] or p > n - 1 - edge * c.sigma[-1]):
            dropped.append(p), reasons.append("edge")
        elif ang < min_turn_deg:
            dropped.append(p), reasons.append(f"tangent turns by {ang:.0f}° < {min_turn_deg:g}°")
        else:
            keep.append(i), pos.append(p), turn.append(np.radians(ang))
    pos_arr = np.asarray(pos, float)
    centre = _interp(c.position, pos_arr) if pos else np.zeros((0, 2))
    return Features(
        "cusp", pos_arr, centre, np.zeros(len(pos)), np.asarray(turn, float), _table(dropped, reasons)
    )
