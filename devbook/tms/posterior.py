"""Sampling the TMS posterior over the whole parameter space (no localization), vectorised.

The posterior of the seed is p(w | D_n) ∝ exp(−n L_n(w)) φ(w); here φ is N(0, prior_std² I).
Unlike ``devbook.llc`` (which keeps only losses and pulls chains back to w* with γ), this
sampler returns the draws themselves so that each can be classified into a k-gon phase.
Update (SPEC §1 with γ = 0, nβ = n, full-batch gradient, plus the prior's gradient):

    w ← w + (ε/2) · ( −n ∇L_n(w) − w / prior_std² ) + N(0, ε I)

All C chains advance together: ``W`` (C, r, c), ``b`` (C, c). Used by
``book/tms/growth-and-form.md`` (the Bayesian phase transition).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from devbook.tms.train import loss_grad


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
    ``num_steps`` steps are returned, evenly spaced over the second half of the run:
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
    keep = set(
        torch.linspace(num_steps // 2, num_steps - 1, num_draws).round().long().tolist()
    )
    out_W, out_b = [], []
    half, root, prec = epsilon / 2, math.sqrt(epsilon), 1.0 / prior_std**2
    for t in range(num_steps):
        dW, db = loss_grad(W, b, x)
        W = W + half * (-n * dW - prec * W) + root * torch.randn(W.shape, generator=g)
        b = b + half * (-n * db - prec * b) + root * torch.randn(b.shape, generator=g)
        if t in keep:
            out_W.append(W.clone())
            out_b.append(b.clone())
    if not (torch.isfinite(W).all() and torch.isfinite(b).all()):
        raise FloatingPointError(f"Langevin chains diverged; try an epsilon smaller than {epsilon:g}")
    return torch.stack(out_W), torch.stack(out_b)


def free_energy_crossing(dloss: float, dlambda: float, dconst: float = 0.0) -> float:
    """The n > 1 solving n·ΔL + Δλ·log n + Δc = 0 (seed 003), for ΔL < 0 < Δλ.

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
