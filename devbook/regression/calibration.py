"""Calibration presets of the regression setting (paper App. E.3): the ε × nβ × γ grid around the
SGLD preset, the checkpoints it is probed at, and the sizes of the calibration chapter.

The grid holds the SGLD preset's own (ε, nβ, γ) (nβ ``None`` = m / log m of the SGLD batch) and
values a factor ~3 on either side, so :func:`devbook.calibration.recommend` can confirm the
preset or move away from it. Used by book/theory/calibration.md through :func:`grid` and
:func:`probe_steps`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from devbook import presets
from devbook.calibration import Grid, Recommendation, calibrate_run
from devbook.setting import Setting, SGLDPreset
from devbook.store import Run
from devbook.sweep import LLCSweep, sweep_llc

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
#: 200 steps on this model), so its cells have 2 chains.
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
        "epsilon": [3e-4, 1e-3, 3e-3],
        "nbeta": [None, 66.7],
        "gamma": [30.0, 100.0],
        "chains": 2,
        "probes": [0.3, 1.0],
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
    cfg = presets.resolve(CALIBRATION_PRESETS, preset, overrides)
    for key in ("epsilon", "gamma", "probes"):
        if not cfg[key]:
            raise ValueError(f"calibration {key} must not be empty")
    if not all(0 <= p <= 1 for p in cfg["probes"]):
        raise ValueError(f"probes must be fractions in [0, 1], got {cfg['probes']}")
    if cfg["seed_steps"] < 3 or cfg["fresh_seed"] < 1 or cfg["chains"] < 1 or cfg["seed_chains"] < 1:
        raise ValueError(
            "need seed_steps >= 3, fresh_seed >= 1, chains >= 1 and seed_chains >= 1; got "
            f"{cfg['seed_steps']}, {cfg['fresh_seed']}, {cfg['chains']}, {cfg['seed_chains']}"
        )
    if not cfg["temperatures"] or min(cfg["temperatures"]) <= 0:
        raise ValueError(f"temperatures must be positive multiples of m / log m, got {cfg['temperatures']}")
    return cfg


def grid(cfg: dict[str, Any], sgld: SGLDPreset) -> Grid:
    """The grid of a calibration config for the SGLD batch of ``sgld`` (nβ None = m / log m)."""
    nbetas = [SGLDPreset.from_dict({**sgld.to_dict(), "nbeta": b}).resolved_nbeta for b in cfg["nbeta"]]
    return Grid.product(cfg["epsilon"], nbetas, cfg["gamma"])


def probe_steps(steps: list[int], probes: list[float]) -> list[int]:
    """The checkpoints at fractions ``probes`` of the sorted ``steps`` (nearest index, distinct;
    step 0, the initialisation, is skipped: no sampler is calibrated at a random init)."""
    ordered = [s for s in sorted(steps) if s > 0]
    if not ordered:
        raise ValueError("no checkpoint after initialisation to calibrate at")
    return sorted({ordered[round(p * (len(ordered) - 1))] for p in probes})


def cell_preset(sgld: SGLDPreset, cfg: dict[str, Any]) -> SGLDPreset:
    """The SGLD preset the grid's cells run with: ``sgld`` with ``cfg["chains"]`` chains."""
    return replace(sgld, num_chains=cfg["chains"])


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


def recommendation_text(table: pd.DataFrame, sgld: SGLDPreset) -> tuple[Recommendation | None, str]:
    """:func:`devbook.calibration.recommend` on ``table`` for the preset ``sgld``, and its
    reasons as markdown; ``(None, the error naming every failed cell)`` when no cell is healthy."""
    from devbook.calibration import CalibrationError, recommend

    try:
        rec = recommend(table, sgld.sgld_config())
    except CalibrationError as err:
        first, *cells = str(err).split("\n")
        return None, f"**No recommendation:** {first}\n\n" + "\n".join(f"- {c.strip()}" for c in cells)
    return rec, "\n".join(
        f"- **{name}** — {rec.reasons[key]}"
        for key, name in (("epsilon", "ε"), ("nbeta", "nβ"), ("gamma", "γ"))
    )


def preset_vs_recommendation(setting: str, sgld: SGLDPreset, rec: Recommendation | None) -> pd.DataFrame:
    """One row per sampler value (ε, nβ, γ): the preset's, the recommendation's (nan if none)
    and whether they are equal (to 1e-9 relative)."""
    preset = {"epsilon": sgld.epsilon, "nbeta": sgld.resolved_nbeta, "gamma": sgld.gamma}
    rows = []
    for key, name in (("epsilon", "ε"), ("nbeta", "nβ"), ("gamma", "γ")):
        ours = rec.values[key] if rec is not None else float("nan")
        same = bool(np.isclose(preset[key], ours, rtol=1e-9, atol=0.0))
        rows.append(
            {"setting": setting, "value": name, "preset": preset[key], "recommend": ours, "equal": same}
        )
    return pd.DataFrame(rows)
