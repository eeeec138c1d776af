"""The optimiser and trainer of the regression transformer (paper App. E.2.3).

Adam (β = (0.9, 0.999), no weight decay) with OneCycleLR: max lr 3e-3, 50 % linear warm-up then
linear annealing, ``div_factor = final_div_factor = steps/2 − 1`` (so the lr starts at
``max_lr / (steps/2 − 1)``); momentum is not cycled (betas stay at (0.9, 0.999)). Batch 256,
one fresh batch per step (single epoch). Training through the run store is
:meth:`devbook.setting.Setting.train`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from devbook.regression.config import validate
from devbook.regression.data import RegressionData
from devbook.regression.model import RegressionTransformer, loss_fn
from devbook.rng import generator
from devbook.training import StandardTrainer


def make_optimizer(
    model: torch.nn.Module, total_steps: int, max_lr: float
) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam + OneCycleLR as in the authors' code (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        The model whose parameters are optimised.
    total_steps : int
        Length of the run (the one cycle spans it).
    max_lr : float
        Peak learning rate.

    Returns
    -------
    tuple
        ``(optimizer, scheduler)``.
    """
    div = total_steps / 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=max_lr, betas=(0.9, 0.999), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt,
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=0.5,
        anneal_strategy="linear",
        div_factor=div,
        final_div_factor=div,
        cycle_momentum=False,
    )
    return opt, sched


def one_cycle_lr(total_steps: int, max_lr: float) -> np.ndarray:
    """The learning rate of every update of a run, ``(total_steps,)``, as OneCycleLR sets it.

    Computed in closed form (linear warm-up over the first half from ``max_lr / div``, linear
    annealing back over the second), with ``div = total_steps / 2 − 1``; the unit tests check
    it against :func:`make_optimizer`'s scheduler.
    """
    div = total_steps / 2 - 1
    initial, final = max_lr / div, max_lr / div / div
    up = float(0.5 * total_steps) - 1
    down = total_steps - 1
    t = np.arange(total_steps, dtype=float)
    warm = initial + (max_lr - initial) * t / up
    cool = max_lr + (final - max_lr) * (t - up) / (down - up)
    return np.where(t <= up, warm, cool)


def make_trainer(config: dict[str, Any], device: str | torch.device = "cpu") -> StandardTrainer:
    """A freshly initialised trainer for ``config`` (init and data streams seeded from it).

    Initialisation and batches are drawn on the CPU (so every device sees the same numbers) and
    moved to ``device``; the weights then train there (a GPU run is not bitwise-identical to a
    CPU run of the same config, but it is statistically the same run).
    """
    config = validate(dict(config))
    model = RegressionTransformer.from_config(config, generator(config["seed"], "init"))
    model.to(device)
    opt, sched = make_optimizer(model, config["num_steps"], config["max_lr"])
    data = RegressionData.from_config(config)
    batch_size = config["batch_size"]

    def batch_loss(trainer: StandardTrainer, step: int) -> torch.Tensor:
        batch = data.sample(batch_size, trainer.generators["data"])
        return loss_fn(trainer.model, (batch.xs.to(device), batch.ys.to(device)))

    return StandardTrainer(model, opt, batch_loss, sched, {"data": generator(config["seed"], "train-data")})
