"""Forms of a developmental trajectory, found automatically (paper §3.2.1, App. B.3, B.6, B.8).

Pipeline of :func:`find_forms`:

1. PCA of the proxies over checkpoints (:func:`devbook.ed.pca.trajectory_pca`), first k PCs;
2. Gaussian smoothing of the scores with a σ per checkpoint (:mod:`devbook.ed.smoothing`);
3. vertices and cusps of every PC plane (:mod:`devbook.ed.geometry`);
4. features of different planes grouped in time (within ``time_tol`` σ + 1 checkpoints); a
   group with one feature in each of ``min_planes`` planes (all by default) is a candidate;
5. the centres lifted to one point of PC space by weighted least squares, each plane's misfit
   in units of its circle's radius (plus σ × the plane's median speed, the resolution, which
   is all a cusp has); the root-mean-square misfit is the **residual** (0: the centres lift
   exactly); overlapping candidates keep the lowest residual;
6. the point mapped back to function space, its form potential ``|x_t − p|²`` in the full
   space (App. B.3, B.8), the influence range = the flat bottom of the potential (within 5 % of
   its median above its minimum), the B.6
   check of each PC, and a p-value against surrogate trajectories (:mod:`devbook.ed.null`).

A note on B.6: if every plane's centre lifts exactly, then for each PC ``e_i = score_i − p_i``
the function ``e_i²`` has vanishing first three derivatives at the form's time (sum and
difference of the planes' contact conditions), so either ``e_i = 0`` or the score is critical.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from devbook.ed.geometry import MIN_SIGMA, Features, cusps, vertices_from
from devbook.ed.null import phase_surrogate, step_lengths, walk_surrogate
from devbook.ed.pca import TrajectoryPCA, check_proxies, squared_distances, trajectory_pca
from devbook.ed.smoothing import Smoothed, check_sigma, min_samples, smooth

Plane = tuple[int, int]


@dataclass(frozen=True)
class Member:
    """One plane's feature in a form: ``kind`` is ``"vertex"`` or ``"cusp"``."""

    plane: Plane
    kind: str
    position: float
    centre: NDArray[np.float64]
    radius: float
    scale: float


@dataclass(frozen=True)
class Form:
    """A form: fractional checkpoint ``index``, training ``step``, ``point_pc`` ``(k,)``, the
    lift ``residual`` and the plane features it unifies. ``point`` (function space), influence
    range (``start``/``end`` steps) and p-values are filled in by :func:`find_forms`."""

    index: float
    point_pc: NDArray[np.float64]
    residual: float
    members: tuple[Member, ...]
    step: float = np.nan
    point: NDArray[np.float64] | None = field(default=None, repr=False)
    start: float = np.nan
    end: float = np.nan
    p_walk: float = np.nan
    p_phase: float = np.nan


@dataclass(frozen=True)
class Detection:
    """The geometric part of the pipeline on one set of PC scores."""

    smoothed: Smoothed
    planes: list[Plane]
    features: dict[Plane, tuple[Features, Features]]
    forms: list[Form]

    @property
    def best_residual(self) -> float:
        return min((f.residual for f in self.forms), default=np.inf)


@dataclass(frozen=True)
class FormSearch:
    """What :func:`find_forms` found: ``table`` (one row per form) and what is needed to draw it.

    ``potentials`` is ``(n_forms, T)`` (full function space); ``null`` has one row per
    surrogate (``family``, ``best_residual``, ``n_forms``).
    """

    table: pd.DataFrame
    forms: list[Form]
    pca: TrajectoryPCA
    steps: NDArray[np.float64]
    detection: Detection
    potentials: NDArray[np.float64]
    null: pd.DataFrame

    @property
    def smoothed(self) -> Smoothed:
        return self.detection.smoothed

    @property
    def planes(self) -> list[Plane]:
        return self.detection.planes

    @property
    def features(self) -> dict[Plane, tuple[Features, Features]]:
        return self.detection.features


def check_steps(steps: ArrayLike, n: int) -> NDArray[np.float64]:
    """``steps`` as ``(n,)`` finite, strictly increasing floats."""
    arr = np.asarray(steps, dtype=np.float64)
    if arr.shape != (n,):
        raise ValueError(f"steps must have one value per checkpoint ({n}), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)) or np.any(np.diff(arr) <= 0):
        raise ValueError("steps must be finite and strictly increasing")
    return arr


def _members(sm: Smoothed, plane: Plane, feats: tuple[Features, Features]) -> list[Member]:
    speed = float(np.median(np.linalg.norm(sm.d1[:, list(plane)], axis=1)))
    out = []
    for f in feats:
        for pos, centre, radius in zip(f.position, f.centre, f.radius):
            res = float(np.interp(pos, np.arange(len(sm.sigma)), sm.sigma)) * speed
            out.append(
                Member(plane, f.kind, float(pos), centre, float(radius), float(radius) + max(res, 1e-300))
            )
    return out


def lift(
    members: tuple[Member, ...], k: int, fallback: NDArray[np.float64]
) -> tuple[NDArray[np.float64], float]:
    """Weighted least-squares point of PC space whose projections are the members' centres.

    Each plane's equations are weighted by ``1 / member.scale``; coordinates that no member
    constrains take ``fallback``. Returns ``(point, residual)``, the residual being the RMS
    misfit in units of ``scale``.
    """
    rows, rhs = [], []
    for m in members:
        for axis, value in zip(m.plane, m.centre):
            row = np.zeros(k)
            row[axis] = 1.0 / m.scale
            rows.append(row)
            rhs.append(value / m.scale)
    a, b = np.array(rows), np.array(rhs)
    covered = np.abs(a).sum(0) > 0
    point = fallback.astype(np.float64).copy()
    point[covered] = np.linalg.lstsq(a[:, covered], b - a[:, ~covered] @ point[~covered], rcond=None)[0]
    misfit = (a @ point - b).reshape(-1, 2)
    return point, float(np.sqrt(np.mean(np.sum(misfit**2, axis=1))))


def _groups(
    members: list[Member], sigma: NDArray[np.float64], time_tol: float, need: int
) -> set[frozenset[int]]:
    """Sets of member ids, at most one per plane, within the time tolerance of an anchor."""
    pos = np.array([m.position for m in members])
    planes = [m.plane for m in members]
    out = set()
    for anchor in members:
        tol = time_tol * sigma[int(round(anchor.position))] + 1.0
        chosen = {}
        for j in np.flatnonzero(np.abs(pos - anchor.position) <= tol):
            best = chosen.get(planes[j])
            if best is None or abs(pos[j] - anchor.position) < abs(pos[best] - anchor.position):
                chosen[planes[j]] = int(j)
        if len(chosen) >= need:
            out.add(frozenset(chosen.values()))
    return out


def detect(
    scores: ArrayLike,
    sigma: float | ArrayLike,
    *,
    time_tol: float = 2.0,
    min_planes: int | None = None,
    vertex_options: dict[str, Any] | None = None,
    cusp_options: dict[str, Any] | None = None,
) -> Detection:
    """Steps 2–5 of the pipeline on PC scores ``(T, k)``: smoothing, plane features, grouping
    and lifting. Used by :func:`find_forms` on the data and on every surrogate."""
    x = np.asarray(scores, dtype=np.float64)
    k = x.shape[1]
    vopts = dict(vertex_options or {})
    scales = tuple(vopts.pop("scales", (0.75, 1.33)))
    sm = smooth(x, sigma)
    others = [smooth(x, np.maximum(sm.sigma * f, MIN_SIGMA)) for f in scales]
    planes = list(combinations(range(k), 2))
    need = len(planes) if min_planes is None else min_planes
    features, members = {}, []
    for plane in planes:
        sub = sm.columns(plane)
        feats = (
            vertices_from(sub, [o.columns(plane) for o in others], scales, **vopts),
            cusps(sub, **(cusp_options or {})),
        )
        features[plane] = feats
        members += _members(sm, plane, feats)
    candidates = []
    for group in _groups(members, sm.sigma, time_tol, need):
        chosen = tuple(members[i] for i in sorted(group))
        index = float(np.mean([m.position for m in chosen]))
        fallback = np.array([np.interp(index, np.arange(len(x)), sm.position[:, i]) for i in range(k)])
        point, residual = lift(chosen, k, fallback)
        candidates.append((residual, index, group, Form(index, point, residual, chosen)))
    forms, used = [], set()
    for _, _, group, form in sorted(candidates, key=lambda c: (c[0], c[1])):
        if not group & used:
            forms.append(form)
            used |= group
    return Detection(sm, planes, features, sorted(forms, key=lambda f: f.index))


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


def form_potential(proxies: ArrayLike, form: Form | ArrayLike) -> NDArray[np.float64]:
    """The form potential ``|x_t − p|²`` for every checkpoint, in the full function space
    (App. B.3, B.8): ``form`` is a :class:`Form` with ``point`` set, or a point ``(D,)``."""
    x = check_proxies(proxies)
    point = form.point if isinstance(form, Form) else np.asarray(form, dtype=np.float64)
    if point is None:
        raise ValueError("this form has no function-space point; use one from find_forms")
    return squared_distances(x, point)


def _p_value(null: NDArray[np.float64], residual: float) -> float:
    """(1 + #surrogates whose best form fits at least as well) / (1 + #surrogates)."""
    return float((1 + np.sum(null <= residual)) / (1 + null.size))


def null_residuals(
    proxies: NDArray[np.floating],
    pca: TrajectoryPCA,
    sigma: NDArray[np.float64],
    n_surrogates: int,
    seed: int,
    options: dict[str, Any],
) -> pd.DataFrame:
    """Best form residual of each surrogate (``inf``: none found), both families."""
    k = pca.n_components
    lengths = step_lengths(proxies)
    walk_rng, phase_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    rows = []
    for s in range(n_surrogates):
        walk = walk_surrogate(lengths, proxies.shape[1], walk_rng)
        found = detect(trajectory_pca(walk, k, seed=seed + s).scores, sigma, **options)
        rows.append(("walk", found.best_residual, len(found.forms)))
        found = detect(phase_surrogate(pca.scores, phase_rng), sigma, **options)
        rows.append(("phase", found.best_residual, len(found.forms)))
    return pd.DataFrame(rows, columns=["family", "best_residual", "n_forms"])


def _check_options(
    x: NDArray[np.floating],
    sigma: NDArray[np.float64],
    n_components: int,
    min_planes: int | None,
    n_surrogates: int,
) -> None:
    if x.shape[0] < min_samples(sigma):
        raise ValueError(
            f"{x.shape[0]} checkpoints are fewer than the smoothing needs: σ up to "
            f"{sigma.max():g} requires at least {min_samples(sigma)}"
        )
    if n_components < 3:
        raise ValueError(f"a form needs at least 3 PCs (3 planes constrain the lift), got {n_components}")
    n_planes = n_components * (n_components - 1) // 2
    if min_planes is not None and not 2 <= min_planes <= n_planes:
        raise ValueError(f"min_planes must be in [2, {n_planes}], got {min_planes}")
    if n_surrogates < 0:
        raise ValueError(f"n_surrogates must be >= 0, got {n_surrogates}")


def _columns(k: int) -> list[str]:
    base = ["step", "index", "start", "end", "residual", "p_walk", "p_phase", "p_value", "features"]
    return base + [f"pc{i}_{c}" for i in range(1, k + 1) for c in ("b6", "gap", "crit")]


def _row(form: Form, b6: pd.DataFrame, planes: list[Plane]) -> dict[str, Any]:
    kinds = {m.plane: m.kind[0].upper() for m in form.members}
    row: dict[str, Any] = {
        "step": form.step,
        "index": form.index,
        "start": form.start,
        "end": form.end,
        "residual": form.residual,
        "p_walk": form.p_walk,
        "p_phase": form.p_phase,
        "p_value": max(form.p_walk, form.p_phase),
        "features": " ".join(kinds.get(p, "-") for p in planes),
    }
    for r in b6.itertuples():
        row[f"pc{r.pc}_b6"], row[f"pc{r.pc}_gap"], row[f"pc{r.pc}_crit"] = r.verdict, r.gap, r.crit
    return row


def find_forms(
    proxies: ArrayLike,
    steps: ArrayLike,
    *,
    n_components: int = 3,
    sigma: float | ArrayLike = 1.0,
    time_tol: float = 2.0,
    min_planes: int | None = None,
    n_surrogates: int = 20,
    seed: int = 0,
    influence_tol: float = 0.05,
    b6_tol: float = 0.1,
    vertex_options: dict[str, Any] | None = None,
    cusp_options: dict[str, Any] | None = None,
) -> FormSearch:
    """Forms of the trajectory of ``proxies`` ``(T, D)`` at training ``steps`` ``(T,)``.

    Parameters
    ----------
    n_components
        k, the PCs whose planes must all show a vertex or cusp (k ≥ 3).
    sigma
        Smoothing σ in checkpoints, scalar or one per checkpoint (:func:`devbook.ed.smoothing.sigma_schedule`).
    time_tol
        Features of different planes belong together within ``time_tol`` σ + 1 checkpoints.
    min_planes
        Planes a form needs (default: all k(k−1)/2, the paper's definition).
    n_surrogates
        Surrogates per null family (random walks, phase-randomised scores); 0 skips the test.
    influence_tol, b6_tol
        See :func:`influence_range` and :func:`b6_check`.
    vertex_options, cusp_options
        Keyword arguments for :func:`devbook.ed.geometry.vertices` / ``cusps``.

    Returns
    -------
    FormSearch
        ``table`` has one row per form: ``step``, ``start``/``end`` (influence range),
        ``residual``, ``p_walk``, ``p_phase``, ``p_value`` (the larger), ``features`` (V/C/-
        per plane) and per PC ``pc{i}_b6`` (verdict), ``pc{i}_gap``, ``pc{i}_crit``.
    """
    x = check_proxies(proxies)
    n = x.shape[0]
    grid = np.arange(n)
    st = check_steps(steps, n)
    sig = check_sigma(sigma, n)
    _check_options(x, sig, n_components, min_planes, n_surrogates)
    pca = trajectory_pca(x, n_components, seed=seed)
    options = {
        "time_tol": time_tol,
        "min_planes": min_planes,
        "vertex_options": vertex_options,
        "cusp_options": cusp_options,
    }
    found = detect(pca.scores, sig, **options)
    null = (
        null_residuals(x, pca, sig, n_surrogates, seed, options)
        if n_surrogates and found.forms
        else pd.DataFrame({"family": [], "best_residual": [], "n_forms": []})
    )
    walk = null.loc[null.family == "walk", "best_residual"].to_numpy(float)
    phase = null.loc[null.family == "phase", "best_residual"].to_numpy(float)
    norms = squared_distances(x, pca.mean)
    forms, potentials, rows = [], [], []
    for f in found.forms:
        pot = np.maximum(norms - 2.0 * pca.scores @ f.point_pc + f.point_pc @ f.point_pc, 0.0)
        window = time_tol * float(np.interp(f.index, grid, sig)) + 1.0
        a, b = influence_range(pot, f.index, tol=influence_tol, window=window)
        form = Form(
            f.index,
            f.point_pc,
            f.residual,
            f.members,
            float(np.interp(f.index, grid, st)),
            pca.to_function_space(f.point_pc),
            float(st[a]),
            float(st[b]),
            _p_value(walk, f.residual) if walk.size else np.nan,
            _p_value(phase, f.residual) if phase.size else np.nan,
        )
        b6 = b6_check(found.smoothed, pca.scores, form, time_tol=time_tol, tol=b6_tol)
        forms.append(form)
        potentials.append(pot)
        rows.append(_row(form, b6, found.planes))
    table = pd.DataFrame(rows, columns=_columns(n_components))
    return FormSearch(table, forms, pca, st, found, np.array(potentials).reshape(len(forms), n), null)
