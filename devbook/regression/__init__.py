"""The linear-regression setting (paper §2.2, App. D, E.2): data, model, training, metrics.

Typical use (the regression chapters)::

    from devbook.regression import SETTING
    config = SETTING.config("cpu", seed=1)
    run = SETTING.train(config)               # a devbook.store.Run, trained once, resumable
    for step in SETTING.llc_steps(config):
        model = SETTING.load_model(run, step)
    # run.checkpoint_steps() also holds the dense ED checkpoints (SETTING.ed_steps(config))
"""

from devbook.regression.config import (
    CPU_PRESET_NOTE,
    CPU_SGLD_NOTE,
    EVAL_PRESETS,
    RUN_PRESETS,
    SGLD_PRESETS,
    validate,
)
from devbook.regression.data import Batch, RegressionData, fixed_dataset, readout, sgld_dataset, tokenise
from devbook.regression.model import PAPER_PARAMETER_COUNT, RegressionTransformer, loss_fn
from devbook.regression.setting import SETTING, RegressionSetting
from devbook.regression.train import make_optimizer, make_trainer, one_cycle_lr

__all__ = [
    "CPU_PRESET_NOTE",
    "CPU_SGLD_NOTE",
    "EVAL_PRESETS",
    "RUN_PRESETS",
    "SGLD_PRESETS",
    "validate",
    "Batch",
    "RegressionData",
    "fixed_dataset",
    "readout",
    "sgld_dataset",
    "tokenise",
    "PAPER_PARAMETER_COUNT",
    "RegressionTransformer",
    "loss_fn",
    "SETTING",
    "RegressionSetting",
    "make_optimizer",
    "make_trainer",
    "one_cycle_lr",
]
