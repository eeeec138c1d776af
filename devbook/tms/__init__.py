"""The toy model of superposition (the "growth and form" study): model, data, vectorised
training through the run store, k-gons, plateaus, LLCs and posterior sampling.

Typical use (``book/tms/growth-and-form.md``)::

    from devbook.tms import SETTING
    config = SETTING.config("cpu", seed=0)
    run = SETTING.train(config)         # 96 seeds trained together, once, resumable
    result = SETTING.result(run)        # checkpoints W (T, S, 2, 6), b, losses
    sgld = SETTING.sgld("cpu")          # SGLDPreset for the plateau LLCs
    evals = SETTING.eval_config("cpu")  # plateau selection, LLC curve, posterior ladder

Modules: :mod:`~devbook.tms.config` (preset tables), :mod:`~devbook.tms.setting`,
:mod:`~devbook.tms.model`, :mod:`~devbook.tms.data`, :mod:`~devbook.tms.train`,
:mod:`~devbook.tms.kgon`, :mod:`~devbook.tms.analysis`, :mod:`~devbook.tms.posterior`,
:mod:`~devbook.tms.evaluate` (the cached evaluations) and :mod:`~devbook.tms.plots`.
"""

from devbook.tms.config import EVAL_PRESETS, RUN_PRESETS, SGLD_PRESETS, validate, validate_eval
from devbook.tms.setting import SETTING, TMSSetting

__all__ = [
    "EVAL_PRESETS",
    "RUN_PRESETS",
    "SGLD_PRESETS",
    "SETTING",
    "TMSSetting",
    "validate",
    "validate_eval",
]
