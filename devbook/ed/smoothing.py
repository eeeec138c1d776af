"""Gaussian smoothing of a trajectory, with a σ that may vary along it (paper App. B.8).

The developmental trajectory is the sequence of PC scores smoothed coordinate by coordinate with
a Gaussian kernel. The paper grows σ along training (from 1 to 50 checkpoints for the language
model); :func:`sigma_schedule` builds such a schedule. :func:`smooth` returns the smoothed curve
and its first three derivatives (with respect to the sample index), each from a Gaussian-
derivative filter (``scipy.ndimage.gaussian_filter1d`` with ``order`` 0–3), never from finite
differences of the smoothed curve.

A varying σ is handled by filtering at a geometric grid of σ levels (ratio ≤ 1.2) and
interpolating each sample between its two bracketing levels in log σ; each level is filtered
only over the samples that use it. Open curves are extended past their ends by point
reflection (``np.pad(..., reflect_type="odd")``), which keeps straight lines straight; closed
curves wrap around.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.ndimage import gaussian_filter1d

TRUNCATE = 8.0  # kernel radius in σ: at 4σ the derivative kernels leak ~1e-4 of a constant
LEVEL_RATIO = 1.2  # largest ratio between adjacent σ levels of a varying schedule


@dataclass(frozen=True)
class Smoothed:
    """A smoothed curve and its derivatives, all ``(T, d)``, with respect to the sample index.

    ``sigma`` ``(T,)`` is the kernel width used at each sample, in samples.
    """

    position: NDArray[np.float64]
    d1: NDArray[np.float64]
    d2: NDArray[np.float64]
    d3: NDArray[np.float64]
    sigma: NDArray[np.float64]

    def columns(self, cols: tuple[int, ...] | list[int]) -> Smoothed:
        """The same smoothing restricted to coordinates ``cols`` (e.g. one PC plane)."""
        cols = list(cols)
        return Smoothed(
            self.position[:, cols], self.d1[:, cols], self.d2[:, cols], self.d3[:, cols], self.sigma
        )


def min_samples(sigma: ArrayLike) -> int:
    """Fewest samples a curve smoothed with ``sigma`` must have: the ±2σ core of the widest
    kernel (and at least 7, enough for a third derivative)."""
    return max(7, 2 * int(np.ceil(2.0 * float(np.max(sigma)))) + 1)


def sigma_schedule(
    n: int, start: float = 1.0, stop: float | None = None, flat: float = 0.0
) -> NDArray[np.float64]:
    """A σ per sample: ``start`` over the first fraction ``flat`` of the ``n`` samples, then
    rising linearly to ``stop`` at the last one (``stop=None``: constant ``start``).

    The paper's regression run used σ = 1 over the first fifth of 5,000 checkpoints, rising to
    60 (``sigma_schedule(5000, 1, 60, flat=0.2)``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0.0 <= flat < 1.0:
        raise ValueError(f"flat must be in [0, 1), got {flat}")
    stop = start if stop is None else stop
    if start <= 0 or stop <= 0:
        raise ValueError(f"σ must be positive, got start={start}, stop={stop}")
    ramp = np.clip((np.arange(n) / max(n - 1, 1) - flat) / (1.0 - flat), 0.0, 1.0)
    return start + (stop - start) * ramp


def check_sigma(sigma: float | ArrayLike, n: int) -> NDArray[np.float64]:
    """``sigma`` as one positive finite value per sample (a scalar is broadcast)."""
    arr = np.asarray(sigma, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(
            f"the σ schedule must be a scalar or have one value per sample ({n}), got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError("the σ schedule must be positive and finite")
    return arr


def check_curve(curve: ArrayLike, name: str = "curve") -> NDArray[np.float64]:
    """``curve`` as a finite float array of shape ``(T, d)`` (a 1-D array is one coordinate)."""
    arr = np.asarray(curve, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (samples, dimensions), got {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0, 0])
        raise ValueError(f"{name} contains NaN or infinite values (first in row {row})")
    return arr


def _levels(sigma: NDArray[np.float64]) -> NDArray[np.float64]:
    lo, hi = float(sigma.min()), float(sigma.max())
    if hi / lo < 1.0 + 1e-12:
        return np.array([lo])
    count = int(np.ceil(np.log(hi / lo) / np.log(LEVEL_RATIO))) + 1
    return np.geomspace(lo, hi, count)


def _filter_rows(
    padded: NDArray[np.float64], pad: int, rows: NDArray[np.intp], level: float
) -> NDArray[np.float64]:
    """Orders 0–3 of the Gaussian filter at ``level`` at sample indices ``rows``: (4, n, d)."""
    lo, hi = int(rows.min()), int(rows.max()) + 1
    margin = int(TRUNCATE * level + 0.5) + 1
    block = padded[pad + lo - margin : pad + hi + margin]
    out = np.stack(
        [
            gaussian_filter1d(block, level, axis=0, order=m, mode="nearest", truncate=TRUNCATE)
            for m in range(4)
        ]
    )
    return out[:, margin + rows - lo]


def smooth(curve: ArrayLike, sigma: float | ArrayLike = 1.0, *, periodic: bool = False) -> Smoothed:
    """Gaussian smoothing of ``curve`` ``(T, d)`` with σ ``sigma`` (samples; scalar or ``(T,)``).

    Returns the smoothed positions and their first, second and third derivatives with respect
    to the sample index (Gaussian-derivative filters). ``periodic`` treats the curve as closed.
    Raises ``ValueError`` on NaN/inf, on a σ schedule of the wrong length and on fewer samples
    than :func:`min_samples`.
    """
    x = check_curve(curve)
    n = x.shape[0]
    sig = check_sigma(sigma, n)
    if n < min_samples(sig):
        raise ValueError(
            f"{n} samples are fewer than the smoothing needs: σ up to "
            f"{sig.max():g} requires at least {min_samples(sig)}"
        )
    levels = _levels(sig)
    pad = int(TRUNCATE * levels[-1] + 0.5) + 2
    padded = np.pad(
        x,
        ((pad, pad), (0, 0)),
        mode="wrap" if periodic else "reflect",
        **({} if periodic else {"reflect_type": "odd"}),
    )
    out = np.zeros((4,) + x.shape)
    if len(levels) == 1:
        out[:] = _filter_rows(padded, pad, np.arange(n), levels[0])
    else:
        pos = np.interp(np.log(sig), np.log(levels), np.arange(len(levels)))
        below = np.minimum(np.floor(pos).astype(int), len(levels) - 2)
        frac = (pos - below)[None, :, None]
        for j, level in enumerate(levels):
            use_lo, use_hi = below == j, below == j - 1  # j is the lower / upper bracket
            rows = np.flatnonzero(use_lo | use_hi)
            if rows.size == 0:
                continue
            vals = _filter_rows(padded, pad, rows, level)
            weight = np.where(use_lo[rows], 1.0 - frac[0, rows, 0], frac[0, rows, 0])
            out[:, rows] += weight[None, :, None] * vals
    return Smoothed(out[0], out[1], out[2], out[3], sig)


def schedule_sigmas(n: int, schedule: Sequence[float]) -> NDArray[np.float64]:
    """σ per sample for a preset's ``schedule = (start, stop, flat)`` (:func:`sigma_schedule`)."""
    if len(schedule) != 3:
        raise ValueError(f"a σ schedule is (start, stop, flat), got {list(schedule)}")
    start, stop, flat = (float(v) for v in schedule)
    return sigma_schedule(n, start, stop, flat=flat)
