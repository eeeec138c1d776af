"""Curvature of the loss: Hessian-vector products, Hutchinson trace, Lanczos eigenvalues.

The paper contrasts the LLC (degeneracy) with the curvature of the loss Hessian, its trace and
largest eigenvalues, computed with PyHessian over one batch of samples (App. D.1.3). This
module computes the same statistics for any ``loss_fn(model, batch)`` of the
:mod:`devbook.llc` convention:

- :class:`HessianOperator`: the Hessian H of the batch loss at the model's current parameters
  as a linear operator on flat parameter vectors. ``H @ V`` is forward-over-reverse
  (``torch.func.jvp`` of ``torch.func.grad``), vectorised over the rows of ``V`` with
  ``torch.func.vmap``; the model is called through ``functional_call`` on a copy of its
  parameters, so it is never modified (no ``.grad``, no in-place change);
- :func:`hessian_trace`: Hutchinson's estimator tr H ≈ mean_i v_iᵀ H v_i with Rademacher
  probes v_i, probe i drawn from its own generator seeded by (seed, i): the same probes at every
  checkpoint, whatever the chunking;
- :func:`top_eigenvalues`: the k algebraically largest eigenvalues (and, on request, the most
  negative one) by implicitly restarted Lanczos (scipy's ``eigsh`` on a ``LinearOperator``);
- :func:`full_hessian`: the dense d × d Hessian, d products with the unit vectors.

Why forward-over-reverse: it is exact to rounding against reverse-over-reverse and finite
differences (tests/test_hessian.py), and under ``vmap`` the primal forward and backward are
shared by all vectors of a chunk. Forward-over-forward (``jvp`` of ``jvp``, vᵀHv without a
backward pass) is not used: in torch 2.13 it gave wrong second derivatives through
``layer_norm`` (vᵀHv = 1.53 against 4.41 from finite differences and reverse mode, on a small
case). Speed on a CPU: the arithmetic of a product is the same in every mode, so vectorising
gains only the per-call overhead; on the regression transformer (one thread) a chunked product
costs more than PyHessian's double backward through a retained graph, and a single product (as
Lanczos asks for) more still. ``benchmarks/hessian_vs_pyhessian.py`` measures the ratio.

Used by ``devbook.regression.curvature``, the regression Hessian chapter and
``benchmarks/hessian_vs_pyhessian.py``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from devbook.sgld import LossModule

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]

#: Default number of Hessian-vector products evaluated together in one ``vmap``.
DEFAULT_CHUNK = 8


class TraceEstimate(NamedTuple):
    """Hutchinson's estimate of tr H and its standard error (std of the probes / √n)."""

    estimate: float
    stderr: float


class Eigenvalues(NamedTuple):
    """Lanczos eigenvalues of H.

    ``top``: the k algebraically largest, descending, shape (k,); ``most_negative``: the
    algebraically smallest eigenvalue (NaN unless requested); ``hvps``: Hessian-vector
    products used.
    """

    top: np.ndarray
    most_negative: float
    hvps: int


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def check_batch(batch: Any) -> Batch:
    """``batch`` if it is a non-empty tuple of tensors sharing their first dimension, else a
    ``ValueError`` saying what it is instead."""
    if not isinstance(batch, tuple) or not batch or not all(isinstance(t, torch.Tensor) for t in batch):
        kinds = [type(t).__name__ for t in batch] if isinstance(batch, (tuple, list)) else None
        raise ValueError(
            "batch must be a non-empty tuple of tensors sharing their first dimension "
            f"(as loss_fn(model, batch) takes it), got {type(batch).__name__}"
            + (f" of {kinds}" if kinds is not None else "")
        )
    sizes = {t.shape[0] if t.dim() else None for t in batch}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"batch tensors must share their first dimension, got shapes {[tuple(t.shape) for t in batch]}"
        )
    return batch


class HessianOperator:
    """The Hessian of ``loss_fn(model, batch)`` at the model's current parameters.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters with ``requires_grad`` are the Hessian's variables (flattened in
        ``named_parameters`` order); the others and the buffers are held fixed. It is called in
        its current train/eval mode and never modified.
    loss_fn : callable
        ``loss_fn(model, batch) -> scalar`` tensor (the :mod:`devbook.llc` convention).
    batch : tuple of torch.Tensor
        One fixed batch, tensors sharing their first dimension.
    chunk_size : int
        Hessian-vector products evaluated together in one ``vmap`` (memory grows with it).

    Raises
    ------
    ValueError
        For a model without trainable parameters, a batch of the wrong structure, a
        ``loss_fn`` that fails on the batch, or a loss that is not a finite scalar.
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, batch: Batch, *, chunk_size: int = DEFAULT_CHUNK
    ) -> None:
        self.batch = check_batch(batch)
        self.chunk_size = _check_int("chunk_size", chunk_size, 1)
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no parameters with requires_grad=True")
        like = named[0][1]
        if any(p.dtype != like.dtype or p.device != like.device for _, p in named):
            raise ValueError("all trainable parameters must share one dtype and device")
        self.names = ["model." + k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.w0 = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.dim = self.w0.numel()
        self.fixed = {"model." + k: v.detach() for k, v in model.named_buffers()}
        self.fixed.update(
            {"model." + k: p.detach() for k, p in model.named_parameters() if not p.requires_grad}
        )
        self.module = LossModule(model, loss_fn)
        self.loss = self._first_loss(loss_fn)
        self._grad = grad(self._loss_of)
        self.hvps = 0

    def _state(self, w: torch.Tensor) -> tuple[dict, dict]:
        params = {k: v.reshape(s) for k, v, s in zip(self.names, torch.split(w, self.numels), self.shapes)}
        return params, self.fixed

    def _loss_of(self, w: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, self._state(w), (self.batch,))

    def _first_loss(self, loss_fn: LossFn) -> float:
        name = getattr(loss_fn, "__name__", type(loss_fn).__name__)
        try:
            with torch.no_grad():
                loss = self._loss_of(self.w0)
        except (TypeError, ValueError, IndexError, KeyError, RuntimeError) as err:
            raise ValueError(
                f"loss_fn {name}(model, batch) failed on this batch of shapes "
                f"{[tuple(t.shape) for t in self.batch]}: {type(err).__name__}: "
                f"{err}"
            ) from err
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
            raise ValueError(
                f"loss_fn {name} must return a scalar tensor (the mean loss over the batch), got {shape}"
            )
        if not torch.isfinite(loss):
            raise ValueError(f"the loss is not finite at these parameters ({float(loss)})")
        return float(loss)

    def _hvp(self, v: torch.Tensor) -> torch.Tensor:
        return jvp(self._grad, (self.w0,), (v,))[1]

    def matmat(self, V: torch.Tensor) -> torch.Tensor:
        """``H @ v`` for each row v of ``V`` (shape (d,) or (k, d); the same shape back)."""
        if V.shape[-1] != self.dim or V.dim() not in (1, 2):
            raise ValueError(
                f"vectors must have shape ({self.dim},) or (k, {self.dim}), got {tuple(V.shape)}"
            )
        single = V.dim() == 1
        V = V.reshape(-1, self.dim).to(self.w0)
        out = [vmap(self._hvp)(V[i : i + self.chunk_size]) for i in range(0, V.shape[0], self.chunk_size)]
        self.hvps += V.shape[0]
        H = torch.cat(out).detach()
        return H[0] if single else H

    def linear_operator(self) -> LinearOperator:
        """H as a float64 ``scipy.sparse.linalg.LinearOperator`` (products in the model's dtype)."""

        def mv(x: np.ndarray) -> np.ndarray:
            v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
            return self.matmat(v).double().cpu().numpy()

        def mm(X: np.ndarray) -> np.ndarray:
            V = torch.from_numpy(np.ascontiguousarray(np.asarray(X, dtype=np.float64).T))
            return self.matmat(V).double().cpu().numpy().T

        return LinearOperator((self.dim, self.dim), matvec=mv, matmat=mm, rmatvec=mv, dtype=np.float64)

    def dense(self) -> torch.Tensor:
        """The full d × d Hessian in the model's dtype, row by row: d products (symmetric up to
        rounding; not symmetrised, so memory stays d² entries)."""
        H = torch.empty(self.dim, self.dim, dtype=self.w0.dtype, device=self.w0.device)
        rows = max(self.chunk_size, 1)
        for i in range(0, self.dim, rows):
            n = min(rows, self.dim - i)
            E = torch.zeros(n, self.dim, dtype=self.w0.dtype, device=self.w0.device)
            E[torch.arange(n), torch.arange(i, i + n)] = 1.0
            H[i : i + n] = self.matmat(E)
        return H


def rademacher_probes(
    dim: int, num_probes: int, seed: int, *, start: int = 0, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Probes ``start … start+num_probes−1`` (rows, entries ±1), probe i from a generator seeded
    by (seed, i): any chunking of the probes gives the same vectors."""
    rows = []
    for i in range(start, start + num_probes):
        state = np.random.SeedSequence([int(seed), i]).generate_state(2, dtype=np.uint32)
        gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        rows.append(torch.randint(0, 2, (dim,), generator=gen, dtype=torch.int8))
    return (torch.stack(rows).to(dtype) * 2 - 1) if rows else torch.empty(0, dim, dtype=dtype)


def hessian_trace(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    *,
    num_probes: int,
    seed: int,
    chunk_size: int = DEFAULT_CHUNK,
) -> TraceEstimate:
    """Hutchinson's estimate of tr H with ``num_probes`` Rademacher probes.

    Parameters
    ----------
    model, loss_fn, batch, chunk_size
        As in :class:`HessianOperator`.
    num_probes : int
        Number of probes n (>= 1; the standard error needs n >= 2).
    seed : int
        Seed of the probes (:func:`rademacher_probes`): the same seed gives the same probes for
        every model with the same parameter count.

    Returns
    -------
    TraceEstimate
        ``(estimate, stderr)``: mean of vᵢᵀHvᵢ and its standard deviation / √n (NaN for n = 1).
    """
    num_probes = _check_int("num_probes", num_probes, 1)
    seed = _check_int("seed", seed, 0)
    op = HessianOperator(model, loss_fn, batch, chunk_size=chunk_size)
    quad = []
    for i in range(0, num_probes, op.chunk_size):
        V = rademacher_probes(
            op.dim, min(op.chunk_size, num_probes - i), seed, start=i, dtype=op.w0.dtype
        ).to(op.w0.device)
        quad.append((V * op.matmat(V)).sum(1).double().cpu())
    q = torch.cat(quad).numpy()
    stderr = float(q.std(ddof=1) / math.sqrt(q.size)) if q.size > 1 else float("nan")
    return TraceEstimate(float(q.mean()), stderr)


def _lanczos(
    op: LinearOperator, k: int, which: str, tol: float, seed: int, maxiter: int | None, ncv: int | None
) -> np.ndarray:
    n = op.shape[0]
    v0 = np.random.default_rng(seed).standard_normal(n)
    ncv = min(n, max(2 * k + 1, 8)) if ncv is None else ncv
    if not k < ncv <= n:
        raise ValueError(f"ncv must satisfy k < ncv <= d ({k} < ncv <= {n}), got {ncv}")
    try:
        vals = eigsh(
            op, k=k, which=which, tol=tol, v0=v0, maxiter=maxiter, ncv=ncv, return_eigenvectors=False
        )
    except ArpackNoConvergence as err:
        raise RuntimeError(
            f"Lanczos ({which}, k={k}) did not converge to tol={tol:g} within "
            f"maxiter={maxiter}; {len(err.eigenvalues)} of {k} eigenvalues "
            "converged: raise maxiter or tol"
        ) from err
    return np.sort(vals)[::-1]


def top_eigenvalues(
    model: nn.Module,
    loss_fn: LossFn,
    batch: Batch,
    k: int = 1,
    *,
    most_negative: bool = False,
    tol: float = 1e-6,
    seed: int = 0,
    maxiter: int | None = None,
    ncv: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> Eigenvalues:
    """The ``k`` algebraically largest eigenvalues of H by Lanczos (scipy ``eigsh``).

    Parameters
    ----------
    model, loss_fn, batch, chunk_size
        As in :class:`HessianOperator`.
    k : int
        How many (1 <= k <= d); with k >= d − 1 ARPACK cannot run, and the dense Hessian's
        spectrum is used instead.
    most_negative : bool
        Also compute the algebraically smallest eigenvalue (a second Lanczos run).
    tol : float
        ARPACK's relative tolerance on the Ritz values (0: machine precision).
    seed : int
        Seed of the Lanczos start vector.
    maxiter : int, optional
        ARPACK's restart limit (default: its own, 10·d).
    ncv : int, optional
        Lanczos vectors kept between restarts (k < ncv <= d; default max(2k + 1, 8)). On the
        regression transformer, k = 1, ncv = 8 reached tol 1e-3 in 9–17 products (relative
        error ≤ 7e-7 at five checkpoints of the cpu run).

    Returns
    -------
    Eigenvalues
        ``top`` (k,) descending, ``most_negative`` (NaN unless requested), ``hvps`` used.
    """
    op = HessianOperator(model, loss_fn, batch, chunk_size=chunk_size)
    k = _check_int("k", k, 1)
    if k > op.dim:
        raise ValueError(
            f"k={k} eigenvalues requested, but the Hessian is {op.dim} × {op.dim} "
            f"(the model has {op.dim} trainable parameters)"
        )
    if not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0, got {tol!r}")
    if k >= op.dim - 1:
        spectrum = torch.linalg.eigvalsh(op.dense().double()).cpu().numpy()[::-1]
        low = float(spectrum[-1]) if most_negative else float("nan")
        return Eigenvalues(spectrum[:k].copy(), low, op.hvps)
    lin = op.linear_operator()
    top = _lanczos(lin, k, "LA", tol, seed, maxiter, ncv)
    low = float(_lanczos(lin, 1, "SA", tol, seed + 1, maxiter, ncv)[0]) if most_negative else float("nan")
    return Eigenvalues(top, low, op.hvps)


def full_hessian(model: nn.Module, loss_fn: LossFn, batch: Batch, *, chunk_size: int = 64) -> torch.Tensor:
    """The dense Hessian (d, d) of ``loss_fn(model, batch)``: d Hessian-vector products.

    ``chunk_size`` unit vectors go through one ``vmap``; memory is d² entries plus the chunk's
    activations. Variables and conventions as in :class:`HessianOperator`.
    """
    return HessianOperator(model, loss_fn, batch, chunk_size=chunk_size).dense()
