"""Models whose learning coefficient λ is known exactly (paper App. A.1; Watanabe 2009; Aoyagi
and Watanabe 2005 for reduced-rank regression).

Each builder returns a :class:`KnownCase`: a model sitting at a minimum w* of its empirical
loss L_n, a ``loss_fn(model, batch)`` and ``data`` in the form :func:`devbook.llc.estimate_llc`
takes, the true λ, and SGLD settings that recover it. Used by tests/test_llc.py and by the
theory chapter book/theory/llc.md (through devbook.theory: its level sets of potentials, its
table and figure of true vs estimated λ, and its failure modes).

Potential-type cases (``quadratic``, ``power_sum``, ``normal_crossing``) are data-free: the
loss is L(w) = K(w) and ``data`` is a dummy tensor of one row (batch_size 1), so
nβ·L = nβ·K is the potential. ``polynomial_model`` and ``reduced_rank_regression`` are
regressions on Gaussian data with Gaussian noise; the noise is projected off the span of the
inputs, so the least-squares fit equals the true parameter exactly and w* is an exact minimum
of L_n lying on the most singular part of the set of true parameters (where Aoyagi's λ holds).
All cases are float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from devbook.llc import SGLDConfig

Batch = tuple[torch.Tensor, ...]
DTYPE = torch.float64


@dataclass(frozen=True)
class KnownCase:
    """One model with known λ at w* (its current parameters). ``sgld`` holds SGLDConfig
    keyword arguments that recover λ within the tolerance stated in tests/test_llc.py."""

    name: str
    model: nn.Module
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor]
    data: Batch
    true_lambda: float
    w_star: dict[str, torch.Tensor]
    description: str
    sgld: dict[str, Any] = field(default_factory=dict)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def config(self, **overrides: Any) -> SGLDConfig:
        """The suggested SGLDConfig, with any field overridden."""
        return SGLDConfig(**{**self.sgld, **overrides})


def _case(
    name: str, model: nn.Module, loss_fn: Callable, data: Batch, lam: float, desc: str, sgld: dict[str, Any]
) -> KnownCase:
    w_star = {k: p.detach().clone() for k, p in model.named_parameters()}
    return KnownCase(name, model, loss_fn, data, float(lam), w_star, desc, sgld)


class Potential(nn.Module):
    """A data-free loss K(w) of a parameter vector w (d,), with w* = 0."""

    def __init__(self, dim: int, potential: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(dim, dtype=DTYPE))
        self.potential = potential

    def forward(self) -> torch.Tensor:
        return self.potential(self.w)


def potential_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """loss_fn of the potential cases: K(w), ignoring the (dummy) batch."""
    return model()


def _dummy() -> Batch:
    return (torch.zeros(1, 1, dtype=DTYPE),)


def _check_ints(name: str, values: Sequence[int], low: int) -> tuple[int, ...]:
    vals = tuple(values)
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in vals):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= {low}, got {values!r}")
    return vals


def quadratic(curvatures: Sequence[float]) -> KnownCase:
    """K(w) = ½ Σ h_i w_i² with all h_i > 0: nondegenerate, λ = d/2 whatever the curvatures."""
    h = tuple(float(c) for c in curvatures)
    if not h or any(not math.isfinite(c) or c <= 0 for c in h):
        raise ValueError(f"curvatures must be a non-empty sequence of positive numbers, got {curvatures!r}")
    ht = torch.tensor(h, dtype=DTYPE)
    model = Potential(len(h), lambda w: 0.5 * (ht * w**2).sum())
    nbeta = 1000.0
    # ε·nβ·h_max = 0.12: SGLD's discretisation bias (+ε·nβ·h/4 relative) is 3% on the stiffest
    # coordinate; the softest mixes in ~2/(ε·nβ·h_min) steps.
    sgld = dict(
        epsilon=0.12 / (nbeta * max(h)),
        gamma=1.0,
        nbeta=nbeta,
        num_chains=64,
        num_draws=1000,
        num_burnin=200,
        batch_size=1,
    )
    return _case(f"quadratic{h}", model, potential_loss, _dummy(), len(h) / 2, f"½ Σ h_i w_i², h = {h}", sgld)


def power_sum(half_powers: Sequence[int]) -> KnownCase:
    """K(w) = Σ_i w_i^{2k_i} at 0: λ = Σ_{k_i > 0} 1/(2k_i); k_i = 0 marks an unused coordinate."""
    k = _check_ints("half_powers", half_powers, 0)
    if not any(k):
        raise ValueError("power_sum needs at least one used coordinate (k_i > 0)")
    kt = torch.tensor(k, dtype=DTYPE)
    used = torch.nonzero(kt > 0).squeeze(1)
    model = Potential(len(k), lambda w: (w[used] ** (2 * kt[used])).sum())
    terms = " + ".join(f"w{i + 1}^{2 * ki}" for i, ki in enumerate(k) if ki)
    unused = [i + 1 for i, ki in enumerate(k) if not ki]
    desc = terms + (f" (unused: w{', w'.join(map(str, unused))})" if unused else "")
    # Without localization E[nβ w^{2k}] = 1/(2k) exactly at any nβ; small γ only bounds unused
    # coordinates. nβ = 100 keeps quadratic and higher-power coordinates similarly fast.
    sgld = dict(
        epsilon=6e-4, gamma=0.1, nbeta=100.0, num_chains=64, num_draws=1000, num_burnin=200, batch_size=1
    )
    return _case(
        f"power_sum{k}", model, potential_loss, _dummy(), sum(1 / (2 * ki) for ki in k if ki), desc, sgld
    )


def normal_crossing(half_powers: Sequence[int]) -> KnownCase:
    """K(w) = Π_i w_i^{2k_i} at 0: λ = min_i 1/(2k_i) (the log-multiplicity is not modelled)."""
    k = _check_ints("half_powers", half_powers, 1)
    kt = torch.tensor(k, dtype=DTYPE)
    model = Potential(len(k), lambda w: (w ** (2 * kt)).prod())
    # The posterior is a funnel along the axes: a 3x smaller ε (6e-4) mixes too slowly and
    # reads w1²·w2⁴ ~25% low. With multiplicity > 1 (the minimum 1/(2k_i) attained twice, e.g.
    # w1²·w2²) the estimate at finite nβ sits below λ by a log correction (~0.43 for λ = 1/2).
    sgld = dict(
        epsilon=2e-3, gamma=0.1, nbeta=100.0, num_chains=64, num_draws=1000, num_burnin=200, batch_size=1
    )
    return _case(
        f"normal_crossing{k}",
        model,
        potential_loss,
        _dummy(),
        min(1 / (2 * ki) for ki in k),
        " · ".join(f"w{i + 1}^{2 * ki}" for i, ki in enumerate(k)),
        sgld,
    )


def _orthogonal_noise(x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Remove from ``noise`` (n, N) its projection on the column span of ``x`` (n, M)."""
    q, _ = torch.linalg.qr(x)
    return noise - q @ (q.T @ noise)


def mse_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """loss_fn of the regression cases: ½ mean_i ||y_i − model(x_i)||² (Gaussian NLL up to a constant)."""
    x, y = batch
    return 0.5 * ((y - model(x)) ** 2).sum(-1).mean()


class PolynomialModel(nn.Module):
    """ŷ = x · Π_i w_i^{p_i} for scalar x (shape (n, 1) → (n, 1))."""

    def __init__(self, powers: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("powers", torch.tensor(powers, dtype=DTYPE))
        self.w = nn.Parameter(torch.zeros(len(powers), dtype=DTYPE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.w**self.powers).prod()


def polynomial_model(
    powers: Sequence[int], n: int = 4096, seed: int = 0, noise_std: float = 0.1
) -> KnownCase:
    """ŷ = x · Π w_i^{p_i} with x ~ N(0, 1), y = noise ⟂ x (std ``noise_std``), at w = 0:
    λ = 1/(2 max_i p_i). λ does not depend on the noise level; small noise keeps the
    recycled minibatch losses, multiplied by nβ, from swamping the estimate."""
    p = _check_ints("powers", powers, 1)
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=gen, dtype=DTYPE)
    y = noise_std * _orthogonal_noise(x, torch.randn(n, 1, generator=gen, dtype=DTYPE))
    sgld = dict(
        epsilon=2e-3,
        gamma=0.1,
        nbeta=100.0,
        num_chains=64,
        num_draws=1000,
        num_burnin=200,
        batch_size=min(128, n),
    )
    return _case(
        f"polynomial{p}",
        PolynomialModel(p),
        mse_loss,
        (x, y),
        1 / (2 * max(p)),
        "ŷ = x·" + "·".join(f"w{i + 1}^{pi}" for i, pi in enumerate(p)),
        sgld,
    )


def aoyagi_lambda(M: int, H: int, N: int, r: int) -> float:
    """Learning coefficient of reduced-rank regression y = BAx (A: H×M, B: N×H) at a true
    parameter of rank r (Aoyagi & Watanabe 2005), with its four cases: (HM − Hr + Nr)/2 if
    M + H < N + r; (HN − Hr + Mr)/2 if N + H < M + r; MN/2 if M + N < H + r; otherwise
    [2(H + r)(M + N) − (M − N)² − (H + r)²]/8, plus 1/8 when M + H + N + r is odd."""
    for name, v in (("M", M), ("H", H), ("N", N)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")
    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r <= min(M, H, N):
        raise ValueError(f"r must be an int with 0 <= r <= min(M, H, N) = {min(M, H, N)}, got {r!r}")
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    if M + N < H + r:
        return M * N / 2
    lam = (2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2) / 8
    return lam + 1 / 8 if (M + H + N + r) % 2 else lam


class ReducedRank(nn.Module):
    """ŷ = B A x with A: H×M, B: N×H (x: (n, M) → (n, N))."""

    def __init__(self, A: torch.Tensor, B: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())
        self.B = nn.Parameter(B.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.A.T @ self.B.T


def reduced_rank_minimum(x: torch.Tensor, y: torch.Tensor, H: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact minimiser (A, B) of ½ mean ||y − BAx||² over rank ≤ H: the OLS fit C truncated to
    rank H in the metric of the input covariance S = xᵀx/n (SVD of C S^{1/2}), factored as
    B = U D^{1/2}, A = D^{1/2} Vᵀ S^{-1/2}; numerically-zero singular values become exact zeros."""
    n = x.shape[0]
    c_ols = torch.linalg.lstsq(x, y).solution.T  # (N, M)
    evals, evecs = torch.linalg.eigh(x.T @ x / n)
    s_half = evecs @ torch.diag(evals.sqrt()) @ evecs.T
    s_inv_half = evecs @ torch.diag(evals.rsqrt()) @ evecs.T
    u, d, vt = torch.linalg.svd(c_ols @ s_half)
    k = min(H, int((d > 1e-9 * max(float(d[0]), 1e-300)).sum()))
    A = torch.zeros(H, x.shape[1], dtype=x.dtype)
    B = torch.zeros(y.shape[1], H, dtype=x.dtype)
    B[:, :k] = u[:, :k] * d[:k].sqrt()
    A[:k] = d[:k].sqrt()[:, None] * vt[:k] @ s_inv_half
    return A, B


def reduced_rank_regression(
    M: int,
    H: int,
    N: int,
    r: int,
    n: int = 8192,
    seed: int = 0,
    noise_std: float = 0.1,
    orthogonal_noise: bool = True,
) -> KnownCase:
    """y = C₀x + ξ with C₀ of rank r (singular values in [1, 2]), x ~ N(0, I_M),
    ξ ~ N(0, noise_std² I_N);
    the model ŷ = BAx starts at the exact empirical minimum (:func:`reduced_rank_minimum`).
    With ``orthogonal_noise`` the noise is projected off the span of x, so the OLS fit is C₀
    itself and w* is an exact minimum of rank r (Aoyagi's λ then holds as nβ → ∞); without
    it, the minimum has rank min(H, M, N) with extra singular values O(n^{-1/2})."""
    lam = aoyagi_lambda(M, H, N, r)
    if n < M + 1:
        raise ValueError(f"n must exceed M = {M}, got {n}")
    gen = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(N, N, generator=gen, dtype=DTYPE))
    v, _ = torch.linalg.qr(torch.randn(M, M, generator=gen, dtype=DTYPE))
    sv = 1 + torch.rand(r, generator=gen, dtype=DTYPE)
    c0 = u[:, :r] @ torch.diag(sv) @ v[:, :r].T
    x = torch.randn(n, M, generator=gen, dtype=DTYPE)
    noise = torch.randn(n, N, generator=gen, dtype=DTYPE)
    y = x @ c0.T + noise_std * (_orthogonal_noise(x, noise) if orthogonal_noise else noise)
    A, B = reduced_rank_minimum(x, y, H)
    sgld = dict(
        epsilon=2e-4,
        gamma=1.0,
        nbeta=300.0,
        num_chains=32,
        num_draws=1000,
        num_burnin=200,
        batch_size=min(128, n),
    )
    return _case(
        f"rrr(M={M},H={H},N={N},r={r})",
        ReducedRank(A, B),
        mse_loss,
        (x, y),
        lam,
        f"reduced-rank regression M={M}, H={H}, N={N}, true rank r={r}",
        sgld,
    )


def known_cases() -> list[KnownCase]:
    """The cases of the tests and of the theory chapter's table (≥ 8, all with exact λ)."""
    return [
        quadratic((1.0, 3.0, 10.0)),
        power_sum((1, 2)),
        power_sum((2, 2, 3)),
        power_sum((1, 2, 0)),
        normal_crossing((1, 2)),
        polynomial_model((2,)),
        polynomial_model((1, 2)),
        reduced_rank_regression(3, 1, 3, 1),
        reduced_rank_regression(4, 2, 2, 1),
        reduced_rank_regression(2, 4, 2, 1),
        reduced_rank_regression(5, 2, 3, 1),
    ]
