"""The SGLD settings a chapter samples with: :func:`devbook.calibration.recommend` on its own run.

Every LLC number of the regression and language chapters depends on ε, nβ and γ. Rather than
typing them, a chapter calls :meth:`devbook.setting.Setting.calibrated_sgld`, which runs the
setting's calibration grid (``calibration_presets``: the ε × nβ × γ values, chains per cell and
the probed checkpoints) on the chapter's run — each checkpoint's grid cached in the run store,
so the calibration chapter and the stage chapters share it — and returns the setting's SGLD
preset with the recommended ε, nβ, γ (paper App. E.3.3). When no cell of the grid is healthy
the preset's own values are kept and :attr:`Calibrated.message` says why, so a chapter can
show it.

:func:`calibration_config` checks a grid preset, :func:`grid`, :func:`probe_steps` and
:func:`cell_preset` turn it into what :func:`devbook.calibration.calibrate_run` takes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from devbook import presets
from devbook.calibration import CalibrationError, Grid, Recommendation, calibrate_run, recommend
from devbook.setting import SGLDPreset
from devbook.store import Run

if TYPE_CHECKING:
    from devbook.setting import Setting

#: Keys every calibration preset has (settings may add chapter-specific ones).
GRID_KEYS = ("epsilon", "nbeta", "gamma", "chains", "probes")


def calibration_config(table: dict[str, dict[str, Any]], preset: str, **overrides: Any) -> dict[str, Any]:
    """The calibration preset ``preset`` of ``table`` with ``overrides`` (names, types, ranges checked).

    Raises
    ------
    ValueError
        For an unknown preset or key, an empty list of values, a non-positive value, fewer
        than one chain, or probes outside [0, 1].
    """
    cfg = presets.resolve(table, preset, overrides)
    missing = [k for k in GRID_KEYS if k not in cfg]
    if missing:
        raise ValueError(f"calibration preset {preset!r} lacks {missing}; needs {list(GRID_KEYS)}")
    for key in ("epsilon", "nbeta", "gamma", "probes"):
        if not cfg[key]:
            raise ValueError(f"calibration {key} must not be empty")
    for key in ("epsilon", "gamma"):
        if min(cfg[key]) <= 0:
            raise ValueError(f"calibration {key} values must be > 0, got {cfg[key]}")
    if any(b is not None and b <= 0 for b in cfg["nbeta"]):
        raise ValueError(f"calibration nbeta values must be > 0 or None (= m / log m), got {cfg['nbeta']}")
    if not all(0 <= p <= 1 for p in cfg["probes"]):
        raise ValueError(f"probes must be fractions in [0, 1], got {cfg['probes']}")
    if cfg["chains"] < 1:
        raise ValueError(f"chains must be >= 1, got {cfg['chains']}")
    return cfg


def grid(cfg: dict[str, Any], sgld: SGLDPreset) -> Grid:
    """The grid of a calibration config for the SGLD batch of ``sgld`` (nβ None = m / log m)."""
    nbetas = [replace(sgld, nbeta=b).resolved_nbeta for b in cfg["nbeta"]]
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


@dataclass(frozen=True)
class Calibrated:
    """The outcome of :func:`calibrated_sgld`.

    Attributes
    ----------
    sgld : SGLDPreset
        What the chapter samples with: ``preset`` with the recommended ε, nβ, γ (or ``preset``
        itself when no cell was healthy).
    preset : SGLDPreset
        The setting's SGLD preset (chains, draws, batch and data; its ε, nβ, γ are the grid's
        fallback).
    recommendation : Recommendation or None
        :func:`devbook.calibration.recommend`'s answer, ``None`` when no cell was healthy.
    table : pandas.DataFrame
        The calibration grid at every probed checkpoint.
    probes : list of int
        The probed checkpoints.
    message : str
        Markdown: the reason for each value, or the error naming every failed cell.
    """

    sgld: SGLDPreset
    preset: SGLDPreset
    recommendation: Recommendation | None
    table: pd.DataFrame
    probes: list[int]
    message: str

    @property
    def recommended(self) -> bool:
        """Whether the sampler is the recommendation (False: the preset's fallback values)."""
        return self.recommendation is not None

    def comparison(self) -> pd.DataFrame:
        """One row per value (ε, nβ, γ): the preset's, the one sampled with, and whether equal."""
        rows = []
        for key, name in (("epsilon", "ε"), ("nbeta", "nβ"), ("gamma", "γ")):
            before, after = _value(self.preset, key), _value(self.sgld, key)
            rows.append(
                {
                    "value": name,
                    "preset": before,
                    "sampled with": after,
                    "same": bool(np.isclose(before, after, rtol=1e-9, atol=0.0)),
                }
            )
        return pd.DataFrame(rows).set_index("value")


def _value(sgld: SGLDPreset, key: str) -> float:
    return sgld.resolved_nbeta if key == "nbeta" else float(getattr(sgld, key))


def recommendation_text(table: pd.DataFrame, sgld: SGLDPreset) -> tuple[Recommendation | None, str]:
    """:func:`devbook.calibration.recommend` on ``table`` for the preset ``sgld``, and its
    reasons as markdown; ``(None, the error naming every failed cell)`` when no cell is healthy."""
    try:
        rec = recommend(table, sgld.sgld_config())
    except CalibrationError as err:
        first, *cells = str(err).split("\n")
        return None, f"**No recommendation:** {first}\n\n" + "\n".join(f"- {c.strip()}" for c in cells)
    return rec, "\n".join(
        f"- **{name}** — {rec.reasons[key]}"
        for key, name in (("epsilon", "ε"), ("nbeta", "nβ"), ("gamma", "γ"))
    )


def calibrated_sgld(setting: Setting, run: Run, sgld: SGLDPreset, cfg: dict[str, Any]) -> Calibrated:
    """Calibrate ``sgld`` on ``run`` with the grid ``cfg`` and return what to sample with.

    Parameters
    ----------
    setting : Setting
        The run's setting (model, loss, SGLD data, LLC checkpoints).
    run : Run
        The trained run; the grid is probed at ``cfg["probes"]`` of its LLC checkpoints and
        cached in its store (key: step, cell preset, grid).
    sgld : SGLDPreset
        The setting's SGLD preset: its chains, draws, burn-in, batch and data are kept.
    cfg : dict
        From :func:`calibration_config`.

    Returns
    -------
    Calibrated
        ``sgld`` with the recommended ε, nβ, γ, or ``sgld`` unchanged when no cell of the grid
        is healthy at every probed checkpoint (``message`` then names what failed in each).
    """
    cells = cell_preset(sgld, cfg)
    probes = probe_steps(setting.llc_steps(run.config), cfg["probes"])
    table = calibrate_run(setting, run, cells, probes, grid(cfg, sgld))
    rec, text = recommendation_text(table, sgld)
    chosen = sgld
    if rec is not None:
        chosen = replace(sgld, epsilon=rec.config.epsilon, nbeta=rec.config.nbeta, gamma=rec.config.gamma)
    return Calibrated(sgld=chosen, preset=sgld, recommendation=rec, table=table, probes=probes, message=text)
