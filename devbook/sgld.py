"""The SGLD sampler behind :func:`devbook.llc.estimate_llc`: one update, and the chains run
together (one ``torch.func.vmap`` over a chains × parameters matrix) or one after another.

Each chain draws its minibatch schedule and its injected noise from its own generators, seeded
by (seed, chain), so both runners give the same numbers for the same seed (paper App. A.4).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from devbook.progress import progress as tqdm

if TYPE_CHECKING:
    from devbook.llc import SGLDConfig

Batch = tuple[torch.Tensor, ...]
#: Per-cell sampler values of a batched grid: ``{"epsilon": [K], "nbeta": [K], "gamma": [K]}``.
CellValues = dict[str, list[float]]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]


class LossModule(nn.Module):
    """Wraps ``loss_fn(model, batch)`` as a module, so ``functional_call`` can swap parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


class _Schedule:
    """One chain's random streams, from two generators seeded by (seed, chain): shuffled epochs
    of batch indices (like a shuffled DataLoader with drop_last) and the injected N(0, I) noise.
    Both come in blocks of ``rows`` steps, so the vectorised path slices one (C, rows, ·) tensor
    per step; the block size depends only on (dim, m), so both paths see the same numbers."""

    def __init__(self, seed: int, chain: int, n: int, m: int, dim: int, like: torch.Tensor) -> None:
        state = np.random.SeedSequence([seed, chain]).generate_state(4, dtype=np.uint32)
        self.batch_gen = torch.Generator(device=like.device).manual_seed(int(state[0]) << 32 | int(state[1]))
        self.noise_gen = torch.Generator(device=like.device).manual_seed(int(state[2]) << 32 | int(state[3]))
        self.n, self.m, self.dim, self.like = n, m, dim, like
        self.rows = max(1, min(64, 2**20 // max(dim, m)))
        self.perm = torch.empty(0, dtype=torch.long, device=like.device)
        self.pos = n

    def block(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch indices (rows, m) and noise (rows, dim) for the next ``rows`` steps."""
        idx = []
        for _ in range(self.rows):
            if self.pos + self.m > self.n:
                self.perm = torch.randperm(self.n, generator=self.batch_gen, device=self.like.device)
                self.pos = 0
            idx.append(self.perm[self.pos : self.pos + self.m])
            self.pos += self.m
        noise = torch.randn(
            self.rows, self.dim, generator=self.noise_gen, dtype=self.like.dtype, device=self.like.device
        )
        return torch.stack(idx), noise


def _validate_data(data: Any, batch_size: int) -> int:
    if not isinstance(data, tuple) or not data or not all(isinstance(t, torch.Tensor) for t in data):
        raise ValueError(
            "data must be a non-empty tuple of tensors sharing their first dimension, "
            f"got {type(data).__name__}"
        )
    sizes = {t.shape[0] if t.dim() else None for t in data}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"data tensors must share their first dimension, got shapes {[tuple(t.shape) for t in data]}"
        )
    n = sizes.pop()
    if batch_size > n:
        raise ValueError(
            f"SGLDConfig.batch_size={batch_size} exceeds the {n} samples in data; use batch_size <= {n}"
        )
    return n


@torch.no_grad()
def _full_loss(loss_module: nn.Module, state: tuple[dict, dict], data: Batch, batch_size: int) -> float:
    """L_n over all of ``data``, in batches, weighting each batch mean by its size."""
    n = data[0].shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        batch = tuple(t[start : start + batch_size] for t in data)
        loss = functional_call(loss_module, state, (batch,))
        total += float(loss) * batch[0].shape[0]
    return total / n


@torch.no_grad()
def _minibatch_noise(loss_module: nn.Module, state: tuple[dict, dict], data: Batch, m: int) -> float:
    """Std of the loss over up to 8 disjoint size-m batches at w* (0 when m = n)."""
    k = min(8, data[0].shape[0] // m)
    if k < 2:
        return 0.0
    losses = [
        float(functional_call(loss_module, state, (tuple(t[i * m : (i + 1) * m] for t in data),)))
        for i in range(k)
    ]
    return float(np.std(losses, ddof=1))


def sgld_step(
    w: torch.Tensor,
    grad: torch.Tensor,
    noise: torch.Tensor,
    w_star: torch.Tensor,
    *,
    epsilon: float | torch.Tensor,
    nbeta: float | torch.Tensor,
    gamma: float | torch.Tensor,
) -> torch.Tensor:
    """One SGLD update of paper App. A.4, for one chain or a (chains × parameters) stack.

    ``w + (ε/2)·(−nβ·grad − γ·(w − w*)) + √ε·noise``: with ``noise = 0`` and γ = 0 this is a
    gradient-descent step with learning rate ε·nβ/2; with only γ it contracts toward w*.

    Parameters
    ----------
    w, grad, noise : torch.Tensor
        Current parameters, the minibatch-loss gradient at ``w`` and a N(0, I) draw, all of one
        shape (``(d,)`` or ``(C, d)``).
    w_star : torch.Tensor
        The localisation centre, ``(d,)`` (broadcast over chains).
    epsilon, nbeta, gamma : float or torch.Tensor
        Step size ε, inverse temperature nβ and localisation strength γ: numbers, or ``(C, 1)``
        tensors giving each chain of a stack its own values (a calibration grid run batched).

    Returns
    -------
    torch.Tensor
        The parameters after the step (a new tensor).
    """
    root = epsilon.sqrt() if isinstance(epsilon, torch.Tensor) else math.sqrt(epsilon)
    return w + epsilon / 2 * (-nbeta * grad - gamma * (w - w_star)) + root * noise


class _Posterior:
    """A model's sampled parameters as one flat vector w, and the loss and gradient at any w."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no parameters with requires_grad=True to sample over")
        self.like = named[0][1]
        if any(p.dtype != self.like.dtype or p.device != self.like.device for _, p in named):
            raise ValueError("all sampled parameters must share one dtype and device")
        self.names = ["model." + k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.w_star = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.dim = self.w_star.numel()
        self.fixed = {"model." + k: v.detach().clone() for k, v in model.named_buffers()}
        self.fixed.update(
            {"model." + k: p.detach().clone() for k, p in model.named_parameters() if not p.requires_grad}
        )
        self.module = LossModule(model, loss_fn)
        self._batched_loss = vmap(self.loss_of)

    def state(self, w: torch.Tensor) -> tuple[dict, dict]:
        """``(params, buffers)`` for ``functional_call`` at the flat parameters ``w``."""
        return (
            {k: v.reshape(s) for k, v, s in zip(self.names, torch.split(w, self.numels), self.shapes)},
            self.fixed,
        )

    def loss_of(self, w: torch.Tensor, batch: Batch) -> torch.Tensor:
        return functional_call(self.module, self.state(w), (batch,))

    def grad_one(self, w: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradient and loss of one chain at ``w`` (d,)."""
        w = w.detach().requires_grad_(True)
        loss = self.loss_of(w, batch)
        (g,) = torch.autograd.grad(loss, w)
        return g, loss.detach()

    def grad_chains(self, w: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Gradients and losses of C chains at ``w`` (C, d), each on its own batch."""
        # Chains are independent, so the gradient of the summed loss is each chain's gradient.
        w = w.detach().requires_grad_(True)
        loss = self._batched_loss(w, batch)
        (g,) = torch.autograd.grad(loss.sum(), w)
        return g, loss.detach()


def _step_fn(
    post: _Posterior, cfg: SGLDConfig, cells: CellValues | None = None
) -> Callable[..., torch.Tensor]:
    """:func:`sgld_step` with this estimate's ε, nβ, γ and w* bound (shared by both paths).

    With ``cells`` (K cells), chain ``k·C + c`` steps with cell k's values."""
    if cells is None:
        hyper = {"epsilon": cfg.epsilon, "nbeta": cfg.nbeta, "gamma": cfg.gamma}
    else:
        hyper = {
            k: torch.tensor(v, dtype=post.like.dtype, device=post.like.device)
            .repeat_interleave(cfg.num_chains)
            .unsqueeze(1)
            for k, v in cells.items()
        }

    def step(w: torch.Tensor, g: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return sgld_step(w, g, noise, post.w_star, **hyper)

    return step


def check_cells(cells: Any) -> int:
    """The number K of cells in ``{"epsilon": [...], "nbeta": [...], "gamma": [...]}`` (checked)."""
    if not isinstance(cells, dict) or set(cells) != {"epsilon", "nbeta", "gamma"}:
        raise ValueError(f"cells must be a dict with keys epsilon, nbeta, gamma; got {cells!r}")
    sizes = {len(v) for v in cells.values()}
    if len(sizes) != 1 or 0 in sizes:
        raise ValueError(f"cells' epsilon, nbeta and gamma must be non-empty and of one length, got {sizes}")
    for key, values in cells.items():
        low_ok = (lambda v: v >= 0) if key == "gamma" else (lambda v: v > 0)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and low_ok(v) for v in values):
            raise ValueError(f"cells[{key!r}] must hold finite numbers {'>= 0' if key == 'gamma' else '> 0'}")
    return sizes.pop()


def run_chains_vectorized(
    post: _Posterior,
    data: Batch,
    cfg: SGLDConfig,
    seed: int,
    *,
    progress: bool = False,
    cells: CellValues | None = None,
) -> torch.Tensor | None:
    """All chains in one ``vmap``: the recycled minibatch losses ``(C, steps)``.

    With ``cells`` (K cells of ε, nβ, γ, see :func:`devbook.sgld.check_cells`) the K·C chains of a grid run
    in the one ``vmap``: chain ``k·C + c`` uses cell k's values and the streams of chain c (every
    cell sees the same batches and noise), and the losses are ``(K·C, steps)``; cell k's rows
    are what ``cfg`` with cell k's values gives alone. Returns ``None`` when ``vmap`` cannot run
    this model (the first step is the probe); a failure at a later step is raised.
    """
    C, m, n = cfg.num_chains, cfg.batch_size, data[0].shape[0]
    K = 1 if cells is None else check_cells(cells)
    schedules = [_Schedule(seed, c, n, m, post.dim, post.like) for c in range(C)]
    w, rows = post.w_star.unsqueeze(0).repeat(K * C, 1), schedules[0].rows
    step = _step_fn(post, cfg, cells)
    losses = torch.empty(K * C, cfg.num_steps, dtype=post.like.dtype, device=post.like.device)
    # torch's CPU generators are serial; each chain owns its generators, so drawing the chains'
    # blocks in threads is deterministic and uses the idle cores.
    with ThreadPoolExecutor(max(1, min(C, torch.get_num_threads()))) as pool:
        for t in tqdm(range(cfg.num_steps), desc="SGLD", disable=not progress):
            if t % rows == 0:
                blocks = list(pool.map(_Schedule.block, schedules))
                idx_block = torch.stack([b[0] for b in blocks], 1)  # (rows, C, m)
                noise_block = torch.stack([b[1] for b in blocks], 1)  # (rows, C, dim)
            idx, noise = idx_block[t % rows], noise_block[t % rows]
            if cells is not None:
                idx, noise = idx.repeat(K, 1), noise.repeat(K, 1)
            batch = tuple(x.index_select(0, idx.reshape(-1)).view(K * C, m, *x.shape[1:]) for x in data)
            try:
                g, loss = post.grad_chains(w, batch)
            except Exception as err:  # noqa: BLE001 - any vmap failure means: use the sequential path
                if t > 0:
                    raise
                warnings.warn(
                    f"vmap over chains failed for this model ({type(err).__name__}: {err}); "
                    "running the chains sequentially",
                    stacklevel=3,
                )
                return None
            losses[:, t] = loss
            w = step(w, g, noise)
    return losses


def run_chains_sequential(
    post: _Posterior, data: Batch, cfg: SGLDConfig, seed: int, *, progress: bool = False
) -> torch.Tensor:
    """The chains one after another, with the same streams: the same ``(C, steps)`` losses."""
    C, m, n = cfg.num_chains, cfg.batch_size, data[0].shape[0]
    schedules = [_Schedule(seed, c, n, m, post.dim, post.like) for c in range(C)]
    step = _step_fn(post, cfg)
    losses = torch.empty(C, cfg.num_steps, dtype=post.like.dtype, device=post.like.device)
    for c in tqdm(range(C), desc="SGLD chains", disable=not progress):
        w, rows = post.w_star.clone(), schedules[c].rows
        for t in range(cfg.num_steps):
            if t % rows == 0:
                idx_block, noise_block = schedules[c].block()
            g, loss = post.grad_one(w, tuple(x.index_select(0, idx_block[t % rows]) for x in data))
            losses[c, t] = loss
            w = step(w, g, noise_block[t % rows])
    return losses
