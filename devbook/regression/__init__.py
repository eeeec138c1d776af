"""The linear-regression setting (SPEC §4): data, model, training, metrics.

Typical use (regression chapters)::

    from devbook.regression import regression_config, train, load_model
    config = regression_config("cpu", seed=1)
    run = train(config)                       # a devbook.store.Run, trained once, resumable
    for step in llc_checkpoint_steps(config): model = load_model(run, step)
    # run.checkpoint_steps() also holds the dense ED checkpoints (ed_checkpoint_steps(config))
"""

from devbook.regression.config import CPU_PRESET_NOTE, TABLE, regression_config, validate
from devbook.regression.data import (Batch, RegressionData, derive_seed, fixed_dataset,
                                     generator, readout, sgld_dataset, tokenise)
from devbook.regression.model import (PAPER_PARAMETER_COUNT, RegressionTransformer, loss_fn,
                                      parameter_count)
from devbook.regression.train import (ed_checkpoint_steps, llc_checkpoint_steps, load_model, make_optimizer,
                                      make_trainer, train)

__all__ = [
    "CPU_PRESET_NOTE", "TABLE", "regression_config", "validate", "Batch", "RegressionData",
    "derive_seed", "fixed_dataset", "generator", "readout", "sgld_dataset", "tokenise", "PAPER_PARAMETER_COUNT",
    "RegressionTransformer", "loss_fn", "parameter_count",
    "ed_checkpoint_steps", "llc_checkpoint_steps", "load_model",
    "make_optimizer", "make_trainer", "train",
]
