"""Sparse inputs of the toy model of superposition: x = μ e_i, i uniform in {1..c}, μ ~ U[0, 1].

This is the high-sparsity limit of the seed (``003``): exactly one feature is on. Used by
``book/tms/growth-and-form.md`` for training sets (one per seed) and posterior data sets D_n.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_sparse(n: int, c: int = 6, *, generator: torch.Generator, batch: tuple[int, ...] = ()) -> Tensor:
    """Samples x = μ e_i of dimension ``c``: one non-zero entry μ ~ U[0, 1] at i ~ U{0..c-1}.

    Parameters
    ----------
    n, c : int
        Number of samples and features (>= 1).
    generator : torch.Generator
        The source of randomness (indices are drawn first, then the magnitudes).
    batch : tuple of int
        Leading batch dimensions.

    Returns
    -------
    torch.Tensor
        ``(*batch, n, c)``, float32.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    if not isinstance(c, int) or c < 1:
        raise ValueError(f"c must be a positive int, got {c!r}")
    shape = (*batch, n)
    idx = torch.randint(0, c, shape, generator=generator)
    mu = torch.rand(shape, generator=generator)
    x = torch.zeros(*shape, c)
    x.scatter_(-1, idx.unsqueeze(-1), mu.unsqueeze(-1))
    return x
