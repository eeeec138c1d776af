"""Training the language transformer through the run store (SPEC §5; paper E.1.2).

AdamW (lr 1e-3, betas (0.9, 0.999), weight decay 0.05), no schedule; each step draws a batch
of random windows from the training stream (:mod:`devbook.language.data`). Checkpoints: the
union of log- and linear-spaced steps (:func:`checkpoints`). Resumable
through :func:`devbook.training.train_run`, with a progress bar.

API: :func:`train` ``(config) -> Run``, :func:`load_model` ``(run, step)``,
:func:`make_trainer`, :func:`checkpoints`. Used by ``book/language/stages.md``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from devbook.language.config import validate
from devbook.language.data import language_data
from devbook.language.model import loss_fn, make_model
from devbook.store import Run, open_run
from devbook.training import StandardTrainer, checkpoint_schedule, train_run


def generator(seed: int, purpose: str) -> torch.Generator:
    """A generator seeded from ``(seed, purpose)`` (independent streams per purpose)."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def checkpoints(config: dict[str, Any]) -> list[int]:
    """Checkpoint steps: ``n_log`` log-spaced in ``[1, T]`` ∪ ``n_linear`` linear-spaced in ``[0, T]``."""
    return checkpoint_schedule(config["num_steps"], config["n_log_checkpoints"],
                               config["n_linear_checkpoints"])


def make_trainer(config: dict[str, Any]) -> StandardTrainer:
    """A freshly initialised trainer for ``config`` (init and batches seeded from it)."""
    config = validate(dict(config))
    data = language_data(config)
    model = make_model(config)
    opt = torch.optim.AdamW(model.parameters(), lr=config["lr"], betas=(0.9, 0.999),
                            weight_decay=config["weight_decay"])
    batch_size, n_ctx = config["batch_size"], config["n_ctx"]

    def batch_loss(trainer: StandardTrainer, step: int) -> torch.Tensor:
        tokens = data.sample("train", batch_size, n_ctx, trainer.generators["data"])
        return loss_fn(trainer.model, (tokens,))

    return StandardTrainer(model, opt, batch_loss, None,
                           {"data": generator(config["seed"], "train-data")})


def train(config: dict[str, Any], *, progress: bool = True, root: Path | None = None) -> Run:
    """The trained run of ``config`` (trained and checkpointed through the store if needed).

    Metrics log columns: ``step``, ``loss`` (mean training loss over ``log_every`` updates), ``lr``.
    """
    config = validate(dict(config))
    run = open_run(config, root)
    return train_run(run, lambda: make_trainer(config), config["num_steps"], checkpoints(config),
                     log_every=config["log_every"], progress=progress,
                     desc=f"language {config['n_layers']}L seed {config['seed']}")


def load_model(run: Run, step: int) -> torch.nn.Module:
    """The model of ``run`` with the weights of checkpoint ``step``, in eval mode."""
    model = make_model(run.config)
    run.load_into(model, step)
    return model.eval()
