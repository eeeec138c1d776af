"""From TMS training runs to k-gon plateaus, transitions and their LLCs.

Used by ``book/tms/growth-and-form.md``: :func:`find_plateaus` finds the flat stretches of a
loss curve, :func:`labelled_plateaus` keeps those at near-critical points and names them by
their k-gon, :func:`transitions` reads off consecutive plateaus, :func:`llc_targets` chooses
the plateaus whose LLC is measured (:func:`plateau_llc`), :func:`label_summary` /
:func:`label_rows` tabulate them per k-gon, :func:`transition_test` counts the transitions that
lower the loss and raise λ̂, and :func:`crossing_text` solves the free-energy crossing from
measured values. The cached versions of the slow steps are in :mod:`devbook.tms.evaluate`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from devbook.llc import LLCResult, SGLDConfig, estimate_llc
from devbook.tms.kgon import classify, label_k
from devbook.tms.model import TMSModel, population_loss, tms_loss_fn
from devbook.tms.posterior import free_energy_crossing
from devbook.tms.train import TrainResult

PLATEAU_SLOPE_TOL = 0.15
"""A plateau's smoothed |d ln L / d log10 t| stays below this ..."""
PLATEAU_MIN_DECADES = 0.2
"""... for at least this many decades of steps."""


@dataclass(frozen=True)
class Plateau:
    """A run's plateau: checkpoint indices ``[start, end]`` (inclusive), its mean loss and the
    k-gon label at its last checkpoint."""

    run: int
    start: int
    end: int
    loss: float
    label: str


def grad_norm(W: torch.Tensor, b: torch.Tensor) -> float:
    """||∇L(w)|| of the exact population loss at one parameter.

    Parameters
    ----------
    W, b : torch.Tensor
        ``W`` (r, c), ``b`` (c,) (any dtype; the gradient is taken in float64).

    Returns
    -------
    float
        The Euclidean norm of the gradient in (W, b).
    """
    W = W.detach().double().requires_grad_(True)
    b = b.detach().double().requires_grad_(True)
    gW, gb = torch.autograd.grad(population_loss(W, b), [W, b])
    return float(torch.cat([gW.flatten(), gb.flatten()]).norm())


def hessian_eigenvalues(W: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Eigenvalues of the Hessian of the exact population loss at one parameter.

    Parameters
    ----------
    W, b : torch.Tensor
        ``W`` (r, c), ``b`` (c,) (the Hessian is taken in float64).

    Returns
    -------
    numpy.ndarray
        The r·c + c eigenvalues, ascending: a negative one marks a saddle (a direction in which
        the loss falls).
    """
    r, c = W.shape
    w0 = torch.cat([W.detach().double().flatten(), b.detach().double()])
    H = torch.autograd.functional.hessian(lambda w: population_loss(w[: r * c].reshape(r, c), w[r * c :]), w0)
    return torch.linalg.eigvalsh(H).numpy()


def _flat_stretches(flat: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``(i, j)`` (inclusive) of True in ``flat``."""
    out, i = [], 0
    while i < len(flat):
        if not flat[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flat) and flat[j + 1]:
            j += 1
        out.append((i, j))
        i = j + 1
    return out


def find_plateaus(
    steps: np.ndarray,
    loss: np.ndarray,
    *,
    slope_tol: float = PLATEAU_SLOPE_TOL,
    min_decades: float = PLATEAU_MIN_DECADES,
    smooth_decades: float = 0.05,
) -> list[tuple[int, int]]:
    """Plateaus of one loss curve recorded at (log-spaced) checkpoints.

    ln(loss) is resampled on a grid uniform in log10(step) (0.01 decades; step 0 left out),
    smoothed by a Gaussian of ``smooth_decades`` to remove minibatch noise, and differentiated;
    a plateau is a maximal stretch where |d ln(loss) / d log10(step)| < ``slope_tol`` lasting at
    least ``min_decades`` decades.

    Returns
    -------
    list of tuple
        Inclusive index pairs ``(start, end)`` into ``steps`` (the checkpoints inside each
        stretch), in time order.
    """
    from scipy.ndimage import gaussian_filter1d

    if steps.shape != loss.shape:
        raise ValueError(f"steps {steps.shape} and loss {loss.shape} must have the same shape")
    pos = steps > 0
    t = np.log10(steps[pos].astype(float))
    y = np.log(np.maximum(loss[pos], 1e-12))
    grid = np.arange(t[0], t[-1] + 1e-9, 0.01)
    if len(grid) < 3:
        return []
    ys = gaussian_filter1d(np.interp(grid, t, y), smooth_decades / 0.01, mode="nearest")
    idx = np.flatnonzero(pos)
    out: list[tuple[int, int]] = []
    for i, j in _flat_stretches(np.abs(np.gradient(ys, grid)) < slope_tol):
        inside = np.flatnonzero((t >= grid[i] - 1e-9) & (t <= grid[j] + 1e-9))
        if grid[j] - grid[i] >= min_decades and len(inside) > 0:
            out.append((int(idx[inside[0]]), int(idx[inside[-1]])))
    return out


def labelled_plateaus(result: TrainResult, *, grad_tol: float = 0.1) -> list[list[Plateau]]:
    """Per run, its plateaus at near-critical points, named by their k-gon.

    The plateaus of :func:`find_plateaus` are kept if the population-gradient norm at the
    plateau's last checkpoint is below ``grad_tol`` (which drops the "nothing learned yet"
    plateau at initialisation) and named by :func:`devbook.tms.kgon.classify` there.
    Consecutive plateaus with the same label are merged.

    Parameters
    ----------
    result : TrainResult
        The checkpoints and losses of a run's seeds.
    grad_tol : float
        Largest gradient norm of a plateau's end.

    Returns
    -------
    list of list of Plateau
        One list per seed, in time order.
    """
    out: list[list[Plateau]] = []
    for s in range(len(result.seeds)):
        loss = result.loss[:, s].numpy()
        runs: list[Plateau] = []
        for start, end in find_plateaus(result.steps, loss):
            if grad_norm(result.W[end, s], result.b[end, s]) > grad_tol:
                continue
            label = classify(result.W[end, s], result.b[end, s]).label
            level = float(np.mean(loss[start : end + 1]))
            if runs and runs[-1].label == label:
                prev = runs.pop()
                start, level = prev.start, float(np.mean(loss[prev.start : end + 1]))
            runs.append(Plateau(s, start, end, level, label))
        out.append(runs)
    return out


def transitions(plateaus: list[list[Plateau]]) -> Counter[tuple[str, str]]:
    """Counts of (from label, to label) over consecutive plateaus of every run.

    Parameters
    ----------
    plateaus : list of list of Plateau
        Per run, its plateaus in time order.

    Returns
    -------
    collections.Counter
        ``{(label, next label): count}``.
    """
    counts: Counter[tuple[str, str]] = Counter()
    for runs in plateaus:
        for a, b in zip(runs, runs[1:]):
            counts[(a.label, b.label)] += 1
    return counts


def featured_run(plateaus: list[list[Plateau]], result: TrainResult) -> int:
    """The run with the most plateaus (ties: the lowest final loss, then the lowest index).

    Parameters
    ----------
    plateaus : list of list of Plateau
        Per run, its plateaus.
    result : TrainResult
        The run's checkpoints and losses.

    Returns
    -------
    int
        The seed index.
    """
    return min(range(len(plateaus)), key=lambda s: (-len(plateaus[s]), float(result.loss[-1, s])))


def llc_curve_checkpoints(result: TrainResult, shown: Sequence[Plateau], points: int) -> np.ndarray:
    """Checkpoint indices of the LLC curve of one run.

    ``points`` log-spaced steps from half the step where its first plateau begins to the end,
    snapped to the next checkpoint (distinct, never step 0). λ̂ is only meaningful near
    critical points: while the loss is still falling SGLD finds lower loss nearby and λ̂ < 0,
    hence the late start.

    Parameters
    ----------
    result : TrainResult
        The run's checkpoints.
    shown : sequence of Plateau
        The run's plateaus (the first sets the start; none: start at step 1).
    points : int
        Number of log-spaced steps before snapping.

    Returns
    -------
    numpy.ndarray
        Sorted distinct indices into ``result.steps``.
    """
    first = max(1, int(result.steps[shown[0].start]) // 2) if shown else 1
    steps = np.unique(np.geomspace(first, result.steps[-1], points).round())
    return np.unique(np.searchsorted(result.steps, steps).clip(1, len(result.steps) - 1))


def llc_targets(plateaus: list[list[Plateau]], per_label: int) -> list[Plateau]:
    """The plateaus whose LLC is measured.

    Every plateau of the runs with a transition, then, from the runs with a single plateau, up
    to ``per_label`` plateaus of each k-gon (counting those already taken).

    Parameters
    ----------
    plateaus : list of list of Plateau
        Per run, its plateaus.
    per_label : int
        Plateaus per label.

    Returns
    -------
    list of Plateau
        In that order.
    """
    todo = [p for runs in plateaus if len(runs) > 1 for p in runs]
    taken = Counter(p.label for p in todo)
    for runs in plateaus:
        if len(runs) == 1 and taken[runs[0].label] < per_label:
            todo.append(runs[0])
            taken[runs[0].label] += 1
    return todo


def plateau_llc(result: TrainResult, run: int, ckpt: int, config: SGLDConfig, *, seed: int) -> LLCResult:
    """λ̂ of one seed at one checkpoint, on that seed's own training set.

    Parameters
    ----------
    result : TrainResult
        The run's checkpoints and training sets.
    run, ckpt : int
        Seed index and checkpoint index.
    config : devbook.llc.SGLDConfig
        The sampler's settings.
    seed : int
        The SGLD seed.

    Returns
    -------
    devbook.llc.LLCResult
        The estimate (it may warn; :func:`devbook.tms.evaluate.llc_estimates` records them).
    """
    model = TMSModel(result.W[ckpt, run], result.b[ckpt, run])
    return estimate_llc(model, tms_loss_fn, (result.data[run],), config, seed=seed)


def label_summary(
    todo: Sequence[Plateau], llc: dict[tuple[int, int], float], result: TrainResult
) -> dict[str, list[tuple[float, float, float]]]:
    """The measured plateaus grouped by k-gon label.

    Parameters
    ----------
    todo : sequence of Plateau
        The measured plateaus.
    llc : dict
        λ̂ by ``(run, end)``.
    result : TrainResult
        For the exact potential at each plateau's end.

    Returns
    -------
    dict
        ``{label: [(plateau loss, λ̂, L(w)), ...]}``, labels in order of first appearance.
    """
    out: dict[str, list[tuple[float, float, float]]] = {}
    for p in todo:
        pop = float(result.pop_loss[p.end, p.run])
        out.setdefault(p.label, []).append((p.loss, llc[(p.run, p.end)], pop))
    return out


def group_by_label(plateaus: Sequence[Plateau], values: Sequence[float]) -> dict[str, list[float]]:
    """``values`` (one per plateau) grouped by k-gon label.

    Parameters
    ----------
    plateaus : sequence of Plateau
        Plateaus, one per value.
    values : sequence of float
        A value per plateau.

    Returns
    -------
    dict
        ``{label: [value, ...]}``, labels in order of first appearance.
    """
    out: dict[str, list[float]] = {}
    for p, v in zip(plateaus, values):
        out.setdefault(p.label, []).append(v)
    return out


def label_rows(per_label: dict[str, list[tuple[float, float, float]]]) -> list[tuple]:
    """One row of statistics per k-gon label.

    Parameters
    ----------
    per_label : dict
        As returned by :func:`label_summary`.

    Returns
    -------
    list of tuple
        ``(label, count, mean loss, mean λ̂, std λ̂ (ddof 1; nan for one), mean L(w))``,
        highest mean loss first.
    """
    rows = []
    for label, v in sorted(per_label.items(), key=lambda kv: -np.mean([x[0] for x in kv[1]])):
        a = np.array(v)
        sd = a[:, 1].std(ddof=1) if len(a) > 1 else np.nan
        rows.append((label, len(a), a[:, 0].mean(), a[:, 1].mean(), sd, a[:, 2].mean()))
    return rows


def llc_table_markdown(rows: Sequence[tuple]) -> str:
    """The rows of :func:`label_rows` as one line of text.

    Parameters
    ----------
    rows : sequence of tuple
        As returned by :func:`label_rows`.

    Returns
    -------
    str
        E.g. ``"`5+`: 8.4 ± 0.3 (6 plateaus); `6`: 9.1 (1 plateau)"``.
    """
    return "; ".join(
        f"`{r[0]}`: {r[3]:.1f}" + (f" ± {r[4]:.1f} ({r[1]} plateaus)" if r[1] > 1 else " (1 plateau)")
        for r in rows
    )


def transition_test(
    plateaus: list[list[Plateau]], llc: dict[tuple[int, int], float]
) -> tuple[list[tuple[Plateau, Plateau, float, float]], dict[str, int]]:
    """The transitions with both ends measured, and how many lowered the loss and raised λ̂.

    Returns
    -------
    tuple
        ``(pairs, counts)``: pairs ``(a, b, λ̂_a, λ̂_b)`` in run order; counts ``measured``,
        ``up`` (loss down and λ̂ up), and the same restricted to transitions whose earlier
        plateau has λ̂ > 0 (``measured_pos``, ``up_pos``; not a saddle that SGLD escapes).
    """
    pairs, counts = [], dict(measured=0, up=0, measured_pos=0, up_pos=0)
    for runs in plateaus:
        for a, b in zip(runs, runs[1:]):
            if (a.run, a.end) in llc and (b.run, b.end) in llc:
                la, lb = llc[(a.run, a.end)], llc[(b.run, b.end)]
                pairs.append((a, b, la, lb))
                ok = int(b.loss < a.loss and lb > la)
                counts["measured"] += 1
                counts["up"] += ok
                if la > 0:
                    counts["measured_pos"] += 1
                    counts["up_pos"] += ok
    return pairs, counts


def phase_matches(label: str, phase: str) -> bool:
    """Whether a k-gon label belongs to a phase.

    Parameters
    ----------
    label : str
        A k-gon label such as ``"5+"``.
    phase : str
        A label (matched exactly) or ``"k=5"`` (every label with five hull vertices).

    Returns
    -------
    bool
    """
    return label_k(label) == int(phase[2:]) if phase.startswith("k=") else label == phase


def phase_stats(per_label: dict[str, list[tuple[float, float, float]]], phase: str) -> tuple[float, float]:
    """Mean exact potential and mean λ̂ over the measured plateaus of a phase.

    Parameters
    ----------
    per_label : dict
        As returned by :func:`label_summary`.
    phase : str
        See :func:`phase_matches`.

    Returns
    -------
    tuple of float
        ``(mean L(w), mean λ̂)``; ``(nan, nan)`` when no plateau of the phase was measured.
    """
    v = [x for label, xs in per_label.items() if phase_matches(label, phase) for x in xs]
    return (np.mean([x[2] for x in v]), np.mean([x[1] for x in v])) if v else (np.nan, np.nan)


def crossing_text(per_label: dict[str, list[tuple[float, float, float]]], a: str, b: str) -> str:
    """The free-energy crossing of two phases from measured values, as text.

    Solves n·ΔL + Δλ̂·log n = 0 (:func:`devbook.tms.posterior.free_energy_crossing`) with
    Δ = phase ``b`` − phase ``a`` of :func:`phase_stats`.

    Parameters
    ----------
    per_label : dict
        As returned by :func:`label_summary`.
    a, b : str
        Phases (see :func:`phase_matches`).

    Returns
    -------
    str
        ``"601 (ΔL = ..., Δλ̂ = ...)"``, ``"none (...)"`` when there is no crossing, or
        ``"not measured ..."`` when a phase was not seen at a plateau.
    """
    (La, lama), (Lb, lamb) = phase_stats(per_label, a), phase_stats(per_label, b)
    if not np.isfinite(La + Lb):
        return "not measured (phase not seen at a plateau)"
    n = free_energy_crossing(Lb - La, lamb - lama)
    return (f"{n:.0f}" if np.isfinite(n) else "none") + (f" (ΔL = {Lb - La:.4f}, Δλ̂ = {lamb - lama:.2f})")


def sixth_column_range(result: TrainResult, plateaus: Sequence[Plateau]) -> str:
    """The range of the smallest column norm of W over some plateaus, as text.

    Parameters
    ----------
    result : TrainResult
        The run's checkpoints.
    plateaus : sequence of Plateau
        The plateaus (at their last checkpoint).

    Returns
    -------
    str
        ``"0.51 to 0.64"``, or a note when ``plateaus`` is empty.
    """
    norms = [float(result.W[p.end, p.run].norm(dim=0).min()) for p in plateaus]
    return f"{min(norms):.2f} to {max(norms):.2f}" if norms else "(no `5` plateau measured)"
