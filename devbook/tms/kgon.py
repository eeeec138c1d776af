"""k-gon critical points of the TMS (r = 2): build them, optimise them, and classify parameters.

A parameter w = (W, b) is named ``k^{σ+, φ−}`` (as in the "growth and form" study of the TMS):
k is the number of vertices of the convex hull of the columns of W that have non-negligible
norm, σ the number of positive biases and φ the number of large negative biases. Labels are
strings such as ``"6"``, ``"5+"`` or ``"4++-"`` (ASCII minus). :data:`STUDY_TABLE` holds the
study's values for the 5- and 6-gon. Used by ``book/tms/growth-and-form.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError
from torch import Tensor

from devbook.tms.model import population_loss

STUDY_TABLE: dict[str, tuple[float, float, float]] = {
    "5": (0.06874, 7.0, 3.62417),
    "6": (0.04819, 8.5, 6.37767),
}
"""The growth-and-form study's loss L, learning coefficient λ and free-energy constant c of the
5-gon and the 6-gon (its table of critical points), for ``F_n ≈ nL + λ log n + c``."""


@dataclass(frozen=True)
class KGon:
    """The class of one parameter: ``k`` hull vertices, ``sigma`` positive and ``phi`` large
    negative biases."""

    k: int
    sigma: int
    phi: int

    @property
    def label(self) -> str:
        return f"{self.k}" + "+" * self.sigma + "-" * self.phi


def _hull_directions(points: np.ndarray, angle_tol: float) -> int:
    """Number of distinct directions (to ``angle_tol`` radians) among convex-hull vertices."""
    if len(points) == 0:
        return 0
    try:
        verts = points[ConvexHull(points).vertices] if len(points) >= 3 else points
    except QhullError:  # all points on a line through... anything: use every point
        verts = points
    angles = np.sort(np.mod(np.arctan2(verts[:, 1], verts[:, 0]), 2 * math.pi))
    gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * math.pi]))
    return max(1, int((gaps > angle_tol).sum())) if len(angles) > 1 else 1


def classify(
    W: Tensor,
    b: Tensor,
    *,
    norm_tol: float = 0.25,
    bias_tol: float = 0.02,
    angle_tol: float = 0.2,
) -> KGon:
    """Name the k-gon of one parameter.

    - a column counts if its norm exceeds ``norm_tol`` × the largest column norm;
    - k: distinct directions (merged within ``angle_tol`` rad) among the convex-hull vertices of
      the counted columns (for fewer than 3 points, or collinear ones, among all of them);
    - σ: biases above ``bias_tol``;
    - φ: biases below −``bias_tol`` whose unit is dead on every input μe_i, μ ∈ [0, 1]
      (b_j + max_i max(W_j·W_i, 0) ≤ 0): "large" means large enough to switch the unit off.

    Parameters
    ----------
    W, b : torch.Tensor
        ``W`` (2, c), ``b`` (c,).
    norm_tol, bias_tol, angle_tol : float
        The tolerances above.

    Returns
    -------
    KGon
        ``k``, ``sigma``, ``phi`` (and ``label``).
    """
    if W.dim() != 2 or W.shape[0] != 2 or b.shape != (W.shape[1],):
        raise ValueError(
            f"classify needs W of shape (2, c) and b of shape (c,); got {tuple(W.shape)}, {tuple(b.shape)}"
        )
    Wn = W.detach().double().cpu().numpy()
    bn = b.detach().double().cpu().numpy()
    norms = np.linalg.norm(Wn, axis=0)
    keep = norms > norm_tol * max(norms.max(), 1e-12)
    k = _hull_directions(Wn[:, keep].T, angle_tol) if norms.max() > 1e-8 else 0
    gram = Wn.T @ Wn
    reach = np.clip(gram, 0.0, None).max(axis=1)  # largest pre-activation over inputs, minus b
    sigma = int((bn > bias_tol).sum())
    phi = int(((bn < -bias_tol) & (bn + reach <= 0)).sum())
    return KGon(k, sigma, phi)


def label_k(label: str) -> int:
    """The number of hull vertices k of a label.

    Parameters
    ----------
    label : str
        A k-gon label such as ``"5+"`` or ``"4++-"``.

    Returns
    -------
    int
    """
    return int(label.rstrip("+-") or 0)


def classify_many(W: Tensor, b: Tensor, **tols: float) -> list[str]:
    """Labels of a batch of parameters.

    Parameters
    ----------
    W, b : torch.Tensor
        ``W`` (S, 2, c), ``b`` (S, c).
    **tols : float
        Tolerances of :func:`classify`.

    Returns
    -------
    list of str
        S labels.
    """
    return [classify(W[s], b[s], **tols).label for s in range(W.shape[0])]


def make_kgon(
    k: int,
    c: int = 6,
    *,
    sigma: int = 0,
    phi: int = 0,
    radius: float = 1.0,
    vertex_bias: float = 0.0,
    rotation: float = 0.0,
) -> tuple[Tensor, Tensor]:
    """A hand-built k-gon: columns 0..k-1 on a regular polygon of ``radius``, the other c − k
    columns zero; of those, ``sigma`` get bias +1/(2c) (the best constant output) and ``phi``
    bias −1. Returns ``W`` (2, c), ``b`` (c,) in float64."""
    if not 1 <= k <= c or sigma < 0 or phi < 0 or k + sigma + phi > c:
        raise ValueError(
            f"need 1 <= k <= c and k + sigma + phi <= c; got k={k}, sigma={sigma}, phi={phi}, c={c}"
        )
    theta = torch.arange(k, dtype=torch.float64) * 2 * math.pi / k + rotation
    W = torch.zeros(2, c, dtype=torch.float64)
    W[0, :k], W[1, :k] = radius * torch.cos(theta), radius * torch.sin(theta)
    b = torch.zeros(c, dtype=torch.float64)
    b[:k] = vertex_bias
    b[k : k + sigma] = 1.0 / (2 * c)
    b[k + sigma : k + sigma + phi] = -1.0
    return W, b


def optimise_kgon(
    k: int, c: int = 6, *, sigma: int = 0, phi: int = 0, max_iter: int = 100
) -> tuple[Tensor, Tensor, float]:
    """The k-gon critical point nearest :func:`make_kgon`: L-BFGS on the exact population loss
    (float64) with the zero columns held at zero. Returns ``W``, ``b`` and L(w*)."""
    W0, b0 = make_kgon(k, c, sigma=sigma, phi=phi)
    mask = (W0.norm(dim=0) > 0).to(W0.dtype)
    W, b = W0.clone().requires_grad_(), b0.clone().requires_grad_()
    opt = torch.optim.LBFGS(
        [W, b],
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        loss = population_loss(W * mask, b)
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        W_star = W * mask
        return W_star, b.detach().clone(), float(population_loss(W_star, b))
