"""Sampling the TMS posterior over the whole parameter space (no localization), vectorised.

The posterior of the "growth and form" study is p(w | D_n) ∝ exp(−n L_n(w)) φ(w); here φ is
N(0, prior_std² I). Unlike ``devbook.llc`` (which keeps only losses and pulls chains back to w*
with γ), this sampler returns the draws themselves so that each can be classified into a k-gon
phase. Update (the SGLD step of paper App. A.4 with γ = 0, nβ = n, full-batch gradient, plus
the prior's gradient):

    w ← w + (ε/2) · ( −n ∇L_n(w) − w / prior_std² ) + N(0, ε I)

All C chains advance together: ``W`` (C, r, c), ``b`` (C, c). :func:`sample_posterior` runs
independent chains at one n; :func:`sample_tempered` runs replica exchange over a ladder of n
(nested data sets) so that chains cross between k-gon phases at large n; the latter is what
``book/tms/growth-and-form.md`` uses for the Bayesian phase transition, with
:func:`occupancy_table` (the share of each phase at each rung), :func:`occupancy_crossover`
(where the 6-gon overtakes the 5-gon) and :func:`two_phase_occupancy` (the free-energy
prediction).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from devbook.tms.kgon import classify
from devbook.tms.model import empirical_loss, population_loss
from devbook.tms.train import loss_grad


def _langevin_step(
    W: Tensor, b: Tensor, x: Tensor, n: int, epsilon: float, prec: float, g: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One update of the module docstring for chains ``W`` (C, r, c), ``b`` (C, c) on ``x``
    (C, n, c)."""
    dW, db = loss_grad(W, b, x)
    root = math.sqrt(epsilon)
    W = W + epsilon / 2 * (-n * dW - prec * W) + root * torch.randn(W.shape, generator=g)
    b = b + epsilon / 2 * (-n * db - prec * b) + root * torch.randn(b.shape, generator=g)
    return W, b


def _kept_steps(num_steps: int, num_draws: int) -> set[int]:
    """``num_draws`` steps evenly spaced over the second half of ``num_steps``."""
    return set(torch.linspace(num_steps // 2, num_steps - 1, num_draws).round().long().tolist())


def sample_posterior(
    data: Tensor,
    *,
    num_chains: int,
    num_steps: int,
    num_draws: int,
    epsilon: float,
    prior_std: float = 2.0,
    init_scale: float = 1.0,
    r: int = 2,
    init: tuple[Tensor, Tensor] | None = None,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """Langevin draws from p(w | D_n) ∝ exp(−n L_n(w)) N(w; 0, prior_std²), n = len(data).

    ``data`` (n, c). Chains start from N(0, init_scale²), or from ``init`` = (W (C, r, c),
    b (C, c)) when given (e.g. half at a 5-gon, half at a 6-gon); the last ``num_draws`` of
    ``num_steps`` steps are returned, evenly spaced over the second half of the run.

    Returns
    -------
    tuple of torch.Tensor
        ``W`` (num_draws, C, r, c), ``b`` (num_draws, C, c).
    """
    if data.dim() != 2:
        raise ValueError(f"data must be (n, c), got {tuple(data.shape)}")
    if not (num_chains >= 1 and num_steps >= 2 and 1 <= num_draws <= num_steps // 2):
        raise ValueError(
            f"need num_chains >= 1, num_steps >= 2, 1 <= num_draws <= num_steps // 2; got "
            f"{num_chains}, {num_steps}, {num_draws}"
        )
    if epsilon <= 0 or prior_std <= 0:
        raise ValueError(f"epsilon and prior_std must be > 0, got {epsilon}, {prior_std}")
    n, c = data.shape
    g = torch.Generator().manual_seed(int(seed))
    W = torch.randn(num_chains, r, c, generator=g) * init_scale
    b = torch.randn(num_chains, c, generator=g) * init_scale
    if init is not None:
        if init[0].shape != W.shape or init[1].shape != b.shape:
            raise ValueError(
                f"init must be W {tuple(W.shape)} and b {tuple(b.shape)}, got "
                f"{tuple(init[0].shape)} and {tuple(init[1].shape)}"
            )
        W, b = init[0].to(W.dtype).clone(), init[1].to(b.dtype).clone()
    x = data.unsqueeze(0).expand(num_chains, n, c)
    keep = _kept_steps(num_steps, num_draws)
    out_W, out_b = [], []
    for t in range(num_steps):
        W, b = _langevin_step(W, b, x, n, epsilon, 1.0 / prior_std**2, g)
        if t in keep:
            out_W.append(W.clone())
            out_b.append(b.clone())
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise FloatingPointError(f"Langevin chains diverged; try an epsilon smaller than {epsilon:g}")
    return torch.stack(out_W), torch.stack(out_b)


@dataclass
class TemperedDraws:
    """Output of :func:`sample_tempered`: ``ns`` (R,) the ladder, ``W`` (D, R, C, r, c) and
    ``b`` (D, R, C, c) the kept draws of every rung, ``swap_rate`` (R − 1,) the accepted fraction
    of proposed swaps between rungs i and i + 1, ``lowest_visits`` (R, C) the fraction of kept
    draws at each rung whose state had passed through the lowest rung since the previous draw
    was kept (a mixing diagnostic: 0 means no state reached that rung from the top)."""

    ns: list[int]
    W: Tensor
    b: Tensor
    swap_rate: Tensor
    lowest_visits: Tensor


def _energy(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """n·L_n(w) of each chain: ``W`` (C, r, c), ``b`` (C, c), ``x`` (n, c) → (C,)."""
    return len(x) * empirical_loss(W, b, x)


def _check_tempered(
    data: Tensor,
    ns: list[int],
    num_chains: int,
    num_steps: int,
    num_draws: int,
    swap_every: int,
    scales: tuple[float, float, float],
) -> None:
    """Raise ``ValueError`` unless the arguments of :func:`sample_tempered` are sound."""
    if data.dim() != 2:
        raise ValueError(f"data must be (N, c), got {tuple(data.shape)}")
    if len(ns) < 2 or any(b <= a for a, b in zip(ns, ns[1:])) or ns[0] < 1 or ns[-1] > len(data):
        raise ValueError(f"ns must be >= 2 strictly increasing ints in [1, {len(data)}], got {ns}")
    if not (num_chains >= 1 and num_steps >= 2 and 1 <= num_draws <= num_steps // 2 and swap_every >= 1):
        raise ValueError(
            f"need num_chains >= 1, num_steps >= 2, 1 <= num_draws <= num_steps // 2, "
            f"swap_every >= 1; got {num_chains}, {num_steps}, {num_draws}, {swap_every}"
        )
    if min(scales) <= 0:
        raise ValueError(f"step_scale, prior_std, init_scale must be > 0; got {scales}")


def _swap_round(
    W: Tensor,
    b: Tensor,
    visited: Tensor,
    xs: list[Tensor],
    first: int,
    accepted: Tensor,
    proposed: Tensor,
    g: torch.Generator,
) -> None:
    """Propose to exchange the states of rungs (i, i + 1), i = first, first + 2, ..., in place."""
    C = W.shape[1]
    for i in range(first, len(xs) - 1, 2):
        j = i + 1
        log_a = (
            _energy(W[i], b[i], xs[i])
            + _energy(W[j], b[j], xs[j])
            - _energy(W[j], b[j], xs[i])
            - _energy(W[i], b[i], xs[j])
        )
        acc = torch.rand(C, generator=g).log() < log_a
        for arr in (W, b, visited):
            arr[i, acc], arr[j, acc] = arr[j, acc].clone(), arr[i, acc].clone()
        accepted[i] += acc.sum()
        proposed[i] += C


def sample_tempered(
    data: Tensor,
    ns: list[int],
    *,
    num_chains: int,
    num_steps: int,
    num_draws: int,
    step_scale: float = 0.05,
    swap_every: int = 10,
    prior_std: float = 2.0,
    init_scale: float = 0.1,
    r: int = 2,
    seed: int,
) -> TemperedDraws:
    """Replica-exchange Langevin over a ladder of posteriors p(w | D_{n_i}), D_n = data[:n].

    ``data`` (N, c) with N ≥ max(ns); ``ns`` strictly increasing. Each of ``num_chains``
    independent replica sets holds one state per rung, all started from N(0, init_scale²)
    (small random weights, not at any k-gon). Every step moves each state by the Langevin
    update above at its rung (ε_i = step_scale / n_i); every ``swap_every`` steps neighbouring
    rungs (even pairs, then odd pairs, alternately) propose to exchange states, accepted with
    probability min(1, exp(E_i(w_i) + E_j(w_j) − E_i(w_j) − E_j(w_i))), E_i = n_i L_{n_i}
    (the prior is the same at every rung and cancels). This is a valid MCMC move for the
    product of the rung posteriors, so barriers that trap a chain at large n are crossed by
    states that travel down to small n, where the posterior is diffuse, and back. The last
    ``num_draws`` draws are kept, evenly spaced over the second half of the run.

    Parameters
    ----------
    data : torch.Tensor
        (N, c), N ≥ max(ns).
    ns : list of int
        The ladder of sample sizes, strictly increasing.
    num_chains, num_steps, num_draws : int
        Replica sets, steps, and kept draws (at most ``num_steps // 2``).
    step_scale, swap_every, prior_std, init_scale, r, seed
        As described above; ``r`` is the hidden dimension, ``seed`` seeds every draw.

    Returns
    -------
    TemperedDraws
        The kept draws of every rung, swap rates and the mixing diagnostic.
    """
    _check_tempered(
        data, ns, num_chains, num_steps, num_draws, swap_every, (step_scale, prior_std, init_scale)
    )
    R, C, c = len(ns), num_chains, data.shape[1]
    g = torch.Generator().manual_seed(int(seed))
    W = torch.randn(R, C, r, c, generator=g) * init_scale
    b = torch.randn(R, C, c, generator=g) * init_scale
    xs = [data[:n] for n in ns]
    xe = [x.unsqueeze(0).expand(C, -1, -1) for x in xs]
    prec = 1.0 / prior_std**2
    keep = _kept_steps(num_steps, num_draws)
    out_W, out_b, out_visit = [], [], []
    accepted, proposed = torch.zeros(R - 1), torch.zeros(R - 1)
    visited = torch.zeros(R, C, dtype=torch.bool)  # the state now at (rung, chain) was at rung 0
    rounds = 0
    for t in range(num_steps):
        for i in range(R):
            W[i], b[i] = _langevin_step(W[i], b[i], xe[i], ns[i], step_scale / ns[i], prec, g)
        visited[0] = True
        if (t + 1) % swap_every == 0:
            _swap_round(W, b, visited, xs, rounds % 2, accepted, proposed, g)
            rounds += 1
        if t in keep:
            out_W.append(W.clone())
            out_b.append(b.clone())
            out_visit.append(visited.clone())
            visited = torch.zeros(R, C, dtype=torch.bool)
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise FloatingPointError(f"Langevin chains diverged; try a step_scale smaller than {step_scale:g}")
    return TemperedDraws(
        list(ns),
        torch.stack(out_W),
        torch.stack(out_b),
        accepted / proposed.clamp(min=1),
        torch.stack(out_visit).float().mean(0),
    )


def free_energy_crossing(dloss: float, dlambda: float, dconst: float = 0.0) -> float:
    """The n > 1 solving n·ΔL + Δλ·log n + Δc = 0 (the growth-and-form
    study), for ΔL < 0 < Δλ.

    Δ = (phase β) − (phase α). With Δc = 0 the crossing is the seed's formula. Returns nan
    when no crossing exists above n = 1 (e.g. ΔL ≥ 0). Solved by bisection on log n.
    """
    if not dloss < 0:
        return float("nan")
    f = lambda n: n * dloss + dlambda * math.log(n) + dconst  # noqa: E731
    lo, hi = 1.0 + 1e-9, 1.0
    if dlambda <= 0 and dconst <= 0:
        return float("nan")
    # f is concave in n and tends to −∞: find the largest root by bracketing from the right
    hi = 2.0
    while f(hi) > 0 or hi < max(2.0, dlambda / -dloss):
        hi *= 2.0
        if hi > 1e12:
            return float("nan")
    lo = max(dlambda / -dloss, 1.0 + 1e-9)  # f is maximal here
    if f(lo) < 0:
        return float("nan")
    for _ in range(200):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return math.sqrt(lo * hi)


def occupancy_table(draws: TemperedDraws, *, threshold: float = 0.1) -> pd.DataFrame:
    """The share of each k-gon phase among the kept draws of every rung.

    Every draw is classified by its number of hull vertices k
    (:func:`devbook.tms.kgon.classify`); a draw whose exact potential L(w) is above
    ``threshold`` (nowhere near a polygon critical point) is unclassified.

    Returns
    -------
    pandas.DataFrame
        One row per rung: ``n``, ``draws``, the shares ``k5``, ``k6``, ``other`` (any other k)
        and ``unclassified``, ``k6_first`` / ``k6_second`` (the 6-gon share in the first and
        second half of the draws, in draw order: a convergence check) and ``median_loss``.
    """
    rows = []
    for i, n in enumerate(draws.ns):
        c = draws.W.shape[-1]
        W, b = draws.W[:, i].reshape(-1, draws.W.shape[-2], c), draws.b[:, i].reshape(-1, c)
        pot = population_loss(W.double(), b.double()).numpy()
        ks = np.array([classify(W[j], b[j]).k for j in range(len(W))])
        ks[pot > threshold] = -1
        half = len(ks) // 2
        rows.append(
            {
                "n": n,
                "draws": len(ks),
                "k5": float((ks == 5).mean()),
                "k6": float((ks == 6).mean()),
                "other": float(((ks != 5) & (ks != 6) & (ks != -1)).mean()),
                "unclassified": float((ks == -1).mean()),
                "k6_first": float((ks[:half] == 6).mean()),
                "k6_second": float((ks[half:] == 6).mean()),
                "median_loss": float(np.median(pot)),
            }
        )
    return pd.DataFrame(rows)


def occupancy_crossover(occupancy: pd.DataFrame) -> str:
    """Where the 6-gon's share last overtakes the 5-gon's along the ladder, as text.

    The last sign change of (6-gon share − 5-gon share), interpolated linearly in log n.

    Parameters
    ----------
    occupancy : pandas.DataFrame
        As returned by :func:`occupancy_table` (columns ``n``, ``k5``, ``k6``).

    Returns
    -------
    str
        ``"about 640"``; ``"not reached (...)"`` when the 5-gon still holds more draws at the
        top rung; ``"not located"`` when the 6-gon leads at every rung.
    """
    ns = [int(n) for n in occupancy["n"]]
    diff = (occupancy["k6"] - occupancy["k5"]).to_numpy()
    cross = [i for i in range(len(ns) - 1) if diff[i] < 0 <= diff[i + 1]]
    if cross and diff[-1] >= 0:
        i = cross[-1]
        f = diff[i] / (diff[i] - diff[i + 1])
        n = float(np.exp(np.log(ns[i]) + f * (np.log(ns[i + 1]) - np.log(ns[i]))))
        return f"about {n:.0f}"
    if diff[-1] < 0:
        return f"not reached (the 5-gon still holds more draws at n = {ns[-1]})"
    return "not located"


def two_phase_occupancy(ns: np.ndarray, phases: Sequence[tuple[float, float, float]]) -> np.ndarray:
    """Posterior shares of phases with free energies F_n = nL + λ log n + c (Watanabe).

    Parameters
    ----------
    ns : array
        Sample sizes.
    phases : sequence of (L, λ, c)
        One triple per phase.

    Returns
    -------
    numpy.ndarray
        ``(len(phases), len(ns))``: exp(−F) normalised over the phases at each n.
    """
    F = np.stack([ns * L + lam * np.log(ns) + c for L, lam, c in phases])
    P = np.exp(-(F - F.min(0)))
    return P / P.sum(0)
