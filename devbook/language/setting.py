"""The language setting as a :class:`devbook.setting.Setting` (paper §2.1, App. C, E.1).

``SETTING`` is the instance the language chapter uses::

    from devbook.language import SETTING
    config = SETTING.config("cpu", n_layers=2)
    run = SETTING.train(config)
    sweep = SETTING.llc_sweep(run, SETTING.sgld("cpu"))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from devbook.language import config as cfg
from devbook.language.data import language_data
from devbook.language.model import loss_fn, make_model, quiet
from devbook.language.proxy import ProxyRecorder, proxy_spec
from devbook.language.train import make_trainer
from devbook.setting import Batch, Setting, SGLDPreset
from devbook.store import Run
from devbook.training import StandardTrainer, checkpoint_schedule

SGLD_DATA_SEED = 1  # offsets of the fixed SGLD windows (independent of the SGLD seed)


class LanguageSetting(Setting):
    """The 1- or 2-layer attention-only TransformerLens model on the offline corpus."""

    name = cfg.NAME
    run_presets = cfg.RUN_PRESETS
    sgld_presets = cfg.SGLD_PRESETS
    calibration_presets = cfg.CALIBRATION_PRESETS
    eval_presets = cfg.EVAL_PRESETS

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return cfg.validate(config)

    def make_model(self, config: dict[str, Any]) -> nn.Module:
        return make_model(config)

    def make_trainer(self, config: dict[str, Any], device: str | torch.device = "cpu") -> StandardTrainer:
        return make_trainer(config, device)

    def loss_fn(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return loss_fn(model, batch)

    def checkpoint_steps(self, config: dict[str, Any]) -> list[int]:
        horizon = max(config["checkpoint_horizon"], config["num_steps"])
        steps = checkpoint_schedule(horizon, config["n_log_checkpoints"], config["n_linear_checkpoints"])
        return sorted({s for s in steps if s <= config["num_steps"]} | {config["num_steps"]})

    def load_model(self, run: Run, step: int, device: str | torch.device = "cpu") -> nn.Module:
        with quiet():  # HookedTransformer.to prints the device it moves to
            return super().load_model(run, step, device)

    def sgld_data(self, config: dict[str, Any], sgld: SGLDPreset) -> Batch:
        data = language_data(config)
        return (data.fixed("sgld", sgld.num_samples, config["n_ctx"], seed=SGLD_DATA_SEED),)

    def recorder(self, run: Run) -> ProxyRecorder:
        """The forms chapter's proxy, recorded while the run trains (:mod:`devbook.language.proxy`)."""
        return ProxyRecorder(run, proxy_spec(run.config))

    def train_description(self, config: dict[str, Any]) -> str:
        return f"language {config['n_layers']}L seed {config['seed']}"


#: The instance the chapters use.
SETTING = LanguageSetting()
