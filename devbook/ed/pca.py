"""Trajectory PCA of a functional proxy over checkpoints (paper §3.2, App. E.1.4, E.2.5).

Rows of ``proxies`` are checkpoints, columns the entries of the functional proxy (e.g. the
model's outputs on a fixed input set, flattened). :func:`trajectory_pca` runs scikit-learn's
PCA (randomised SVD when the matrix is large) and keeps what is needed to map a point of PC
space back to function space: ``mean + point @ components``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.decomposition import PCA

RANDOMIZED_ABOVE = 100  # randomised SVD when both sides exceed this and k is under a tenth
BLOCK = 1 << 22  # entries per block for full-space passes (32 MiB of float64)


def block_rows(dim: int) -> int:
    """Rows per block of a full-space pass over ``dim`` columns."""
    return max(1, min(512, BLOCK // max(dim, 1)))


@dataclass(frozen=True)
class TrajectoryPCA:
    """PCA of a trajectory: ``scores`` ``(T, k)``, ``explained_variance_ratio`` ``(k,)``,
    ``components`` ``(k, D)`` (orthonormal rows), ``mean`` ``(D,)``."""

    scores: NDArray[np.float64]
    explained_variance_ratio: NDArray[np.float64]
    components: NDArray[np.floating]
    mean: NDArray[np.floating]

    @property
    def n_components(self) -> int:
        return int(self.scores.shape[1])

    def to_function_space(self, points: ArrayLike) -> NDArray[np.float64]:
        """Points of PC space ``(..., k)`` as points of function space ``(..., D)``."""
        pts = np.asarray(points, dtype=np.float64)
        return self.mean.astype(np.float64) + pts @ self.components.astype(np.float64)

    def project(self, x: ArrayLike) -> NDArray[np.float64]:
        """PC scores of function-space points ``(..., D)``."""
        arr = np.asarray(x, dtype=np.float64)
        return (arr - self.mean) @ self.components.T.astype(np.float64)


def check_proxies(proxies: ArrayLike, name: str = "proxies") -> NDArray[np.floating]:
    """``proxies`` as a finite 2-D float array (float32 is kept, anything else becomes float64)."""
    arr = np.asarray(proxies)
    if arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    if arr.ndim != 2:
        raise ValueError(f"{name} must have shape (checkpoints, dimensions), got {arr.shape}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} needs at least 2 checkpoints and 1 dimension, got {arr.shape}")
    rows = block_rows(arr.shape[1])
    for i in range(0, len(arr), rows):
        finite = np.isfinite(arr[i : i + rows]).all(axis=1)
        if not finite.all():
            first = i + int(np.flatnonzero(~finite)[0])
            raise ValueError(f"{name} contains NaN or infinite values (first in row {first})")
    return arr


def trajectory_pca(proxies: ArrayLike, n_components: int, *, seed: int = 0) -> TrajectoryPCA:
    """PCA over checkpoints of ``proxies`` ``(T, D)`` with ``n_components`` components.

    Uses ``sklearn.decomposition.PCA``, with the randomised solver (seeded by ``seed``) when
    both T and D exceed 100 and ``n_components`` is under a tenth of the smaller; the exact solver
    otherwise. float32 input is kept in float32 (scores are returned in float64).
    """
    x = check_proxies(proxies)
    limit = min(x.shape)
    if not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components must be in [1, {limit}] for proxies of shape {x.shape}, got {n_components}"
        )
    randomized = limit > RANDOMIZED_ABOVE and n_components < 0.1 * limit
    pca = PCA(
        n_components=n_components,
        svd_solver="randomized" if randomized else "full",
        random_state=seed if randomized else None,
    )
    scores = pca.fit_transform(x).astype(np.float64)
    return TrajectoryPCA(scores, pca.explained_variance_ratio_.astype(np.float64), pca.components_, pca.mean_)


def squared_distances(proxies: ArrayLike, point: ArrayLike) -> NDArray[np.float64]:
    """``|x_t − point|²`` for every row ``x_t`` of ``proxies``, in blocks (float64 sums)."""
    x = np.asarray(proxies)
    p = np.asarray(point, dtype=np.float64)
    if p.shape != (x.shape[1],):
        raise ValueError(f"point must have shape ({x.shape[1]},), got {p.shape}")
    out = np.empty(len(x))
    rows = block_rows(x.shape[1])
    for i in range(0, len(x), rows):
        block = x[i : i + rows].astype(np.float64) - p
        out[i : i + rows] = np.einsum("ij,ij->i", block, block)
    return out
