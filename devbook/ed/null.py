"""Surrogate trajectories for the null test of forms (paper App. B.7).

Two families, each pushed through the same pipeline as the observed trajectory:

- :func:`walk_surrogate`: a random walk with the observed step lengths in isotropic random
  directions of the full function space R^D. Its PC scores depend only on its Gram matrix, so
  for D ≥ T − 1 it is drawn exactly in distribution in T − 1 dimensions: the steps
  ``diag(ℓ/|z_t|) Z`` with ``Z`` a (T−1)×D Gaussian matrix have the Gram matrix of
  ``diag(ℓ/|b_t|) B`` with ``B`` the lower-triangular Bartlett factor of ``ZZᵀ ~ Wishart(D)``
  (χ on the diagonal, N(0, 1) below it). This costs T² instead of T·D.
- :func:`phase_surrogate`: the observed PC scores with randomised Fourier phases, drawn
  independently for each PC: every score keeps its power spectrum, the coordination between
  PCs (where forms live) is destroyed. The straight line from the first to the last value is
  removed first and added back. (Sharing the phases across PCs, as Prichard & Theiler 1994
  do to keep cross-spectra, makes nearly proportional scores stay proportional: the surrogate
  curve folds onto a line and every turn is a cusp in all planes at once.)
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from devbook.ed.pca import block_rows


def step_lengths(proxies: ArrayLike) -> NDArray[np.float64]:
    """``|x_{t+1} − x_t|`` in the full function space, ``(T − 1,)``."""
    x = np.asarray(proxies)
    out = np.empty(len(x) - 1)
    chunk = block_rows(x.shape[1])
    for i in range(0, len(x) - 1, chunk):
        block = np.diff(x[i : i + chunk + 1].astype(np.float64), axis=0)
        out[i : i + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def walk_surrogate(lengths: ArrayLike, dim: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """A random walk from 0 with steps of the given ``lengths`` in random directions of R^dim.

    Returns ``(len(lengths) + 1, min(dim, len(lengths)))`` positions whose PCA has the
    distribution of the walk's PCA in R^dim (see the module docstring).
    """
    ell = np.asarray(lengths, dtype=np.float64)
    n = ell.size
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if dim >= n:
        z = np.tril(rng.standard_normal((n, n), dtype=np.float32), -1)
        z[np.diag_indices(n)] = np.sqrt(rng.chisquare(dim - np.arange(n))).astype(np.float32)
    else:
        z = rng.standard_normal((n, dim), dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", z, z, dtype=np.float64))
    z *= (ell / np.maximum(norms, 1e-300)).astype(np.float32)[:, None]
    walk = np.zeros((n + 1, z.shape[1]), dtype=np.float32)
    np.cumsum(z, axis=0, out=walk[1:])
    return walk


def phase_surrogate(scores: ArrayLike, rng: np.random.Generator) -> NDArray[np.float64]:
    """``scores`` ``(T, k)`` with randomised Fourier phases, independent for each column."""
    x = np.asarray(scores, dtype=np.float64)
    n = len(x)
    line = x[0] + np.linspace(0.0, 1.0, n)[:, None] * (x[-1] - x[0])
    spec = np.fft.rfft(x - line, axis=0)
    phase = np.exp(2j * np.pi * rng.random(spec.shape))
    phase[0] = 1.0
    if n % 2 == 0:
        phase[-1] = 1.0
    return np.fft.irfft(spec * phase, n=n, axis=0) + line
