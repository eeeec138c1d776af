"""The linear-regression setting (SPEC §4): data, model, training, metrics.

Typical use (regression chapters)::

    from devbook.regression import regression_config, train, load_model
    config = regression_config("cpu", seed=1)
    run = train(config)                       # a devbook.store.Run, trained once, resumable
    for step in run.checkpoint_steps(): model = load_model(run, step)
"""

from devbook.regression.config import CPU_PRESET_NOTE, TABLE, regression_config, validate
from devbook.regression.data import (Batch, RegressionData, derive_seed, fixed_dataset,
                                     generator, readout, tokenise)
from devbook.regression.model import (PAPER_PARAMETER_COUNT, RegressionTransformer, loss_fn,
                                      parameter_count)
from devbook.regression.train import (checkpoint_schedule, load_model, make_optimizer,
                                      make_trainer, train)

__all__ = [
    "CPU_PRESET_NOTE", "TABLE", "regression_config", "validate", "Batch", "RegressionData",
    "derive_seed", "fixed_dataset", "generator", "readout", "tokenise", "PAPER_PARAMETER_COUNT",
    "RegressionTransformer", "loss_fn", "parameter_count", "checkpoint_schedule", "load_model",
    "make_optimizer", "make_trainer", "train",
]
