"""Calibration presets of the regression setting (paper App. E.3): the ε × nβ × γ grid, the
checkpoints it is probed at, and the sizes of the calibration chapter's other experiments.

The grid holds the SGLD preset's own (ε, nβ, γ) (nβ ``None`` = m / log m of the SGLD batch) and
values around it up to the authors' nβ = 60 and γ = 6 and beyond, so
:func:`devbook.calibration.recommend` can confirm the preset or move away from it. The stage,
forms and Hessian chapters sample with the recommendation
(:meth:`devbook.setting.Setting.calibrated_sgld`); book/theory/calibration.md shows the grid.
The generic pieces (:func:`grid`, :func:`probe_steps`, :func:`cell_preset`,
:func:`recommendation_text`) live in :mod:`devbook.calibrated`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from devbook.calibrated import calibration_config as _grid_config
from devbook.calibrated import cell_preset, grid, probe_steps, recommendation_text
from devbook.calibration import Grid, Recommendation, calibrate_run
from devbook.setting import Setting, SGLDPreset
from devbook.store import Run
from devbook.sweep import LLCSweep, sweep_llc

__all__ = [
    "CALIBRATION_PRESETS",
    "calibration_config",
    "cell_preset",
    "grid",
    "probe_steps",
    "recommendation_text",
    "roughness",
    "seed_comparison",
    "temperature_grid",
    "temperature_sweep",
]

#: Per preset: ``epsilon``, ``nbeta`` (None = m / log m), ``gamma``: the grid's values;
#: ``chains``: chains per cell (the SGLD preset's draws, burn-in and batch are kept);
#: ``probes``: where the grid is probed, as fractions of the run's LLC checkpoints (0 = first
#: after initialisation, 1 = last); ``temperatures``: nβ values of the E.3.1 sweep, as
#: multiples of m / log m (n / log n is always added), at the recommended gradient and
#: localisation scales;
#: ``seed_steps``: how many consecutive checkpoints (the last of the LLC sweep) the same-seed /
#: fresh-seed comparison of E.3.2 uses, with ``seed_chains`` chains; ``fresh_seed``: the first
#: fresh seed.
#: ``cpu`` is sized to the chapter's 10-minute budget on one core (about 11 s per chain of
#: 200 steps on this model): 12 cells of 2 chains at 4 checkpoints. Its probes include two in
#: the middle of the log-spaced checkpoints (the first transition), because a grid probed only
#: at step 526 and the end recommended nβ = 66.7, γ = 10, whose chains then all diverged at
#: step 3,244 of the sweep.
CALIBRATION_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "epsilon": [1e-3, 3e-3],
        "nbeta": [None, 66.7],
        "gamma": [100.0],
        "chains": 2,
        "probes": [0.3, 1.0],
        "temperatures": [0.5, 1.0],
        "seed_steps": 4,
        "seed_chains": 1,
        "fresh_seed": 1000,
    },
    "cpu": {
        "epsilon": [1e-3, 3e-3],
        "nbeta": [None, 66.7, 200.0],
        "gamma": [10.0, 100.0],
        "chains": 2,
        "probes": [0.3, 0.4, 0.5, 1.0],
        "temperatures": [0.25, 1.0, 4.0, 16.0],
        "seed_steps": 10,
        "seed_chains": 1,
        "fresh_seed": 1000,
    },
    "paper": {
        "epsilon": [1e-4, 3e-4, 1e-3, 3e-3],
        "nbeta": [20.0, 66.7, 200.0],
        "gamma": [2.0, 6.67, 20.0],
        "chains": 5,
        "probes": [0.05, 0.5, 1.0],
        "temperatures": [0.25, 0.5, 1.0, 2.0, 4.0],
        "seed_steps": 24,
        "seed_chains": 4,
        "fresh_seed": 1000,
    },
}


def calibration_config(preset: str, **overrides: Any) -> dict[str, Any]:
    """The calibration sizes of ``preset`` with ``overrides`` (checked: names, types, ranges)."""
    cfg = _grid_config(CALIBRATION_PRESETS, preset, **overrides)
    if cfg["seed_steps"] < 3 or cfg["fresh_seed"] < 1 or cfg["seed_chains"] < 1:
        raise ValueError(
            "need seed_steps >= 3, fresh_seed >= 1 and seed_chains >= 1; got "
            f"{cfg['seed_steps']}, {cfg['fresh_seed']}, {cfg['seed_chains']}"
        )
    if not cfg["temperatures"] or min(cfg["temperatures"]) <= 0:
        raise ValueError(f"temperatures must be positive multiples of m / log m, got {cfg['temperatures']}")
    return cfg


def temperature_grid(rec: Recommendation, sgld: SGLDPreset, multiples: list[float]) -> Grid:
    """nβ at ``multiples`` of m / log m and at the Watanabe temperature n / log n of the SGLD
    data set, with the recommendation's gradient scale ε·nβ/2 and localisation scale ε·γ/2 held
    fixed (so ε = 2·scale/nβ shrinks as nβ grows; E.3.1)."""
    from devbook.llc import default_nbeta

    g = rec.config.epsilon * rec.config.nbeta / 2
    loc = rec.config.epsilon * rec.config.gamma / 2
    nbetas = [float(k * default_nbeta(sgld.batch_size)) for k in multiples]
    nbetas = sorted(set(nbetas) | {float(default_nbeta(sgld.num_samples))})
    eps = [2 * g / b for b in nbetas]
    return Grid(tuple(eps), tuple(nbetas), tuple(2 * loc / e for e in eps))


def temperature_sweep(setting: Setting, run: Run, sgld: SGLDPreset, step: int, grid: Grid) -> pd.DataFrame:
    """λ̂ and λ̂/nβ at checkpoint ``step`` for each cell of a :func:`temperature_grid` (cached)."""
    table = calibrate_run(setting, run, sgld, [step], grid)
    return table.assign(llc_over_nbeta=table["llc"] / table["nbeta"])


def roughness(values: np.ndarray) -> float:
    """Jitter of a curve over consecutive checkpoints: the RMS of its second differences over
    the mean of |values| (0 for a straight line; nan with fewer than 3 finite points)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 3 or not np.abs(v).mean() > 0:
        return float("nan")
    return float(np.sqrt(np.mean(np.diff(v, 2) ** 2)) / np.abs(v).mean())


def seed_comparison(
    setting: Setting, run: Run, sgld: SGLDPreset, sweep: LLCSweep, cfg: dict[str, Any]
) -> pd.DataFrame:
    """The LLC curve at the last ``cfg["seed_steps"]`` checkpoints of ``sweep`` with the same seed at
    every checkpoint (chains 0..k−1 of the cached sweep: a chain's streams depend only on
    (seed, chain)) against a fresh seed at each checkpoint (k = ``cfg["seed_chains"]`` chains,
    cached in the run store). Columns: step, same_seed, fresh_seed, fresh seed used."""
    k = cfg["seed_chains"]
    if k > sgld.num_chains:
        raise ValueError(f"seed_chains={k} exceeds the sweep's {sgld.num_chains} chains")
    trained = [int(s) for s in sweep.steps if s > 0]  # no LLC at a random initialisation
    steps = trained[-cfg["seed_steps"] :]  # consecutive checkpoints: jitter, not the curve's shape
    data, config = setting.sgld_data(run.config, sgld), replace(sgld, num_chains=k).sgld_config()
    rows = []
    for i, step in enumerate(steps):
        same = float(np.nanmean(sweep.traces[step][:k, -1]))
        seed = cfg["fresh_seed"] + i  # the sampler's seed only: the SGLD data set stays the same
        fresh = sweep_llc(
            run,
            lambda s: setting.load_model(run, s),
            setting.loss_fn,
            data,
            config,
            seed=seed,
            steps=[step],
            progress=False,
        )
        rows.append({"step": step, "same_seed": same, "fresh_seed": float(fresh.llc[0]), "seed": seed})
    return pd.DataFrame(rows)
