"""Forms of a developmental trajectory, found automatically (paper §3.2.1, App. B.3–B.6, B.8).

Pipeline of :func:`find_forms`:

1. PCA of the proxies over checkpoints (:func:`devbook.ed.pca.trajectory_pca`), first k PCs;
2. Gaussian smoothing of the scores with a σ per checkpoint (:mod:`devbook.ed.smoothing`);
3. vertices and cusps of every PC plane (:mod:`devbook.ed.geometry`);
4. features of different planes grouped in time (within ``time_tol`` σ + 1 checkpoints); a
   group with one feature in each of ``min_planes`` planes (all by default) is a candidate;
5. the centres lifted to one point of PC space by weighted least squares (Lemma B.4), each
   plane's misfit in units of its circle's radius (plus σ × the plane's median speed, the
   resolution, which is all a cusp has); the root-mean-square misfit is the **residual** (0:
   the centres lift exactly); and the **flatness** of the form potential over the group's
   window, ±(``flat_tol`` σ + 1) (:func:`devbook.ed.evidence.flatness`, Definition B.5 and B.8);
6. the candidate's kind decides its form point and its evidence. A **stationary** form (a cusp
   in every plane, Lemma B.3) is the lifted point, and its test statistic is the residual; a
   **vertex** form (any vertex among its features) is the point whose potential is flattest
   over the window, and its test statistic is the flatness. Overlapping candidates keep the
   strongest evidence (stationary first, then the smaller statistic);
7. the point mapped back to function space, its form potential ``|x_t − p|²`` in the full
   space (App. B.3, B.8), the influence range = the flat bottom of the potential (within 5 % of
   its median above its minimum), the B.6 check of each PC, and p-values against surrogate
   trajectories (:mod:`devbook.ed.null`): (1 + #surrogates whose best candidate has a
   statistic at least as small) / (1 + #surrogates), per family.

Why two statistics. If every plane's centre lifts exactly, then for each PC ``e_i = score_i −
p_i`` the function ``e_i²`` has vanishing first three derivatives at the form's time (sum and
difference of the planes' contact conditions), so ``e_i e_i' = 0`` and ``e_i'² + e_i e_i'' =
0``, which force ``e_i' = 0``: an exact lift across the three planes of three PCs happens only
where the trajectory is stationary. A vertex passed at speed has centres that miss each other
by about a radius, whatever its geometry in function space, so its residual is no evidence;
the flat bottom of its potential is. Brownian motion's apparent vertices (B.7) have neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from devbook.ed.evidence import b6_check, flatness, influence_range
from devbook.ed.geometry import MIN_SIGMA, Features, cusps, vertices_from
from devbook.ed.null import phase_surrogate, step_lengths, walk_surrogate
from devbook.ed.pca import TrajectoryPCA, check_proxies, squared_distances, trajectory_pca
from devbook.ed.smoothing import Smoothed, check_sigma, min_samples, smooth

Plane = tuple[int, int]
#: Half-width of the flatness window in σ: beyond the reach of the smoothing kernel (its weight
#: past 4σ is 6e-5), so that smoothing alone cannot make a potential flat over the window.
FLAT_TOL = 4.0
NULL_COLUMNS = ["family", "best_residual", "best_flatness", "n_forms"]


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
    """A form: fractional checkpoint ``index``, training ``step``, its point ``point_pc``
    ``(k,)``, the lift ``residual`` and the plane features it unifies. ``point`` (function
    space), influence range (``start``/``end`` steps) and p-values are filled in by
    :func:`find_forms`.

    ``lift_pc`` is the lift of the planes' centres, ``centre_pc`` the point whose potential is
    flattest over the form's window and ``flatness`` that potential's flatness
    (:func:`devbook.ed.evidence.flatness`); ``point_pc`` is ``lift_pc`` for a stationary
    form and ``centre_pc`` for a vertex form (see ``kind``).
    """

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
    flatness: float = np.nan
    lift_pc: NDArray[np.float64] | None = field(default=None, repr=False)
    centre_pc: NDArray[np.float64] | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """``"stationary"`` if every feature is a cusp (Lemma B.3), else ``"vertex"``."""
        return "stationary" if all(m.kind == "cusp" for m in self.members) else "vertex"

    @property
    def statistic(self) -> float:
        """The test statistic of its kind: the residual (stationary) or the flatness (vertex)."""
        return self.residual if self.kind == "stationary" else self.flatness


@dataclass(frozen=True)
class Detection:
    """The geometric part of the pipeline on one set of PC scores."""

    smoothed: Smoothed
    planes: list[Plane]
    features: dict[Plane, tuple[Features, Features]]
    forms: list[Form]

    @property
    def best_residual(self) -> float:
        """The smallest lift residual of any candidate (``inf``: none)."""
        return min((f.residual for f in self.forms), default=np.inf)

    @property
    def best_flatness(self) -> float:
        """The smallest flatness of any candidate (``inf``: none)."""
        return min((f.flatness for f in self.forms), default=np.inf)


@dataclass(frozen=True)
class FormSearch:
    """What :func:`find_forms` found: ``table`` (one row per form) and what is needed to draw it.

    ``potentials`` is ``(n_forms, T)`` (full function space, from each form's point); ``null``
    has one row per surrogate (``family``, ``best_residual``, ``best_flatness``, ``n_forms``).
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
    flat_tol: float = FLAT_TOL,
) -> Detection:
    """Steps 2–6 of the pipeline on PC scores ``(T, k)``: smoothing, plane features, grouping,
    lifting and flatness. Used by :func:`find_forms` on the data and on every surrogate."""
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
    candidates = [
        (group, _candidate(members, group, sm, flat_tol))
        for group in _groups(members, sm.sigma, time_tol, need)
    ]
    forms, used = [], set()
    for group, form in sorted(
        candidates, key=lambda c: (c[1].kind != "stationary", c[1].statistic, c[1].index)
    ):
        if not group & used:
            forms.append(form)
            used |= group
    return Detection(sm, planes, features, sorted(forms, key=lambda f: f.index))


def _candidate(members: list[Member], group: frozenset[int], sm: Smoothed, flat_tol: float) -> Form:
    """A candidate form from a group of plane features: lift, flatness and the kind's point."""
    chosen = tuple(members[i] for i in sorted(group))
    index = float(np.mean([m.position for m in chosen]))
    k = sm.position.shape[1]
    grid = np.arange(len(sm.sigma))
    fallback = np.array([np.interp(index, grid, sm.position[:, i]) for i in range(k)])
    point, residual = lift(chosen, k, fallback)
    flat, centre = flatness(sm, index, time_tol=flat_tol)
    stationary = all(m.kind == "cusp" for m in chosen)
    return Form(
        index,
        point if stationary else centre,
        residual,
        chosen,
        flatness=flat,
        lift_pc=point,
        centre_pc=centre,
    )


def form_potential(proxies: ArrayLike, form: Form | ArrayLike) -> NDArray[np.float64]:
    """The form potential ``|x_t − p|²`` for every checkpoint, in the full function space
    (App. B.3, B.8): ``form`` is a :class:`Form` with ``point`` set, or a point ``(D,)``."""
    x = check_proxies(proxies)
    point = form.point if isinstance(form, Form) else np.asarray(form, dtype=np.float64)
    if point is None:
        raise ValueError("this form has no function-space point; use one from find_forms")
    return squared_distances(x, point)


def _p_value(null: NDArray[np.float64], statistic: float) -> float:
    """(1 + #surrogates whose best candidate is at least as extreme) / (1 + #surrogates)."""
    return float((1 + np.sum(null <= statistic)) / (1 + null.size)) if null.size else np.nan


def null_residuals(
    proxies: NDArray[np.floating],
    pca: TrajectoryPCA,
    sigma: NDArray[np.float64],
    n_surrogates: int,
    seed: int,
    options: dict[str, Any],
) -> pd.DataFrame:
    """Best lift residual and best flatness of each surrogate's candidates (``inf``: none),
    both families, each surrogate through :func:`detect` exactly as the data."""
    k = pca.n_components
    lengths = step_lengths(proxies)
    walk_rng, phase_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    rows = []
    for s in range(n_surrogates):
        walk = walk_surrogate(lengths, proxies.shape[1], walk_rng)
        found = detect(trajectory_pca(walk, k, seed=seed + s).scores, sigma, **options)
        rows.append(("walk", found.best_residual, found.best_flatness, len(found.forms)))
        found = detect(phase_surrogate(pca.scores, phase_rng), sigma, **options)
        rows.append(("phase", found.best_residual, found.best_flatness, len(found.forms)))
    return pd.DataFrame(rows, columns=NULL_COLUMNS)


def _check_options(
    x: NDArray[np.floating],
    sigma: NDArray[np.float64],
    n_components: int,
    min_planes: int | None,
    n_surrogates: int,
    flat_tol: float = FLAT_TOL,
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
    if not flat_tol > 0:
        raise ValueError(f"flat_tol must be > 0, got {flat_tol}")


def _columns(k: int) -> list[str]:
    base = ["step", "index", "start", "end", "kind", "residual", "flatness"]
    base += ["p_walk", "p_phase", "p_value", "features"]
    return base + [f"pc{i}_{c}" for i in range(1, k + 1) for c in ("b6", "gap", "crit")]


def _row(form: Form, b6: pd.DataFrame, planes: list[Plane]) -> dict[str, Any]:
    kinds = {m.plane: m.kind[0].upper() for m in form.members}
    row: dict[str, Any] = {
        "step": form.step,
        "index": form.index,
        "start": form.start,
        "end": form.end,
        "kind": form.kind,
        "residual": form.residual,
        "flatness": form.flatness,
        "p_walk": form.p_walk,
        "p_phase": form.p_phase,
        "p_value": max(form.p_walk, form.p_phase),
        "features": " ".join(kinds.get(p, "-") for p in planes),
    }
    for r in b6.itertuples():
        row[f"pc{r.pc}_b6"], row[f"pc{r.pc}_gap"], row[f"pc{r.pc}_crit"] = r.verdict, r.gap, r.crit
    return row


def _complete(
    f: Form,
    pca: TrajectoryPCA,
    norms: NDArray[np.float64],
    null: pd.DataFrame,
    steps: NDArray[np.float64],
    sigma: NDArray[np.float64],
    time_tol: float,
    influence_tol: float,
) -> tuple[Form, NDArray[np.float64]]:
    """A detected form with its step, function-space point, influence range and p-values,
    and its form potential in the full space."""
    grid = np.arange(len(steps))
    # |x_t − p|² from PC quantities (|x_t − mean|² − 2 s_t·p + |p|²; p lies in the PC span)
    pot = np.maximum(norms - 2.0 * pca.scores @ f.point_pc + f.point_pc @ f.point_pc, 0.0)
    window = time_tol * float(np.interp(f.index, grid, sigma)) + 1.0
    a, b = influence_range(pot, f.index, tol=influence_tol, window=window)
    column = "best_residual" if f.kind == "stationary" else "best_flatness"
    p_walk, p_phase = (
        _p_value(null.loc[null.family == fam, column].to_numpy(float), f.statistic)
        for fam in ("walk", "phase")
    )
    form = replace(
        f,
        step=float(np.interp(f.index, grid, steps)),
        point=pca.to_function_space(f.point_pc),
        start=float(steps[a]),
        end=float(steps[b]),
        p_walk=p_walk,
        p_phase=p_phase,
    )
    return form, pot


def find_forms(
    proxies: ArrayLike,
    steps: ArrayLike,
    *,
    n_components: int = 3,
    sigma: float | ArrayLike = 1.0,
    time_tol: float = 2.0,
    min_planes: int | None = None,
    n_surrogates: int = 20,
    flat_tol: float = FLAT_TOL,
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
    flat_tol
        The flatness of a candidate is measured over ``flat_tol`` σ + 1 checkpoints either
        side (:func:`devbook.ed.evidence.flatness`).
    influence_tol, b6_tol
        See :func:`devbook.ed.evidence.influence_range` and :func:`devbook.ed.evidence.b6_check`.
    vertex_options, cusp_options
        Keyword arguments for :func:`devbook.ed.geometry.vertices` / ``cusps``.

    Returns
    -------
    FormSearch
        ``table`` has one row per form: ``step``, ``start``/``end`` (influence range),
        ``kind`` (``stationary`` / ``vertex``), ``residual``, ``flatness``, ``p_walk``,
        ``p_phase`` (each the p-value of the kind's statistic against that family's best
        candidates), ``p_value`` (the larger), ``features`` (V/C/- per plane) and per PC
        ``pc{i}_b6`` (verdict), ``pc{i}_gap``, ``pc{i}_crit``.
    """
    x = check_proxies(proxies)
    n = x.shape[0]
    st = check_steps(steps, n)
    sig = check_sigma(sigma, n)
    _check_options(x, sig, n_components, min_planes, n_surrogates, flat_tol)
    pca = trajectory_pca(x, n_components, seed=seed)
    options = {
        "time_tol": time_tol,
        "min_planes": min_planes,
        "vertex_options": vertex_options,
        "cusp_options": cusp_options,
        "flat_tol": flat_tol,
    }
    found = detect(pca.scores, sig, **options)
    null = (
        null_residuals(x, pca, sig, n_surrogates, seed, options)
        if n_surrogates and found.forms
        else pd.DataFrame({c: [] for c in NULL_COLUMNS})
    )
    norms = squared_distances(x, pca.mean)
    forms, potentials, rows = [], [], []
    for f in found.forms:
        form, pot = _complete(f, pca, norms, null, st, sig, time_tol, influence_tol)
        b6 = b6_check(found.smoothed, pca.scores, form, time_tol=time_tol, tol=b6_tol)
        forms.append(form)
        potentials.append(pot)
        rows.append(_row(form, b6, found.planes))
    table = pd.DataFrame(rows, columns=_columns(n_components))
    return FormSearch(table, forms, pca, st, found, np.array(potentials).reshape(len(forms), n), null)


def describe_shown(table: pd.DataFrame, shown: Sequence[int]) -> str:
    """Which forms a chapter's figures highlight, and why (numbered from 1, as displayed)."""
    if not len(table):
        return "nothing: no candidate form was found"
    names = ", ".join(str(i + 1) for i in shown)
    if (table.loc[list(shown), "p_value"] < 0.05).all():
        return f"the significant forms ({names})"
    return f"the {len(shown)} candidates with the smallest p-values ({names}), none of them significant"
