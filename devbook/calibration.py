"""Calibrating the SGLD sampler at a few checkpoints of a run (paper App. E.3).

:class:`Grid` holds the cells of an ε × nβ × γ grid; :func:`calibrate` / :func:`calibrate_run`
run every cell at once (:func:`devbook.llc.estimate_llc_grid`) at a few checkpoints and judge
each cell (:data:`VERDICTS`); :func:`recommend` picks the sampler by the rule of E.3.3. The
chapters sample with the recommendation on their own run through
:meth:`devbook.setting.Setting.calibrated_sgld` (:mod:`devbook.calibrated`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from torch import nn

from devbook.diagnostics import DIAGNOSES, RHAT_MAX
from devbook.llc import LLCResult, SGLDConfig, estimate_llc_grid
from devbook.setting import Setting, SGLDPreset
from devbook.sgld import Batch, LossFn, check_cells
from devbook.store import Run

#: A cell's verdicts, from healthy to worst. ``ok``: no chain diverged or escaped and the chains
#: converged; ``not_converged``: split-R̂ above RHAT_MAX, more than a quarter of the chains
#: diagnosed ``not_converged`` (a per-chain test at 3 standard errors flags a few sound chains of
#: many), or the mean online trace moved by more than SLOPE_MAX over its last half; ``escaped``: a chain fell below L_n(w*);
#: ``diverged``: a chain's loss went non-finite or exploded.
VERDICTS = ("ok", "not_converged", "escaped", "diverged")
#: Largest relative move of the mean online trace over its last half that still counts as flat.
SLOPE_MAX = 0.05


@dataclass(frozen=True)
class Grid:
    """The cells of a calibration grid: K triples (ε, nβ, γ).

    Build it with :meth:`product` (every combination of ε, nβ, γ values) or :meth:`from_scales`
    (the paper's reparametrisation, App. E.3.3: noise scale ε, gradient scale ε·nβ/2,
    localisation scale ε·γ/2).
    """

    epsilon: tuple[float, ...]
    nbeta: tuple[float, ...]
    gamma: tuple[float, ...]

    def __post_init__(self) -> None:
        check_cells(self.values())

    @classmethod
    def product(cls, epsilon: Iterable[float], nbeta: Iterable[float], gamma: Iterable[float]) -> Grid:
        """Every (ε, nβ, γ) combination, ε varying fastest."""
        cells = [(e, b, g) for g in gamma for b in nbeta for e in epsilon]
        if not cells:
            raise ValueError("a grid needs at least one value of each of epsilon, nbeta and gamma")
        e, b, g = zip(*cells)
        return cls(tuple(map(float, e)), tuple(map(float, b)), tuple(map(float, g)))

    @classmethod
    def from_scales(
        cls, noise: Iterable[float], gradient: Iterable[float], localisation: Iterable[float]
    ) -> Grid:
        """Every combination of noise scale ε, gradient scale ε·nβ/2 and localisation scale ε·γ/2."""
        cells = [(e, 2 * s / e, 2 * c / e) for c in localisation for s in gradient for e in noise]
        if not cells:
            raise ValueError("a grid needs at least one noise, gradient and localisation scale")
        e, b, g = zip(*cells)
        return cls(tuple(e), tuple(b), tuple(g))

    def __len__(self) -> int:
        return len(self.epsilon)

    def values(self) -> dict[str, list[float]]:
        """``{"epsilon": [K], "nbeta": [K], "gamma": [K]}`` (what the sampler takes)."""
        return {"epsilon": list(self.epsilon), "nbeta": list(self.nbeta), "gamma": list(self.gamma)}

    def config(self, base: SGLDConfig, k: int) -> SGLDConfig:
        """``base`` with cell k's ε, nβ, γ."""
        return replace(base, epsilon=self.epsilon[k], nbeta=self.nbeta[k], gamma=self.gamma[k])


def trace_slope(trace: np.ndarray) -> float:
    """Relative move of an online trace over its last half: the least-squares slope over the
    last half times its length, over |λ̂_T| (nan if not finite; inf if λ̂_T = 0). No floor: a
    chain that has barely left w* has a tiny λ̂_T that still grows, which this catches."""
    trace = np.asarray(trace, dtype=float)
    half = trace[len(trace) // 2 :]
    if len(half) < 2 or not np.isfinite(half).all():
        return float("nan")
    slope = np.polyfit(np.arange(len(half)), half, 1)[0] * len(half)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(slope) / abs(half[-1]))


def cell_verdict(counts: dict[str, int], rhat: float, slope: float) -> str:
    """The verdict of one cell (see :data:`VERDICTS`) from its chains' diagnosis counts."""
    if counts.get("diverged", 0):
        return "diverged"
    if counts.get("escaped", 0):
        return "escaped"
    unmixed = counts.get("not_converged", 0) > sum(counts.values()) / 4
    if unmixed or rhat > RHAT_MAX or not abs(slope) <= SLOPE_MAX:
        return "not_converged"
    return "ok"


def grid_arrays(results: list[LLCResult]) -> dict[str, np.ndarray]:
    """The per-cell summary of :func:`devbook.llc.estimate_llc_grid` as arrays (what the run store caches)."""
    codes = np.array([[DIAGNOSES.index(d) for d in r.diagnosis] for r in results], dtype=np.int64)
    return {
        "epsilon": np.array([r.config.epsilon for r in results]),
        "nbeta": np.array([r.config.nbeta for r in results]),
        "gamma": np.array([r.config.gamma for r in results]),
        "llc": np.array([r.mean for r in results]),
        "std": np.array([r.std for r in results]),
        "rhat": np.array([r.rhat for r in results]),
        "diagnosis": codes,
        "per_chain": np.stack([r.per_chain for r in results]),
        "trace": np.stack([r.llc_trace_per_chain for r in results]),
        "seconds": np.array(sum(r.seconds for r in results)),
    }


def grid_table(by_step: dict[int, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One row per (checkpoint, cell) from :func:`grid_arrays` per step: ε, nβ, γ, the scales
    of App. E.3.3, λ̂ and its spread over chains, split-R̂, the chains' diagnosis counts, the
    slope of the mean online trace over its last half and the cell's verdict."""
    rows = []
    for step, a in by_step.items():
        for k in range(len(a["epsilon"])):
            counts = {d: int((a["diagnosis"][k] == i).sum()) for i, d in enumerate(DIAGNOSES)}
            trace = a["trace"][k]
            kept = a["diagnosis"][k] != DIAGNOSES.index("diverged")
            slope = trace_slope(trace[kept].mean(axis=0)) if kept.any() else float("nan")
            e, b, g = float(a["epsilon"][k]), float(a["nbeta"][k]), float(a["gamma"][k])
            rows.append(
                {
                    "step": int(step),
                    "epsilon": e,
                    "nbeta": b,
                    "gamma": g,
                    "gradient_scale": e * b / 2,
                    "localisation_scale": e * g / 2,
                    "llc": float(a["llc"][k]),
                    "llc_std": float(a["std"][k]),
                    "rhat": float(a["rhat"][k]),
                    **counts,
                    "slope": slope,
                    "verdict": cell_verdict(counts, float(a["rhat"][k]), slope),
                }
            )
    return pd.DataFrame(rows)


def calibrate(
    models: dict[int, nn.Module], loss_fn: LossFn, data: Batch, config: SGLDConfig, grid: Grid, *, seed: int
) -> pd.DataFrame:
    """:func:`grid_table` of the grid at every checkpoint of ``models`` (``{step: model}``)."""
    if not models:
        raise ValueError("calibrate needs at least one checkpoint model")
    return grid_table(
        {
            s: grid_arrays(estimate_llc_grid(m, loss_fn, data, config, grid, seed=seed))
            for s, m in models.items()
        }
    )


def calibrate_run(
    setting: Setting, run: Run, sgld: SGLDPreset, steps: Iterable[int], grid: Grid
) -> pd.DataFrame:
    """:func:`calibrate` at checkpoints ``steps`` of ``run``, each step cached in the run store
    (key: the step, ``sgld`` and the grid); chains, draws, batch and data are ``sgld``'s."""
    data = setting.sgld_data(run.config, sgld)
    by_step = {}
    for step in steps:
        key = {"step": int(step), **sgld.to_dict(), "grid": grid.values()}
        by_step[int(step)] = run.cached(
            "llc-grid",
            key,
            lambda s=step: grid_arrays(
                estimate_llc_grid(
                    setting.load_model(run, s),
                    setting.loss_fn,
                    data,
                    sgld.sgld_config(),
                    grid,
                    seed=sgld.seed,
                )
            ),
        )
    return grid_table(by_step)


# -- the recommendation (paper App. E.3.3)


class CalibrationError(ValueError):
    """No cell of a calibration grid is healthy at every probed checkpoint."""


@dataclass(frozen=True)
class Recommendation:
    """What :func:`recommend` chose: the sampler, the reason for each of ε, nβ, γ, and the
    per-cell verdicts over all probed checkpoints it decided from."""

    config: SGLDConfig
    reasons: dict[str, str]
    cells: pd.DataFrame

    @property
    def values(self) -> dict[str, float]:
        """``{"epsilon": ε, "nbeta": nβ, "gamma": γ}`` of the recommendation."""
        return {"epsilon": self.config.epsilon, "nbeta": self.config.nbeta, "gamma": self.config.gamma}


def _worst(verdicts: pd.Series) -> str:
    return max(verdicts, key=VERDICTS.index)


def cell_summary(table: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: its worst verdict over the probed checkpoints and where it occurred."""
    rows = []
    for (e, b, g), t in table.groupby(["epsilon", "nbeta", "gamma"], sort=True):
        worst = _worst(t["verdict"])
        where = t.loc[t["verdict"] == worst, "step"].tolist()
        rows.append({"epsilon": e, "nbeta": b, "gamma": g, "verdict": worst, "steps": where})
    return pd.DataFrame(rows)


def _describe(cells: pd.DataFrame) -> str:
    """'2 diverged (step 869), 1 not_converged (step 20000)' for a set of unhealthy cells."""
    parts = []
    for v in VERDICTS[1:]:
        sel = cells[cells["verdict"] == v]
        if len(sel):
            steps = sorted({s for ss in sel["steps"] for s in ss})
            parts.append(f"{len(sel)} {v} (step{'s' if len(steps) > 1 else ''} {', '.join(map(str, steps))})")
    return ", ".join(parts)


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def recommend(table: pd.DataFrame, base: SGLDConfig) -> Recommendation:
    """The sampler the rule of paper App. E.3.3 picks from a calibration grid.

    A cell (ε, nβ, γ) is *healthy* when its verdict is ``ok`` at every probed checkpoint (no
    chain diverged or escaped, the chains mixed, the online trace flat over its last half).
    Among healthy cells: γ as small as possible (smaller γ explore more; they are rejected for
    escapes or instability), then nβ as large as possible at that γ, then, at that (nβ, γ), the
    smallest ε of the contiguous run of healthy step sizes that ends at the largest healthy one
    (see :func:`healthy_epsilons`): large enough that the estimate converges within the draws,
    and no larger, since the step-size bias of SGLD grows with ε well before chains diverge.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`calibrate` or :func:`calibrate_run` (one row per checkpoint and cell).
    base : SGLDConfig
        The chains, draws, burn-in and batch the grid ran with; the result is ``base`` with the
        chosen ε, nβ, γ.

    Returns
    -------
    Recommendation
        The config, a reason per choice and the per-cell summary.

    Raises
    ------
    CalibrationError
        When no cell is healthy; the message names what failed in every cell.
    """
    if not isinstance(table, pd.DataFrame) or not {"epsilon", "nbeta", "gamma", "verdict", "step"} <= set(
        table
    ):
        raise ValueError("table must be a calibration table from devbook.calibration.calibrate")
    if not isinstance(base, SGLDConfig):
        raise ValueError(f"base must be an SGLDConfig, got {type(base).__name__}")
    if table.empty:
        raise ValueError("the calibration table is empty")
    cells = cell_summary(table)
    healthy = cells[cells["verdict"] == "ok"]
    if healthy.empty:
        lines = [
            f"(ε={_fmt(r.epsilon)}, nβ={_fmt(r.nbeta)}, γ={_fmt(r.gamma)}): {r.verdict} at step "
            f"{', '.join(map(str, r.steps))}"
            for r in cells.itertuples()
        ]
        raise CalibrationError(
            f"no cell of the grid is healthy at every probed checkpoint ({_describe(cells)}):\n  "
            + "\n  ".join(lines)
        )
    gamma = float(healthy["gamma"].min())
    nbeta = float(healthy.loc[healthy["gamma"] == gamma, "nbeta"].max())
    eps_ok = healthy_epsilons(cells[(cells["gamma"] == gamma) & (cells["nbeta"] == nbeta)])
    epsilon = float(eps_ok[0])
    reasons = _reasons(cells, epsilon, nbeta, gamma, eps_ok)
    config = replace(base, epsilon=epsilon, nbeta=nbeta, gamma=gamma)
    return Recommendation(config=config, reasons=reasons, cells=cells)


def healthy_epsilons(row: pd.DataFrame) -> list[float]:
    """The contiguous run of healthy ε that ends at the largest healthy ε of one (nβ, γ).

    A healthy cell below an unhealthy one is left out: far below the converging range the
    chains barely move and a flat-looking trace is no evidence of convergence."""
    ordered = row.sort_values("epsilon", ascending=False)
    run: list[float] = []
    for eps, verdict in zip(ordered["epsilon"], ordered["verdict"]):
        if verdict == "ok":
            run.append(float(eps))
        elif run:
            break
    return sorted(run)


def _reasons(cells: pd.DataFrame, epsilon: float, nbeta: float, gamma: float, eps_ok: list) -> dict[str, str]:
    """The reason for each choice: what ruled out the alternatives on the grid."""
    smaller_g = cells[cells["gamma"] < gamma]
    why_g = f"γ = {_fmt(gamma)}: the smallest γ of the grid with a healthy cell"
    why_g += (
        f"; every cell at smaller γ failed: {_describe(smaller_g)}"
        if len(smaller_g)
        else " (the smallest tried)"
    )
    at_g = cells[cells["gamma"] == gamma]
    larger_b = at_g[at_g["nbeta"] > nbeta]
    why_b = f"nβ = {_fmt(nbeta)}: the largest nβ with a healthy ε at this γ"
    why_b += (
        f"; at larger nβ every ε failed: {_describe(larger_b)}" if len(larger_b) else " (the largest tried)"
    )
    row = at_g[at_g["nbeta"] == nbeta]
    below, above = row[row["epsilon"] < min(eps_ok)], row[row["epsilon"] > max(eps_ok)]
    why_e = (
        f"ε = {_fmt(epsilon)}: the smallest of the healthy step sizes ε ∈ [{_fmt(min(eps_ok))}, "
        f"{_fmt(max(eps_ok))}] ({len(eps_ok)} of {len(row)} values) at this nβ and γ, the least "
        "step-size bias that still converges"
    )
    if len(below):
        why_e += f"; smaller ε: {_describe(below)}"
    if len(above):
        why_e += f"; larger ε: {_describe(above)}"
    return {"epsilon": why_e, "nbeta": why_b, "gamma": why_g}
