"""Train many TMS initialisations at once, vectorised over seeds, and find their plateaus.

All S runs advance together: parameters are stacked as ``W`` (S, r, c), ``b`` (S, c); run s has
its own training set (S, n, c), its own initialisation and its own minibatch order, all drawn
from ``torch.Generator(seed_s)``, so run s is the same whatever the other seeds are. The loss of
the stack is the sum of the S mean losses, so each run receives exactly its own gradient.
Used by ``book/tms/growth-and-form.md``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor
from devbook.progress import progress as tqdm

from devbook.tms.data import sample_sparse
from devbook.tms.model import empirical_loss, population_loss

OPTIMISERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """One batch of TMS training runs (one per seed in ``seeds``)."""

    r: int = 2
    c: int = 6
    n: int = 1000  # training-set size per run
    batch_size: int = 20
    steps: int = 20000
    lr: float = 0.01
    momentum: float = 0.9  # SGD only
    optimiser: str = "sgd"
    init_scale: float = 1.0  # W entries ~ N(0, init_scale²) ...
    bias_init_scale: float = 0.0  # ... and b entries ~ N(0, bias_init_scale²)
    num_checkpoints: int = 120  # log-spaced (plus step 0)

    def __post_init__(self) -> None:
        if self.optimiser not in OPTIMISERS:
            raise ValueError(f"optimiser {self.optimiser!r} unknown; valid: {OPTIMISERS}")
        for name in ("r", "c", "n", "batch_size", "steps", "num_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.r > self.c:
            raise ValueError(f"need r <= c, got r={self.r}, c={self.c}")


@dataclass
class TrainResult:
    """Checkpoints of S runs: ``steps`` (T,), ``W`` (T, S, r, c), ``b`` (T, S, c), ``loss``
    (T, S) empirical loss on each run's training set, ``pop_loss`` (T, S) exact potential,
    ``data`` (S, n, c) the training sets."""

    config: TrainConfig
    seeds: list[int]
    steps: np.ndarray
    W: Tensor
    b: Tensor
    loss: Tensor
    pop_loss: Tensor
    data: Tensor


def loss_grad(W: Tensor, b: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """Gradients of each run's mean loss ||x − f(x)||² (hand-derived; autograd is the test).

    ``W`` (S, r, c), ``b`` (S, c), ``x`` (S, m, c) → (dW (S, r, c), db (S, c)).
    """
    h = torch.bmm(x, W.transpose(1, 2))  # (S, m, r)
    z = torch.bmm(h, W) + b[:, None, :]  # (S, m, c)
    dz = 2.0 / x.shape[1] * (torch.relu(z) - x) * (z > 0)  # dL/dz
    dW = torch.bmm(h.transpose(1, 2), dz) + torch.bmm(torch.bmm(dz, W.transpose(1, 2)).transpose(1, 2), x)
    return dW, dz.sum(1)


class _Optimiser:
    """SGD with momentum (torch's convention) or Adam, updating ``W`` and ``b`` in place."""

    def __init__(self, config: TrainConfig, W: Tensor, b: Tensor) -> None:
        self.cfg, self.params, self.t = config, (W, b), 0
        self.m = [torch.zeros_like(W), torch.zeros_like(b)]
        self.v = [torch.zeros_like(W), torch.zeros_like(b)]

    def step(self, *grads: Tensor) -> None:
        cfg = self.cfg
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if cfg.optimiser == "sgd":
                m.mul_(cfg.momentum).add_(g) if self.t > 1 else m.copy_(g)
                p.sub_(cfg.lr * m)
            else:  # Adam, betas (0.9, 0.999), eps 1e-8
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                mhat, vhat = m / (1 - 0.9**self.t), v / (1 - 0.999**self.t)
                p.sub_(cfg.lr * mhat / (vhat.sqrt() + 1e-8))


def checkpoint_steps(steps: int, num: int) -> np.ndarray:
    """Step 0 and ``num`` log-spaced steps in [1, steps] (distinct integers, sorted)."""
    log = np.unique(np.round(np.logspace(0, np.log10(steps), num)).astype(int))
    return np.concatenate([[0], log])


def init_params(config: TrainConfig, seeds: list[int]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-seed initialisation and training set: ``W`` (S, r, c), ``b`` (S, c), data (S, n, c)."""
    Ws, bs, xs = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        Ws.append(torch.randn(config.r, config.c, generator=g) * config.init_scale)
        bs.append(torch.randn(config.c, generator=g) * config.bias_init_scale)
        xs.append(sample_sparse(config.n, config.c, generator=g))
    return torch.stack(Ws), torch.stack(bs), torch.stack(xs)


def train_seeds(config: TrainConfig, seeds: list[int], *, progress: bool = True) -> TrainResult:
    """Train one run per seed, all at once; return their checkpoints (see :class:`TrainResult`)."""
    if len(seeds) == 0:
        raise ValueError("seeds must not be empty")
    W, b, data = init_params(config, seeds)
    S = len(seeds)
    opt = _Optimiser(config, W, b)
    # one batch-order generator per run, so that run s does not depend on the other seeds
    gens = [torch.Generator().manual_seed(10_000_019 + int(s)) for s in seeds]
    ckpts = checkpoint_steps(config.steps, config.num_checkpoints)
    keep = set(int(t) for t in ckpts)
    rows = torch.arange(S)[:, None]
    out_W, out_b = [W.clone()], [b.clone()]
    chunk = 500
    for step in tqdm(range(1, config.steps + 1), disable=not progress, desc="TMS SGD", mininterval=5):
        if (step - 1) % chunk == 0:  # draw the next `chunk` minibatches of every run at once
            idx_chunk = torch.stack(
                [torch.randint(0, config.n, (chunk, config.batch_size), generator=g) for g in gens]
            )  # (S, chunk, m)
        batch = data[rows, idx_chunk[:, (step - 1) % chunk]]  # (S, m, c)
        opt.step(*loss_grad(W, b, batch))
        if step in keep:
            out_W.append(W.clone())
            out_b.append(b.clone())
    Wt, bt = torch.stack(out_W), torch.stack(out_b)
    with torch.no_grad():
        loss = torch.stack([empirical_loss(Wt[i], bt[i], data) for i in range(len(ckpts))])
        pop = torch.stack([population_loss(Wt[i].double(), bt[i].double()).float() for i in range(len(ckpts))])
    return TrainResult(config, list(seeds), ckpts, Wt, bt, loss, pop, data)


@dataclass(frozen=True)
class Plateau:
    """A run's plateau: checkpoint indices ``[start, end]`` (inclusive), its mean loss and the
    k-gon label at its last checkpoint."""

    run: int
    start: int
    end: int
    loss: float
    label: str


def find_plateaus(
    steps: np.ndarray,
    loss: np.ndarray,
    *,
    slope_tol: float = 0.15,
    min_decades: float = 0.2,
    smooth_decades: float = 0.05,
) -> list[tuple[int, int]]:
    """Plateaus of one loss curve recorded at (log-spaced) checkpoints.

    ln(loss) is resampled on a grid uniform in log10(step) (0.01 decades; step 0 left out),
    smoothed by a Gaussian of ``smooth_decades`` to remove minibatch noise, and differentiated;
    a plateau is a maximal stretch where |d ln(loss) / d log10(step)| < ``slope_tol`` lasting at
    least ``min_decades`` decades. Returns inclusive index pairs ``(start, end)`` into ``steps``
    (the checkpoints inside each stretch), in time order.
    """
    from scipy.ndimage import gaussian_filter1d

    if steps.shape != loss.shape:
        raise ValueError(f"steps {steps.shape} and loss {loss.shape} must have the same shape")
    pos = steps > 0
    t = np.log10(steps[pos].astype(float))
    y = np.log(np.maximum(loss[pos], 1e-12))
    grid = np.arange(t[0], t[-1] + 1e-9, 0.01)
    if len(grid) < 3:
        return []
    ys = gaussian_filter1d(np.interp(grid, t, y), smooth_decades / 0.01, mode="nearest")
    flat = np.abs(np.gradient(ys, grid)) < slope_tol
    out: list[tuple[int, int]] = []
    idx = np.flatnonzero(pos)
    i = 0
    while i < len(flat):
        if not flat[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(flat) and flat[j + 1]:
            j += 1
        inside = np.flatnonzero((t >= grid[i] - 1e-9) & (t <= grid[j] + 1e-9))
        if grid[j] - grid[i] >= min_decades and len(inside) > 0:
            out.append((int(idx[inside[0]]), int(idx[inside[-1]])))
        i = j + 1
    return out


def config_dict(config: TrainConfig) -> dict[str, object]:
    """The config as a plain dict (for caching keys and display)."""
    return asdict(config)
