"""Train many TMS initialisations at once, vectorised over seeds, through the run store.

All S seeds of a run advance together: parameters are stacked as ``W`` (S, r, c), ``b`` (S, c)
in a :class:`TMSStack`; seed s has its own training set (S, n, c), its own initialisation and
its own minibatch order, all drawn from generators seeded by s alone, so seed s trains the same
whatever the other seeds are. Gradients are hand-derived per seed (:func:`loss_and_grad`), so
each seed receives exactly its own gradient.

:class:`TMSTrainer` is the :class:`devbook.training.Trainer` that
:meth:`devbook.setting.Setting.train` drives (resumable, bitwise-identical after a kill);
:func:`load_result` reads a trained run back as a :class:`TrainResult` (all checkpoints, and
the empirical and exact losses at each, cached in the run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from devbook.store import Run, StoreError
from devbook.tms.data import sample_sparse
from devbook.tms.model import empirical_loss, forward, population_loss

INDEX_CHUNK = 500
"""Minibatch indices are drawn ``INDEX_CHUNK`` steps at a time per seed (part of the weights'
definition: changing it changes the runs, so bump the config ``version`` with it)."""
BATCH_SEED_OFFSET = 10_000_019
"""Seed s draws its minibatch indices from ``torch.Generator(BATCH_SEED_OFFSET + s)``."""


def run_seeds(config: Mapping[str, Any]) -> list[int]:
    """The seeds of a run's initialisations.

    Parameters
    ----------
    config : mapping
        A run config (``seed``, ``num_seeds``).

    Returns
    -------
    list of int
        ``seed * 100_000 + s`` for ``s < num_seeds``.
    """
    return [config["seed"] * 100_000 + s for s in range(config["num_seeds"])]


def init_params(
    config: Mapping[str, Any], seeds: Sequence[int], *, with_data: bool = True
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-seed initialisation and training set, each from ``torch.Generator(seed)``.

    Parameters
    ----------
    config : mapping
        A run config (``r``, ``c``, ``n``, ``init_scale``, ``bias_init_scale``).
    seeds : sequence of int
        One seed per initialisation.
    with_data : bool
        Also draw the training sets (drawn after W and b, so W and b do not depend on it).

    Returns
    -------
    tuple
        ``W`` (S, r, c), ``b`` (S, c) and the data (S, n, c) (``None`` without ``with_data``).
    """
    Ws, bs, xs = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        Ws.append(torch.randn(config["r"], config["c"], generator=g) * config["init_scale"])
        bs.append(torch.randn(config["c"], generator=g) * config["bias_init_scale"])
        if with_data:
            xs.append(sample_sparse(config["n"], config["c"], generator=g))
    return torch.stack(Ws), torch.stack(bs), torch.stack(xs) if with_data else None


def loss_and_grad(W: Tensor, b: Tensor, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each seed's mean loss ||x − f(x)||² and its gradients (hand-derived, tested by autograd).

    Parameters
    ----------
    W, b, x : Tensor
        ``W`` (S, r, c), ``b`` (S, c), ``x`` (S, m, c).

    Returns
    -------
    tuple
        ``loss`` (S,), ``dW`` (S, r, c), ``db`` (S, c).
    """
    h = torch.bmm(x, W.transpose(1, 2))  # (S, m, r)
    z = torch.bmm(h, W) + b[:, None, :]  # (S, m, c)
    err = torch.relu(z) - x
    dz = 2.0 / x.shape[1] * err * (z > 0)  # dL/dz
    dW = torch.bmm(h.transpose(1, 2), dz) + torch.bmm(torch.bmm(dz, W.transpose(1, 2)).transpose(1, 2), x)
    return (err**2).sum(-1).mean(-1), dW, dz.sum(1)


def loss_grad(W: Tensor, b: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """The gradients of :func:`loss_and_grad`.

    Parameters
    ----------
    W, b, x : torch.Tensor
        ``W`` (S, r, c), ``b`` (S, c), ``x`` (S, m, c).

    Returns
    -------
    tuple of torch.Tensor
        ``(dW (S, r, c), db (S, c))``.
    """
    return loss_and_grad(W, b, x)[1:]


class TMSStack(nn.Module):
    """S TMS parameters stacked: ``W`` (S, r, c), ``b`` (S, c); ``forward(x)`` as
    :func:`devbook.tms.model.forward` (``x`` (N, c) or (S, N, c) → (S, N, c)).

    The parameters do not require gradients: training updates them in place with
    hand-derived gradients (:func:`loss_and_grad`).
    """

    def __init__(self, W: Tensor, b: Tensor) -> None:
        super().__init__()
        if W.dim() != 3 or b.shape != (W.shape[0], W.shape[2]):
            raise ValueError(f"need W (S, r, c) and b (S, c); got {tuple(W.shape)}, {tuple(b.shape)}")
        self.W = nn.Parameter(W.detach().clone(), requires_grad=False)
        self.b = nn.Parameter(b.detach().clone(), requires_grad=False)

    def forward(self, x: Tensor) -> Tensor:
        return forward(self.W, self.b, x)


class MomentOptimiser:
    """SGD with momentum (torch's convention) or Adam (β = (0.9, 0.999), ε = 1e-8), updating
    ``W`` and ``b`` in place; ``state_dict`` holds the step count and both moments."""

    def __init__(self, params: Sequence[Tensor], optimiser: str, lr: float, momentum: float) -> None:
        self.params, self.kind, self.lr, self.momentum, self.t = list(params), optimiser, lr, momentum, 0
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]

    @torch.no_grad()
    def step(self, *grads: Tensor) -> None:
        """One update with ``grads`` (one per parameter)."""
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.kind == "sgd":
                m.mul_(self.momentum).add_(g) if self.t > 1 else m.copy_(g)
                p.sub_(self.lr * m)
            else:
                m.mul_(0.9).add_(g, alpha=0.1)
                v.mul_(0.999).addcmul_(g, g, value=0.001)
                mhat, vhat = m / (1 - 0.9**self.t), v / (1 - 0.999**self.t)
                p.sub_(self.lr * mhat / (vhat.sqrt() + 1e-8))

    def state_dict(self) -> dict[str, Any]:
        return {"t": self.t, "m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v]}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.t = int(state["t"])
        for mine, saved in zip(self.m + self.v, list(state["m"]) + list(state["v"])):
            mine.copy_(saved)


class TMSTrainer:
    """The :class:`devbook.training.Trainer` of a TMS run (all seeds at once).

    Update ``step + 1`` uses row ``step % INDEX_CHUNK`` of the current index chunk, a fresh
    chunk (``INDEX_CHUNK`` minibatches of every seed) being drawn every ``INDEX_CHUNK`` steps.
    ``state_dict`` holds the optimiser's moments and step count, and the generators' states
    *before* the current chunk was drawn; ``load_state_dict`` redraws that chunk from them,
    which restores both the chunk and the generators exactly.
    """

    def __init__(self, config: Mapping[str, Any]) -> None:
        seeds = run_seeds(config)
        W, b, data = init_params(config, seeds)
        self.model = TMSStack(W, b)
        self.data: Tensor = data
        self.batch_size = config["batch_size"]
        self.optimiser = MomentOptimiser(
            [self.model.W, self.model.b], config["optimiser"], config["lr"], config["momentum"]
        )
        self.generators = [torch.Generator().manual_seed(BATCH_SEED_OFFSET + s) for s in seeds]
        self._rows = torch.arange(len(seeds))[:, None]
        self._chunk_start: list[Tensor] | None = None
        self._idx: Tensor | None = None

    def _draw_chunk(self) -> None:
        self._chunk_start = [g.get_state() for g in self.generators]
        n = self.data.shape[1]
        self._idx = torch.stack(
            [torch.randint(0, n, (INDEX_CHUNK, self.batch_size), generator=g) for g in self.generators]
        )  # (S, chunk, m)

    def train_step(self, step: int) -> dict[str, float]:
        if step % INDEX_CHUNK == 0:
            self._draw_chunk()
        elif self._idx is None:
            raise StoreError(f"step {step} is inside an index chunk that was never drawn")
        batch = self.data[self._rows, self._idx[:, step % INDEX_CHUNK]]  # (S, m, c)
        loss, dW, db = loss_and_grad(self.model.W, self.model.b, batch)
        self.optimiser.step(dW, db)
        return {"loss": float(loss.mean())}

    def state_dict(self) -> dict[str, Any]:
        drawn = self._chunk_start is not None
        states = self._chunk_start if drawn else [g.get_state() for g in self.generators]
        return {
            "optimiser": self.optimiser.state_dict(),
            "chunk_drawn": drawn,
            "generators": [s.clone() for s in states],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimiser.load_state_dict(state["optimiser"])
        if len(state["generators"]) != len(self.generators):
            raise StoreError(
                f"saved state has {len(state['generators'])} generators, the run {len(self.generators)}"
            )
        for g, s in zip(self.generators, state["generators"]):
            g.set_state(s)
        self._chunk_start, self._idx = None, None
        if state["chunk_drawn"]:
            self._draw_chunk()


@dataclass
class TrainResult:
    """Checkpoints of the S seeds of a run: ``steps`` (T,), ``W`` (T, S, r, c), ``b`` (T, S, c),
    ``loss`` (T, S) empirical loss on each seed's training set, ``pop_loss`` (T, S) exact
    potential, ``data`` (S, n, c) the training sets, ``seeds`` the S seeds."""

    config: dict[str, Any]
    seeds: list[int]
    steps: np.ndarray
    W: Tensor
    b: Tensor
    loss: Tensor
    pop_loss: Tensor
    data: Tensor


def checkpoint_losses(W: Tensor, b: Tensor, data: Tensor) -> dict[str, np.ndarray]:
    """Empirical loss on each seed's training set and exact potential at every checkpoint.

    Parameters
    ----------
    W, b : Tensor
        ``W`` (T, S, r, c), ``b`` (T, S, c).
    data : Tensor
        The training sets (S, n, c).

    Returns
    -------
    dict
        ``{"loss": (T, S), "pop_loss": (T, S)}`` float32 arrays (the potential is computed in
        float64).
    """
    with torch.no_grad():
        loss = torch.stack([empirical_loss(W[i], b[i], data) for i in range(len(W))])
        pop = torch.stack([population_loss(W[i].double(), b[i].double()).float() for i in range(len(W))])
    return {"loss": loss.numpy(), "pop_loss": pop.numpy()}


def load_result(run: Run) -> TrainResult:
    """A trained run's checkpoints as a :class:`TrainResult` (losses cached in the run).

    Parameters
    ----------
    run : devbook.store.Run
        A complete TMS run (:meth:`devbook.setting.Setting.train`).

    Returns
    -------
    TrainResult
        Every saved checkpoint, in step order.
    """
    if not run.complete:
        raise StoreError(f"run {run.path} is not trained yet; use SETTING.train(config)")
    config = run.config
    steps = np.array(run.checkpoint_steps(), dtype=np.int64)
    weights = [run.load_weights(int(s)) for s in steps]
    W = torch.stack([w["W"] for w in weights])
    b = torch.stack([w["b"] for w in weights])
    seeds = run_seeds(config)
    data = init_params(config, seeds)[2]
    losses = run.cached("tms-losses", {"version": 1}, lambda: checkpoint_losses(W, b, data))
    return TrainResult(
        config,
        seeds,
        steps,
        W,
        b,
        torch.from_numpy(losses["loss"]),
        torch.from_numpy(losses["pop_loss"]),
        data,
    )
