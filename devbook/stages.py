"""Automatic stage discovery from an LLC-over-time curve (paper §3.1, App. A.5).

Recipe: fit a Gaussian process (Matern/RBF kernel plus a white-noise term, i.e. smoothing) to the
standardised LLC estimates as a function of ``log t``; differentiate the GP mean numerically on a
fine grid; a *milestone* is a place where the slope crosses zero (type-A/type-B boundary) or,
between two stages of the same type, where ``|slope|`` falls below a tolerance **and** is a local
minimum of ``|slope|``. Stages are the intervals between milestones, snapped to checkpoints.

Candidate stages over which the smoothed LLC barely moves (noise wiggles, flat starts and ends)
are merged away, so they never become stages of their own; a larger tolerance only adds
milestones (the near-plateau sub-stages of the paper's Table 5).

Used by the regression and language stage chapters.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

KERNELS = ("matern", "rbf")
TIME_SCALES = ("log", "linear")


@dataclass(frozen=True)
class StageFit:
    """The smoothed LLC curve behind a stage table (for plots).

    ``grid_steps``/``mean``/``std``/``slope`` are arrays of shape ``(grid_size,)``: the GP mean
    and standard deviation of the LLC (in LLC units) and its derivative with respect to the time
    axis (``ln(t + time_offset)`` or ``t``), at training steps ``grid_steps``. ``milestones``
    holds the milestone steps (snapped to checkpoints); ``tolerance`` is the absolute slope
    tolerance that was used; ``kernel`` the fitted kernel, printed.
    """

    grid_steps: NDArray[np.float64]
    mean: NDArray[np.float64]
    std: NDArray[np.float64]
    slope: NDArray[np.float64]
    milestones: NDArray[np.float64]
    tolerance: float
    kernel: str


def _as_1d(name: str, values: ArrayLike, n: int | None = None) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} values but steps has {n}; they must match")
    if not np.all(np.isfinite(arr)):
        raise ValueError(
            f"{name} contains NaN or infinite values (first at index "
            f"{int(np.flatnonzero(~np.isfinite(arr))[0])})"
        )
    return arr


def _time_axis(steps: NDArray[np.float64], time: str, time_offset: float) -> NDArray[np.float64]:
    if time == "log":
        return np.log(steps + time_offset)
    return steps.copy()


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """Maximal runs ``[i, j)`` where ``mask`` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _milestone_indices(
    slope: NDArray[np.float64],
    mean: NDArray[np.float64],
    std: NDArray[np.float64],
    tolerance: float,
    min_change: float,
    z: float,
) -> list[int]:
    """Grid indices of milestones following A.5.

    Candidates are the zero crossings of the slope and the local minima of ``|slope|`` below
    ``tolerance`` (so a larger tolerance only adds candidates). A candidate stage over which the
    smoothed LLC moves by less than ``min_change``, or by less than ``z`` GP predictive standard
    deviations at its ends, is noise: the least significant such stage is merged away (at either
    end of the curve it joins its neighbour, so flat starts and ends make no stages; inside, its
    two milestones become one, at its minimum of ``|slope|``) until every stage is significant.
    """
    n = slope.shape[0]
    a = np.abs(slope)
    cand = set()
    for k in np.flatnonzero(np.sign(slope[1:]) != np.sign(slope[:-1])):
        cand.add(int(k) if a[k] <= a[k + 1] else int(k) + 1)
    minima = (a[1:-1] <= a[:-2]) & (a[1:-1] <= a[2:]) & (a[1:-1] < tolerance)
    cand.update(int(k) + 1 for k in np.flatnonzero(minima))
    bounds = [0] + sorted(c for c in cand if 0 < c < n - 1) + [n - 1]

    def change(k: int) -> float:
        return abs(mean[bounds[k + 1]] - mean[bounds[k]])

    def significant(k: int) -> bool:
        i, j = bounds[k], bounds[k + 1]
        return change(k) >= min_change and change(k) >= z * np.hypot(std[i], std[j])

    while len(bounds) > 2:
        weak = [k for k in range(len(bounds) - 1) if not significant(k)]
        if not weak:
            break
        k = min(weak, key=change)
        if k == 0:
            del bounds[1]
        elif k == len(bounds) - 2:
            del bounds[-2]
        else:
            i, j = bounds[k], bounds[k + 1]
            bounds[k : k + 2] = [i + int(np.argmin(a[i : j + 1]))]
            bounds = sorted(set(bounds))
    return bounds[1:-1]


def fit_gp(
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    *,
    kernel: str = "matern",
    length_scale_bounds: tuple[float, float] = (0.03, 2.0),
    noise_bounds: tuple[float, float] = (1e-6, 1.0),
    n_restarts: int = 3,
    seed: int = 0,
) -> GaussianProcessRegressor:
    """A GP fitted to standardised ``y`` against ``x`` rescaled to ``[0, 1]``.

    ``length_scale_bounds`` are fractions of the time range; ``noise_bounds`` bound the white
    noise variance in units of ``var(y)``. Returns the fitted regressor (inputs: rescaled x).
    """
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
    lo, hi = length_scale_bounds
    if not 0 < lo < hi:
        raise ValueError(f"length_scale_bounds must satisfy 0 < low < high, got {length_scale_bounds}")
    base = (
        Matern(length_scale=np.sqrt(lo * hi), length_scale_bounds=length_scale_bounds, nu=2.5)
        if kernel == "matern"
        else RBF(length_scale=np.sqrt(lo * hi), length_scale_bounds=length_scale_bounds)
    )
    k = ConstantKernel(1.0, (1e-2, 1e2)) * base + WhiteKernel(
        noise_level=1e-2, noise_level_bounds=noise_bounds
    )
    gp = GaussianProcessRegressor(
        kernel=k, normalize_y=False, n_restarts_optimizer=n_restarts, random_state=seed
    )
    with warnings.catch_warnings():
        # clean curves drive the noise level to its lower bound: expected, not a problem
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x[:, None], y)
    return gp


@dataclass(frozen=True)
class Stages:
    """What :func:`find_stages` returns: the stage ``table`` and the smoothed ``fit`` behind it.

    ``table`` has one row per stage: ``start``, ``end`` (checkpoint steps), ``type`` (``"A"``:
    the LLC rises over the stage, ``"B"``: it falls), ``dloss`` and ``dllc``.
    """

    table: pd.DataFrame
    fit: StageFit


def _check_inputs(
    steps: ArrayLike, llc: ArrayLike, losses: ArrayLike | None, time: str, time_offset: float
) -> tuple[NDArray, NDArray, NDArray | None]:
    t = _as_1d("steps", steps)
    n = t.shape[0]
    if n < 5:
        raise ValueError(f"need at least 5 checkpoints to find stages, got {n}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("steps must be strictly increasing (sort them and drop duplicates)")
    y = _as_1d("llc", llc, n)
    loss = None if losses is None else _as_1d("losses", losses, n)
    if time not in TIME_SCALES:
        raise ValueError(f"unknown time scale {time!r}; valid: {', '.join(TIME_SCALES)}")
    if time == "log" and (time_offset <= 0 or t[0] + time_offset <= 0):
        raise ValueError(
            f"log time needs steps + time_offset > 0 (time_offset={time_offset}, first step {t[0]})"
        )
    return t, y, loss


def _check_tolerances(
    n: int, tolerance: float | None, rel_tolerance: float, grid_size: int, min_change: float | None
) -> None:
    if tolerance is not None and tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if not 0 <= rel_tolerance < 1:
        raise ValueError(f"rel_tolerance must be in [0, 1), got {rel_tolerance}")
    if grid_size < 10 * n and grid_size < 200:
        raise ValueError(f"grid_size={grid_size} is too coarse; use at least 200")
    if min_change is not None and min_change < 0:
        raise ValueError(f"min_change must be >= 0, got {min_change}")


def _smooth(
    x: NDArray, y: NDArray, grid_size: int, **gp_args: object
) -> tuple[NDArray, NDArray, NDArray, str]:
    """GP mean and std of ``y`` on a ``grid_size`` grid over ``x`` (LLC units), and the kernel."""
    x0, span = x[0], x[-1] - x[0]
    y_mean, y_scale = y.mean(), y.std()
    y_scale = y_scale if y_scale > 0 else 1.0
    gp = fit_gp((x - x0) / span, (y - y_mean) / y_scale, **gp_args)
    ug = np.linspace(0.0, 1.0, grid_size)
    mean_s, std_s = gp.predict(ug[:, None], return_std=True)
    return x0 + ug * span, mean_s * y_scale + y_mean, std_s * y_scale, str(gp.kernel_)


def _stage_rows(
    t: NDArray, x: NDArray, xg: NDArray, mean: NDArray, bounds: list[int], loss: NDArray | None
) -> pd.DataFrame:
    mean_at = np.interp(x, xg, mean)
    rows = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        dllc = float(mean_at[b] - mean_at[a])
        rows.append(
            {
                "start": t[a],
                "end": t[b],
                "type": "A" if dllc >= 0 else "B",
                "dloss": float(loss[b] - loss[a]) if loss is not None else float("nan"),
                "dllc": dllc,
            }
        )
    table = pd.DataFrame(rows, columns=["start", "end", "type", "dloss", "dllc"])
    if np.all(t == np.round(t)):  # integer checkpoints stay integers (usable as labels)
        table[["start", "end"]] = table[["start", "end"]].astype(np.int64)
    return table


def find_stages(
    steps: ArrayLike,
    llc: ArrayLike,
    losses: ArrayLike | None = None,
    *,
    tolerance: float | None = None,
    rel_tolerance: float = 0.05,
    min_change: float | None = None,
    z: float = 3.0,
    time: Literal["log", "linear"] = "log",
    time_offset: float = 1.0,
    kernel: str = "matern",
    length_scale_bounds: tuple[float, float] = (0.03, 2.0),
    noise_bounds: tuple[float, float] = (1e-6, 1.0),
    grid_size: int = 2000,
    seed: int = 0,
) -> Stages:
    """Stages of an LLC curve (paper App. A.5): a :class:`Stages` with the table and the fit.

    ``steps`` (shape ``(n,)``, strictly increasing, ``>= 0`` for log time) are the checkpoints;
    ``llc`` and optional ``losses`` have the same shape. ``tolerance`` is the absolute slope
    tolerance in LLC units per unit of the time axis (``d llc / d ln(t + time_offset)`` for log
    time); when ``None`` it is ``rel_tolerance`` times the largest ``|slope|``. Raising it finds
    near-plateaus (sub-stages, Table 5). ``time_offset`` keeps step 0 finite on the log axis.
    ``length_scale_bounds`` are fractions of the (log-)time range. A candidate stage over which
    the smoothed LLC moves by less than ``min_change`` (LLC units; default 5 % of the smoothed
    LLC's range) or by less than ``z`` GP predictive standard deviations (noise included) is
    merged away, so noise wiggles and flat starts and ends make no stages. Type is ``"A"`` where the
    smoothed LLC rises over the stage and ``"B"`` where it falls; ``dllc`` is the change of the
    GP mean over the stage, ``dloss`` the change of the raw ``losses`` (NaN without them).
    """
    t, y, loss = _check_inputs(steps, llc, losses, time, time_offset)
    n = t.shape[0]
    _check_tolerances(n, tolerance, rel_tolerance, grid_size, min_change)

    x = _time_axis(t, time, time_offset)
    xg, mean, std, fitted = _smooth(
        x,
        y,
        grid_size,
        kernel=kernel,
        seed=seed,
        length_scale_bounds=length_scale_bounds,
        noise_bounds=noise_bounds,
    )
    slope = np.gradient(mean, xg)
    tol = float(tolerance) if tolerance is not None else rel_tolerance * float(np.abs(slope).max())
    if min_change is None:
        min_change = 0.05 * float(np.ptp(mean))
    # milestones on the grid, snapped to the nearest checkpoint on the time axis
    found = _milestone_indices(slope, mean, std, tol, min_change, z)
    snapped = sorted({int(np.argmin(np.abs(x - xg[i]))) for i in found})
    bounds = [0] + [i for i in snapped if 0 < i < n - 1] + [n - 1]
    grid_steps = np.exp(xg) - time_offset if time == "log" else xg
    fit = StageFit(
        grid_steps=grid_steps,
        mean=mean,
        std=std,
        slope=slope,
        milestones=t[bounds[1:-1]],
        tolerance=tol,
        kernel=fitted,
    )
    return Stages(_stage_rows(t, x, xg, mean, bounds, loss), fit)


def stage_of(stages: pd.DataFrame, step: float, label: str = "stage") -> str:
    """The stage of ``stages`` (a :class:`Stages` table with a ``label`` column) holding ``step``.

    A milestone belongs to the stage it ends; ``"none"`` if ``step`` lies outside every stage.
    """
    for row in stages.itertuples():
        if row.start <= step <= row.end:
            return f"{getattr(row, label)} ({row.type})"
    return "none"


def stage_changes(stages: pd.DataFrame, values: pd.DataFrame, label: str = "stage") -> pd.DataFrame:
    """Change of every column of ``values`` (indexed by step) over each stage of ``stages``.

    One row per stage, named ``"{label} ({type}) {start}–{end}"``: ``values.loc[end] −
    values.loc[start]``.
    """
    rows = {}
    for row in stages.itertuples():
        a, b = values.loc[row.start], values.loc[row.end]
        rows[f"{getattr(row, label)} ({row.type}) {row.start:,}–{row.end:,}"] = b - a
    return pd.DataFrame(rows).T
