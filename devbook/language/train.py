"""The trainer of the language transformer (paper App. E.1.2).

AdamW (lr 1e-3, betas (0.9, 0.999), weight decay 0.05), no schedule; each step draws a batch
of random windows from the training stream (:mod:`devbook.language.data`). Training through
the run store is :meth:`devbook.setting.Setting.train`.
"""

from __future__ import annotations

from typing import Any

import torch

from devbook.language.config import validate
from devbook.language.data import language_data
from devbook.language.model import loss_fn, make_model, quiet
from devbook.rng import generator
from devbook.training import StandardTrainer


def make_trainer(config: dict[str, Any], device: str | torch.device = "cpu") -> StandardTrainer:
    """A freshly initialised trainer for ``config`` (init and batches seeded from it).

    Parameters
    ----------
    config : dict
        A full language run config.
    device : str or torch.device
        Where the weights train (batches are drawn on the CPU and moved there).

    Returns
    -------
    devbook.training.StandardTrainer
        Model, AdamW and the seeded ``"data"`` generator.
    """
    config = validate(dict(config))
    data = language_data(config)
    with quiet():  # HookedTransformer.to prints the device it moves to
        model = make_model(config).to(device)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config["lr"], betas=(0.9, 0.999), weight_decay=config["weight_decay"]
    )
    batch_size, n_ctx = config["batch_size"], config["n_ctx"]

    def batch_loss(trainer: StandardTrainer, step: int) -> torch.Tensor:
        tokens = data.sample("train", batch_size, n_ctx, trainer.generators["data"])
        return loss_fn(trainer.model, (tokens.to(device),))

    return StandardTrainer(model, opt, batch_loss, None, {"data": generator(config["seed"], "train-data")})
