"""Training the regression transformer through the run store (SPEC §4; paper App. E.2.3).

Adam (β = (0.9, 0.999), no weight decay) with OneCycleLR: max lr 3e-3, 50 % linear warm-up then
linear annealing, ``div_factor = final_div_factor = steps/2 − 1`` (so the lr starts at
``max_lr / (steps/2 − 1)``); momentum is not cycled (betas stay at (0.9, 0.999)). Batch 256,
one fresh batch per step (single epoch). Checkpoints: the union of log-spaced and
linear-spaced steps (:func:`devbook.training.checkpoint_schedule`).

API:

- :func:`train` ``(config) -> Run``: the trained run for a config from
  :func:`devbook.regression.config.regression_config` (trained, resumably, only if not on disk).
- :func:`load_model` ``(run, step) -> RegressionTransformer`` (eval mode).
- :func:`llc_checkpoint_steps` ``(config)``: the log ∪ linear schedule for the LLC sweep and the
  stage metrics (190 steps at paper); :func:`ed_checkpoint_steps` ``(config)``: the dense
  linear schedule for essential dynamics (5,000 at paper). The run saves the union of both.
- :func:`make_trainer`, :func:`make_optimizer`.

Used by every regression chapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from devbook.regression.config import validate
from devbook.regression.data import RegressionData, generator
from devbook.regression.model import RegressionTransformer, loss_fn
from devbook.store import Run, open_run
from devbook.training import StandardTrainer, checkpoint_schedule, train_run


def llc_checkpoint_steps(config: dict[str, Any]) -> list[int]:
    """The LLC/metrics checkpoints of a run: log-spaced ∪ linear-spaced (SPEC §4)."""
    return checkpoint_schedule(config["num_steps"], config["n_log_checkpoints"],
                               config["n_linear_checkpoints"])


def ed_checkpoint_steps(config: dict[str, Any]) -> list[int]:
    """The essential-dynamics checkpoints: ``n_ed_checkpoints`` linear-spaced steps in [0, T]."""
    return checkpoint_schedule(config["num_steps"], 0, config["n_ed_checkpoints"])


def make_optimizer(model: torch.nn.Module, total_steps: int, max_lr: float
                   ) -> tuple[torch.optim.Adam, torch.optim.lr_scheduler.OneCycleLR]:
    """Adam + OneCycleLR as in the authors' code (see the module docstring)."""
    div = total_steps / 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=max_lr, betas=(0.9, 0.999), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=max_lr, total_steps=total_steps, pct_start=0.5, anneal_strategy="linear",
        div_factor=div, final_div_factor=div, cycle_momentum=False)
    return opt, sched


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

    return StandardTrainer(model, opt, batch_loss, sched,
                           {"data": generator(config["seed"], "train-data")})


def train(config: dict[str, Any], *, progress: bool = True, root: Path | None = None,
          device: str | torch.device = "cpu") -> Run:
    """The trained run of ``config`` (trains and checkpoints it through the store if needed).

    ``device`` (e.g. ``"cuda"`` for the paper preset) is not part of the run's key; resuming on
    another device works (checkpoints are stored on the CPU). Metrics log columns: ``step``,
    ``loss`` (mean training loss over the last ``log_every`` updates), ``lr``.
    """
    config = validate(dict(config))
    run = open_run(config, root)
    steps = sorted(set(llc_checkpoint_steps(config)) | set(ed_checkpoint_steps(config)))
    return train_run(run, lambda: make_trainer(config, device), config["num_steps"], steps,
                     log_every=config["log_every"], progress=progress,
                     desc=f"regression seed {config['seed']}")


def load_model(run: Run, step: int, device: str | torch.device = "cpu") -> RegressionTransformer:
    """The model of ``run`` with the weights of checkpoint ``step``, in eval mode, on ``device``."""
    model = RegressionTransformer.from_config(run.config)
    run.load_into(model, step)
    return model.eval().to(device)
