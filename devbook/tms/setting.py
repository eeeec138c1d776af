"""The toy model of superposition as a :class:`devbook.setting.Setting`.

``SETTING`` is the instance the chapter uses::

    from devbook.tms import SETTING
    config = SETTING.config("cpu", seed=0)
    run = SETTING.train(config)              # all seeds at once, trained once, resumable
    result = SETTING.result(run)             # every checkpoint of every seed, with its losses
    sgld = SETTING.sgld("cpu")               # an SGLDPreset (nβ = n, explicit)

One run holds ``num_seeds`` initialisations stacked (:class:`devbook.tms.train.TMSStack`), so
the generic per-run LLC sweep does not apply; the LLC of one seed at one checkpoint is
:func:`devbook.tms.evaluate.llc_estimates`, on that seed's own training set
(:meth:`TMSSetting.sgld_data`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from devbook.setting import Batch, Setting, SGLDPreset
from devbook.store import Run
from devbook.tms import config as cfg
from devbook.tms.model import tms_loss_fn
from devbook.tms.train import TMSStack, TMSTrainer, TrainResult, init_params, load_result, run_seeds
from devbook.training import checkpoint_schedule


class TMSSetting(Setting):
    """TMS, f(x) = ReLU(WᵀW x + b), W (r, c), trained from many initialisations at once.

    Checkpoints: step 0 and ``num_checkpoints`` log-spaced steps in [1, ``num_steps``]
    (:func:`devbook.training.checkpoint_schedule` with no linear-spaced steps).
    """

    name = cfg.SETTING
    run_presets = cfg.RUN_PRESETS
    sgld_presets = cfg.SGLD_PRESETS
    eval_presets = cfg.EVAL_PRESETS

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return cfg.validate(config)

    def eval_config(self, preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
        """Evaluation settings of ``preset`` with ``overrides``, checked (the ladder too)."""
        return cfg.validate_eval(super().eval_config(preset, **overrides))

    def make_model(self, config: dict[str, Any]) -> nn.Module:
        W, b, _ = init_params(config, run_seeds(config), with_data=False)
        return TMSStack(W, b)

    def make_trainer(self, config: dict[str, Any], device: str | torch.device = "cpu") -> TMSTrainer:
        if torch.device(device).type != "cpu":
            raise ValueError("TMS trains on the CPU (18 parameters per seed)")
        return TMSTrainer(config)

    def loss_fn(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return tms_loss_fn(model, batch)

    def checkpoint_steps(self, config: dict[str, Any]) -> list[int]:
        return checkpoint_schedule(config["num_steps"], config["num_checkpoints"], 0)

    def sgld_data(self, config: dict[str, Any], sgld: SGLDPreset) -> Batch:
        """Every seed's training set, its first ``sgld.num_samples`` samples: ``((S, m, c),)``.

        The LLC of seed s is estimated on row s (its own training set, as in the seed's
        study), so ``num_samples`` may not exceed the training-set size ``n``.
        """
        if sgld.num_samples > config["n"]:
            raise ValueError(
                f"SGLD num_samples ({sgld.num_samples}) exceeds the training-set "
                f"size n ({config['n']}): SGLD runs on each seed's training set"
            )
        data = init_params(config, run_seeds(config))[2]
        return (data[:, : sgld.num_samples],)

    def train_description(self, config: dict[str, Any]) -> str:
        return f"TMS {config['num_seeds']} seeds (seed {config['seed']})"

    def llc_sweep(self, run: Run, sgld: SGLDPreset, **kwargs: Any) -> Any:
        """Not defined for a stack of seeds: use :func:`devbook.tms.evaluate.llc_estimates`."""
        raise NotImplementedError(
            "a TMS run stacks many seeds; estimate the LLC of one seed at "
            "one checkpoint with devbook.tms.evaluate.llc_estimates"
        )

    def result(self, run: Run) -> TrainResult:
        """Every checkpoint of every seed of ``run``, with losses (:func:`devbook.tms.train.load_result`)."""
        return load_result(run)


SETTING = TMSSetting()
