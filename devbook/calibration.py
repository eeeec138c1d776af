"""Calibrating the SGLD sampler at a few checkpoints of a run (paper App. E.3).

:func:`calibration_traces` runs one (ε, nβ) cell at one checkpoint, counting diverged chains
instead of failing, and caches it in the run store; :func:`trace_table` summarises cells by
their estimate, divergences and the rise of the mean online trace over the second half of the
draws (near 0 for a converged, flat trace). Used by the regression stages chapter.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from devbook.llc import LLCDivergenceError, estimate_llc
from devbook.setting import Setting, SGLDPreset
from devbook.store import Run


def calibration_traces(setting: Setting, run: Run, sgld: SGLDPreset, step: int) -> dict[str, Any]:
    """Online LLC traces of every chain at checkpoint ``step`` with the sampler ``sgld``.

    Returns ``{"trace": (C, T), "mean": λ̂ (nan if every chain diverged), "diverged": count}``,
    computed once and cached in ``run`` (key: the step and ``sgld``). Divergences are the point
    of a calibration, so they are counted, not warned about.
    """

    def compute() -> dict[str, np.ndarray]:
        model = setting.load_model(run, step)
        data = setting.sgld_data(run.config, sgld)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                res = estimate_llc(model, setting.loss_fn, data, sgld.sgld_config(), seed=sgld.seed)
                return {
                    "trace": res.llc_trace_per_chain,
                    "mean": np.array(res.mean),
                    "diverged": np.array(res.diagnosis.count("diverged")),
                }
            except LLCDivergenceError:  # every chain diverged
                return {
                    "trace": np.full((sgld.num_chains, sgld.num_draws), np.nan),
                    "mean": np.array(np.nan),
                    "diverged": np.array(sgld.num_chains),
                }

    return run.cached("llc-calibration", {"step": int(step), **sgld.to_dict()}, compute)


def trace_rise(trace: np.ndarray) -> float:
    """Relative rise of the mean online trace over the second half of the draws (nan if none)."""
    ok = np.isfinite(trace).all(axis=1)
    if not ok.any():
        return float("nan")
    mean_trace = trace[ok].mean(axis=0)
    half = mean_trace[len(mean_trace) // 2]
    return float((mean_trace[-1] - half) / abs(mean_trace[-1]))


def calibration_grid(
    setting: Setting,
    run: Run,
    sgld: SGLDPreset,
    steps: Iterable[int],
    pairs: Iterable[tuple[float, float | None]],
) -> dict[tuple, dict[str, Any]]:
    """:func:`calibration_traces` for every checkpoint and (ε, nβ) pair (nβ None = m / log m)."""
    return {
        (int(s), e, nb): calibration_traces(setting, run, replace(sgld, epsilon=e, nbeta=nb), s)
        for s in steps
        for e, nb in pairs
    }


def trace_table(cells: dict[tuple, dict[str, Any]], batch_size: int) -> pd.DataFrame:
    """One row per cell: step, ε, nβ (resolved), λ̂, diverged chains, rise over the 2nd half."""
    rows = []
    for (step, eps, nbeta), c in cells.items():
        nb = SGLDPreset(
            epsilon=eps,
            gamma=0.0,
            num_chains=1,
            num_draws=1,
            batch_size=batch_size,
            num_samples=batch_size,
            nbeta=nbeta,
        ).resolved_nbeta
        rows.append(
            {
                "step": step,
                "epsilon": eps,
                "nbeta": nb,
                "llc": float(c["mean"]),
                "diverged": int(c["diverged"]),
                "rise over 2nd half": trace_rise(c["trace"]),
            }
        )
    return pd.DataFrame(rows)
