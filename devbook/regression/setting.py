"""The linear-regression setting as a :class:`devbook.setting.Setting` (paper §2.2, App. E.2).

``SETTING`` is the instance the chapters use::

    from devbook.regression import SETTING
    config = SETTING.config("cpu", seed=1)
    run = SETTING.train(config)                  # a devbook.store.Run, trained once, resumable
    model = SETTING.load_model(run, SETTING.llc_steps(config)[-1])
    sweep = SETTING.llc_sweep(run, SETTING.sgld("cpu"))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from devbook.regression import config as cfg
from devbook.regression.calibration import CALIBRATION_PRESETS
from devbook.regression.data import sgld_dataset
from devbook.regression.model import RegressionTransformer, loss_fn
from devbook.regression.train import make_trainer
from devbook.setting import Batch, Setting, SGLDPreset
from devbook.training import StandardTrainer, checkpoint_schedule


class RegressionSetting(Setting):
    """In-context linear regression: the 2-layer transformer of paper App. E.2.

    Checkpoints: the union of log- and linear-spaced steps for the LLC sweep and the stage
    metrics (:meth:`llc_steps`; 190 at ``paper``) and ``n_ed_checkpoints`` linear-spaced steps
    for essential dynamics (:meth:`ed_steps`; 5,000 at ``paper``); the run saves both.
    """

    name = cfg.NAME
    run_presets = cfg.RUN_PRESETS
    sgld_presets = cfg.SGLD_PRESETS
    calibration_presets = CALIBRATION_PRESETS
    eval_presets = cfg.EVAL_PRESETS

    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        return cfg.validate(config)

    def make_model(self, config: dict[str, Any]) -> nn.Module:
        return RegressionTransformer.from_config(config)

    def make_trainer(self, config: dict[str, Any], device: str | torch.device = "cpu") -> StandardTrainer:
        return make_trainer(config, device)

    def loss_fn(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        return loss_fn(model, batch)

    def llc_steps(self, config: dict[str, Any]) -> list[int]:
        return checkpoint_schedule(
            config["num_steps"], config["n_log_checkpoints"], config["n_linear_checkpoints"]
        )

    def ed_steps(self, config: dict[str, Any]) -> list[int]:
        """The dense, linear-spaced checkpoints of essential dynamics (paper App. E.2.5)."""
        return checkpoint_schedule(config["num_steps"], 0, config["n_ed_checkpoints"])

    def checkpoint_steps(self, config: dict[str, Any]) -> list[int]:
        return sorted(set(self.llc_steps(config)) | set(self.ed_steps(config)))

    def sgld_data(self, config: dict[str, Any], sgld: SGLDPreset) -> Batch:
        return sgld_dataset(config, sgld.num_samples, seed=sgld.seed)

    def train_description(self, config: dict[str, Any]) -> str:
        return f"regression seed {config['seed']}"


#: The instance the chapters use.
SETTING = RegressionSetting()
