"""The toy model of superposition (TMS) f(x) = ReLU(WᵀW x + b), batched over many parameters.

Shapes: one parameter is ``W`` (r, c) and ``b`` (c,); a batch of S parameters (e.g. S training
seeds or S SGLD chains) is ``W`` (S, r, c) and ``b`` (S, c). Inputs ``x`` are (N, c), shared by
all S, or (S, N, c), one data set per parameter. Used by ``book/tms/growth-and-form.md``.

Besides the empirical loss ``||x - f(x)||²`` averaged over samples, :func:`population_loss`
gives the exact TMS potential L(w) = E[||x - f(x)||²] for the high-sparsity data of the seed
(x = μ e_i, i uniform, μ ~ U[0, 1]) in closed form: every term is a piecewise quadratic in μ.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _check_params(W: Tensor, b: Tensor) -> None:
    if W.dim() < 2 or b.dim() != W.dim() - 1 or b.shape[-1] != W.shape[-1]:
        raise ValueError(
            f"W must be (..., r, c) and b (..., c) with matching c; got W {tuple(W.shape)}, "
            f"b {tuple(b.shape)}"
        )
    if W.shape[:-2] != b.shape[:-1]:
        raise ValueError(f"batch shapes differ: W {tuple(W.shape)}, b {tuple(b.shape)}")


def forward(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """f(x) = ReLU(WᵀW x + b), for one parameter or a batch of them.

    Parameters
    ----------
    W, b : torch.Tensor
        ``W`` (r, c) or (S, r, c), ``b`` (c,) or (S, c).
    x : torch.Tensor
        ``x`` (N, c) (broadcast over S) or (S, N, c).

    Returns
    -------
    torch.Tensor
        The shape of x, with a leading S when W is batched.
    """
    _check_params(W, b)
    if x.shape[-1] != W.shape[-1]:
        raise ValueError(f"x has {x.shape[-1]} features but W has c = {W.shape[-1]} columns")
    h = torch.matmul(x, W.transpose(-1, -2))  # (..., N, r)
    return torch.relu(torch.matmul(h, W) + b.unsqueeze(-2))


def empirical_loss(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """L_n(w) = mean over samples of ||x − f(x)||².

    Parameters
    ----------
    W, b, x : torch.Tensor
        As in :func:`forward`.

    Returns
    -------
    torch.Tensor
        Shape () or (S,) for batched W.
    """
    return ((x - forward(W, b, x)) ** 2).sum(-1).mean(-1)


def _active_interval(alpha: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """[lo, hi] ⊂ [0, 1] where alpha·μ + beta > 0 (an empty interval has lo = hi)."""
    safe = torch.where(alpha == 0, torch.ones_like(alpha), alpha)
    root = (-beta / safe).clamp(0.0, 1.0)
    pos, zero = alpha > 0, alpha == 0
    lo = torch.where(pos, root, torch.zeros_like(root))
    hi = torch.where(pos, torch.ones_like(root), root)
    hi = torch.where(zero, (beta > 0).to(alpha.dtype), hi)
    lo = torch.where(zero, torch.zeros_like(lo), lo)
    return lo, torch.maximum(hi, lo)


def _int_quadratic(p: Tensor, q: Tensor, lo: Tensor, hi: Tensor) -> Tensor:
    """∫_lo^hi (p·μ + q)² dμ, expanded so that p = 0 is not a special case."""
    return p**2 * (hi**3 - lo**3) / 3 + p * q * (hi**2 - lo**2) + q**2 * (hi - lo)


def population_loss(W: Tensor, b: Tensor) -> Tensor:
    """Exact TMS potential L(W, b) = E||x − f(x)||², x = μ e_i, i ~ U{1..c}, μ ~ U[0, 1].

    With a = WᵀW, input μe_i gives output j equal to ReLU(μ a_ji + b_j), so
    L = (1/c) Σ_i [ E(μ − ReLU(μ a_ii + b_i))² + Σ_{j≠i} E ReLU(μ a_ji + b_j)² ],
    each expectation an integral of a quadratic over the interval where the unit is active.
    Returns shape () or (S,). Differentiable in W and b.
    """
    _check_params(W, b)
    c = W.shape[-1]
    a = torch.matmul(W.transpose(-1, -2), W)  # (..., c, c): a[j, i] = W_j · W_i
    beta = b.unsqueeze(-1).expand_as(a)  # beta[j, i] = b_j
    lo, hi = _active_interval(a, beta)
    off = _int_quadratic(a, beta, lo, hi)  # E ReLU(μ a_ji + b_j)² for every (j, i)
    eye = torch.eye(c, dtype=W.dtype, device=W.device).bool()
    diag_a = torch.diagonal(a, dim1=-2, dim2=-1)
    dlo, dhi = torch.diagonal(lo, dim1=-2, dim2=-1), torch.diagonal(hi, dim1=-2, dim2=-1)
    # on the active part μ² is replaced by (μ − a μ − b)²
    gain = _int_quadratic(torch.ones_like(diag_a), torch.zeros_like(diag_a), dlo, dhi) - (
        _int_quadratic(1 - diag_a, -b, dlo, dhi)
    )
    own = 1.0 / 3.0 - gain
    cross = off.masked_fill(eye, 0.0).sum(-2)  # Σ_{j≠i}, indexed by input i
    return (own + cross).mean(-1)


class TMSModel(nn.Module):
    """One TMS parameter as an ``nn.Module`` (for ``devbook.llc.estimate_llc``).

    ``W``: (r, c), ``b``: (c,). ``forward(x)`` maps (N, c) to (N, c).
    """

    def __init__(self, W: Tensor, b: Tensor) -> None:
        super().__init__()
        _check_params(W, b)
        if W.dim() != 2:
            raise ValueError(f"TMSModel holds one parameter: W must be (r, c), got {tuple(W.shape)}")
        self.W = nn.Parameter(W.detach().clone())
        self.b = nn.Parameter(b.detach().clone())

    def forward(self, x: Tensor) -> Tensor:
        return forward(self.W, self.b, x)


def tms_loss_fn(model: nn.Module, batch: tuple[Tensor, ...]) -> Tensor:
    """Mean over the batch of ||x − f(x)||²: the ``loss_fn(model, batch)`` of ``devbook.llc``.

    Parameters
    ----------
    model : torch.nn.Module
        A :class:`TMSModel` (or anything mapping (N, c) to (N, c)).
    batch : tuple of torch.Tensor
        ``(x,)`` with x (N, c) (extra entries are ignored).

    Returns
    -------
    torch.Tensor
        A scalar.
    """
    (x,) = batch[:1]
    return ((x - model(x)) ** 2).sum(-1).mean()
