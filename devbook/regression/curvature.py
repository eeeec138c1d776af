"""Curvature of the regression transformer over training, beside the LLC (paper App. D.1.3).

- :data:`HESSIAN_PRESETS`: the sizes of the Hessian chapter per preset (evaluation batch,
  probes, Lanczos tolerance, the model sizes of the scaling measurement), resolved with
  :func:`hessian_preset`;
- :func:`curvature_sweep`: Hutchinson trace and top eigenvalue of the loss Hessian at each
  checkpoint of a run, on one fixed held-out batch with the same probes everywhere, cached per
  checkpoint in the run store (:func:`devbook.setting.evaluate_checkpoints`);
- :func:`boundary_matches` and :func:`comovement`: which LLC milestones a curvature curve
  finds, and where the two curves rise or fall together, from their Gaussian-process fits;
- :func:`scaling_costs` and :func:`fit_exponent`: the time of one LLC estimate, one trace, one
  top eigenvalue and one dense Hessian on regression transformers of growing width;
- :func:`curves_figure`, :func:`slopes_figure`, :func:`scaling_figure`: the chapter's figures.

Used by ``book/regression/hessian.md``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from devbook import presets
from devbook.hessian import DEFAULT_CHUNK, full_hessian, hessian_trace, top_eigenvalues
from devbook.llc import LLCConvergenceWarning, LLCDivergenceWarning, SGLDConfig, estimate_llc
from devbook.plots import log_time_axis, shade_stages, stage_names
from devbook.regression.data import fixed_dataset, sgld_dataset
from devbook.regression.model import RegressionTransformer, loss_fn
from devbook.regression.setting import SETTING
from devbook.rng import generator
from devbook.setting import evaluate_checkpoints
from devbook.stages import StageFit, Stages
from devbook.store import Run
from devbook.training import parameter_count

_CPU: dict[str, Any] = {
    "eval_n": 128,  # sequences in the fixed Hessian batch
    "num_probes": 24,  # Hutchinson probes per checkpoint
    "probe_seed": 0,
    "eig_tol": 1e-3,  # ARPACK relative tolerance of the top eigenvalue
    "scaling_d_models": [16, 32, 64, 128, 192, 288],  # widths (d_mlp = d_model): 3.7k-1.0M params
    "dense_d_models": [8, 12, 16],  # widths of the dense Hessian (1.1k-3.7k params)
    "dense_max_bytes": 2_000_000_000,  # a dense Hessian larger than this is not formed
    "scaling_batch": 16,  # sequences per batch for every timed computation
    "scaling_probes": 8,  # one chunk of DEFAULT_CHUNK products, as the dense Hessian's chunks
    "scaling_chains": 2,
    "scaling_draws": 20,
    "repeats": 2,  # each time is the minimum over this many runs
}

#: Sizes of the Hessian chapter per preset.
HESSIAN_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        **_CPU,
        "eval_n": 32,
        "num_probes": 4,
        "eig_tol": 1e-2,
        "scaling_d_models": [8, 16, 32],
        "dense_d_models": [8, 12],
        "scaling_batch": 4,
        "scaling_chains": 1,
        "scaling_draws": 3,
        "repeats": 1,
    },
    "cpu": dict(_CPU),
    "paper": {
        **_CPU,
        "eval_n": 1024,
        "num_probes": 100,
        "scaling_d_models": [32, 64, 128, 256, 512],
        "dense_d_models": [8, 12, 16, 24, 32, 48],
        "dense_max_bytes": 20_000_000_000,
        "scaling_batch": 64,
        "scaling_probes": 32,
        "scaling_chains": 4,
        "scaling_draws": 100,
        "repeats": 3,
    },
}

#: The statistics of :func:`curvature_sweep` with their axis labels.
CURVES = {"trace": "Hessian trace", "top_eig": "top eigenvalue"}


def hessian_preset(preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
    """The chapter's sizes at ``preset`` with ``overrides`` (checked by name and type)."""
    return presets.resolve(HESSIAN_PRESETS, preset, overrides)


def hessian_batch(config: dict[str, Any], n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed held-out batch ``(xs, ys)`` of the Hessian statistics (its own data stream)."""
    batch = fixed_dataset(config, n, "hessian")
    return batch.xs, batch.ys


def curvature_at(
    model: torch.nn.Module, batch: tuple[torch.Tensor, ...], hp: dict[str, Any]
) -> dict[str, float]:
    """Trace (± standard error), top eigenvalue, Hessian-vector products and seconds."""
    start = time.perf_counter()
    tr = hessian_trace(model, loss_fn, batch, num_probes=hp["num_probes"], seed=hp["probe_seed"])
    eig = top_eigenvalues(model, loss_fn, batch, k=1, tol=hp["eig_tol"])
    return {
        "trace": tr.estimate,
        "trace_se": tr.stderr,
        "top_eig": float(eig.top[0]),
        "hvps": hp["num_probes"] + eig.hvps,
        "seconds": time.perf_counter() - start,
    }


def curvature_sweep(
    run: Run, steps: Sequence[int], hp: dict[str, Any], *, progress: bool = False
) -> pd.DataFrame:
    """:func:`curvature_at` at each of ``steps``, cached per checkpoint in ``run``.

    Returns one row per step: ``step``, ``trace``, ``trace_se``, ``top_eig``, ``hvps``,
    ``seconds`` (when first computed).
    """
    keys = ("eval_n", "num_probes", "probe_seed", "eig_tol")
    eval_config = {"version": 1, **{k: hp[k] for k in keys}}
    batch = hessian_batch(run.config, hp["eval_n"])

    def compute(step: int) -> dict[str, float]:
        return curvature_at(SETTING.load_model(run, step), batch, hp)

    rows = evaluate_checkpoints(run, "hessian", eval_config, steps, compute, progress=progress)
    return pd.DataFrame([{"step": int(s), **r} for s, r in zip(steps, rows)])


def boundary_matches(reference: Sequence[float], found: Sequence[float], factor: float) -> list[float | None]:
    """For each reference milestone, the nearest (in log-steps) of ``found`` within a factor
    ``factor`` of it in training steps (``None`` when there is none)."""
    if factor <= 1:
        raise ValueError(f"factor must be > 1, got {factor}")
    out: list[float | None] = []
    for r in reference:
        ratios = [abs(np.log(f / r)) for f in found]
        best = int(np.argmin(ratios)) if ratios else -1
        out.append(found[best] if ratios and ratios[best] <= np.log(factor) else None)
    return out


def _directions(fit: StageFit) -> np.ndarray:
    """+1 (rising), −1 (falling) or 0 (|slope| below the fit's tolerance) on the fit's grid."""
    return np.where(np.abs(fit.slope) < fit.tolerance, 0, np.sign(fit.slope)).astype(int)


def comovement(a: StageFit, b: StageFit, *, min_fraction: float = 0.05) -> pd.DataFrame:
    """Intervals where the smoothed curves of ``a`` and ``b`` rise, fall or stay flat.

    Both fits must share their grid (the same steps). Runs of constant (direction of ``a``,
    direction of ``b``) shorter than ``min_fraction`` of the log-time grid are absorbed by the
    preceding run. Returns contiguous rows ``start``, ``end`` (steps), ``a``, ``b`` (``"rising"``,
    ``"falling"`` or ``"flat"``) and ``together`` (both move the same way, neither flat).
    """
    if a.grid_steps.shape != b.grid_steps.shape or not np.allclose(a.grid_steps, b.grid_steps):
        raise ValueError("the two fits must share their grid (fit them on the same steps)")
    pair = np.stack([_directions(a), _directions(b)], 1)
    change = np.flatnonzero(np.any(pair[1:] != pair[:-1], axis=1)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(pair)]
    runs = [[s, e, tuple(pair[s])] for s, e in zip(starts, ends)]
    keep: list[list] = []
    for run in runs:
        if keep and (run[1] - run[0] < min_fraction * len(pair) or run[2] == keep[-1][2]):
            keep[-1][1] = run[1]
        else:
            keep.append(run)
    if len(keep) > 1 and keep[0][1] - keep[0][0] < min_fraction * len(pair):
        keep[1][0] = keep[0][0]
        keep = keep[1:]
    names = {1: "rising", -1: "falling", 0: "flat"}
    return pd.DataFrame(
        [
            {
                "start": int(round(a.grid_steps[s])),
                "end": int(round(a.grid_steps[min(e, len(pair) - 1)])),
                "a": names[d[0]],
                "b": names[d[1]],
                "together": d[0] == d[1] != 0,
            }
            for s, e, d in keep
        ]
    )


def match_table(llc_milestones: Sequence[float], fits: dict[str, Stages], factor: float) -> pd.DataFrame:
    """One row per LLC milestone, one column per curve of ``fits``: the curve's milestone that
    finds it (:func:`boundary_matches` within ``factor``) or ``"missed"``."""
    cols = {}
    for name, found in fits.items():
        hits = boundary_matches(llc_milestones, list(found.fit.milestones), factor)
        cols[CURVES[name]] = ["missed" if h is None else f"found at {int(h):,}" for h in hits]
    index = pd.Index([f"{int(m):,}" for m in llc_milestones], name="LLC milestone (step)")
    return pd.DataFrame(cols, index=index, columns=[CURVES[n] for n in fits])


def comovement_summary(table: pd.DataFrame) -> dict[str, Any]:
    """Shares of log-time (``ln(1 + step)``) of a :func:`comovement` table where the two curves
    move together (same direction), apart (opposite directions) or either is flat, and the
    first step where they move apart after moving together (``None`` if they never do)."""
    t = np.log1p(table["end"].to_numpy(float)) - np.log1p(table["start"].to_numpy(float))
    apart = ~table["together"] & (table["a"] != "flat") & (table["b"] != "flat")
    total = t.sum() if t.sum() > 0 else 1.0
    first = None
    for i in range(1, len(table)):
        if apart.iloc[i] and table["together"].iloc[:i].any():
            first = int(table["start"].iloc[i])
            break
    return {
        "together": float(t[table["together"].to_numpy()].sum() / total),
        "apart": float(t[apart.to_numpy()].sum() / total),
        "first_apart": first,
    }


def describe_comovement(table: pd.DataFrame, stages: pd.DataFrame, a_name: str, b_name: str) -> str:
    """A markdown list of a :func:`comovement` table: each interval's steps, the LLC stages of
    ``stages`` (a :func:`devbook.stages.find_stages` table) it overlaps, and what each curve does."""
    names = stage_names(stages)
    lines = []
    for row in table.itertuples():
        spans = [n for n, s in zip(names, stages.itertuples()) if s.start < row.end and s.end > row.start]
        what = f"both {row.a}" if row.a == row.b else f"{a_name} {row.a}, {b_name} {row.b}"
        lines.append(f"- steps {row.start:,}–{row.end:,} ({', '.join(spans) or 'no stage'}): {what}")
    return "\n".join(lines)


#: The paper's sequence (App. D.1.3): (what the LLC does, what the curvature does); None: any.
PAPER_PHASES = (("rising", "rising"), ("rising", "falling"), ("falling", "falling"), (None, "rising"))


def paper_phases(table: pd.DataFrame) -> list[tuple[int, int] | None]:
    """Where the rows of a :func:`comovement` table (``a``: the LLC, ``b``: a curvature curve)
    show the phases of :data:`PAPER_PHASES` in the paper's order: for each phase the
    ``(start, end)`` of its row (the last match before the next phase's row), or ``None``."""

    def match(k: int, j: int) -> bool:
        llc, curv = PAPER_PHASES[k]
        return table["b"].iloc[j] == curv and llc in (None, table["a"].iloc[j])

    pos: list[int | None] = []
    i = 0
    for k in range(len(PAPER_PHASES)):
        pos.append(next((j for j in range(i, len(table)) if match(k, j)), None))
        i = i if pos[-1] is None else pos[-1] + 1
    for k in range(len(pos) - 2, -1, -1):
        nxt = next((q for q in pos[k + 1 :] if q is not None), None)
        if pos[k] is not None and nxt is not None:
            pos[k] = max(j for j in range(pos[k], nxt) if match(k, j))
    rows = [(int(table["start"].iloc[q]), int(table["end"].iloc[q])) if q is not None else None for q in pos]
    return rows


def _timed(fn: Any, repeats: int) -> float:
    """The least CPU time (seconds, this process, all threads) of ``repeats`` calls of ``fn``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        fn()
        best = min(best, time.process_time() - start)
    return best


def _size_costs(
    config: dict[str, Any], d_model: int, hp: dict[str, Any], sgld: SGLDConfig, dense: bool, llc: bool
) -> dict[str, Any]:
    cfg = {**config, "d_model": d_model, "d_mlp": d_model}
    model = RegressionTransformer.from_config(cfg, generator(0, f"scaling-{d_model}")).eval()
    d = parameter_count(model)
    batch = hessian_batch(cfg, hp["scaling_batch"])
    row: dict[str, Any] = {"d_model": d_model, "params": d}
    rep = hp["repeats"]
    if llc:
        data = sgld_dataset(cfg, 4 * sgld.batch_size)
        row["llc"] = _timed(lambda: estimate_llc(model, loss_fn, data, sgld, seed=0), rep)
        row["trace"] = _timed(
            lambda: hessian_trace(model, loss_fn, batch, num_probes=hp["scaling_probes"], seed=0), rep
        )
        row["top_eig"] = _timed(lambda: top_eigenvalues(model, loss_fn, batch, tol=hp["eig_tol"]), rep)
    if dense and 4 * d * d <= hp["dense_max_bytes"]:
        row["dense"] = _timed(lambda: full_hessian(model, loss_fn, batch, chunk_size=DEFAULT_CHUNK), 1)
    return row


def scaling_costs(config: dict[str, Any], hp: dict[str, Any], epsilon: float, gamma: float) -> pd.DataFrame:
    """Seconds of one LLC estimate, trace, top eigenvalue and dense Hessian per model width.

    Models are regression transformers of ``config`` with ``d_model = d_mlp`` from
    ``hp["scaling_d_models"]`` (LLC, trace, top eigenvalue) and ``hp["dense_d_models"]``
    (dense Hessian, when d² float32 entries fit in ``hp["dense_max_bytes"]``), at their seeded
    initialisation. Every computation uses batches of ``hp["scaling_batch"]`` sequences; the
    LLC estimate runs ``scaling_chains`` × ``scaling_draws`` SGLD steps with ``epsilon`` and
    ``gamma`` (nβ = m / log m), the trace ``scaling_probes`` probes; the trace and the dense
    Hessian evaluate products in chunks of the same size (``DEFAULT_CHUNK``), so that the dense
    time can be checked against d × (trace / probes) where both are measured. Each time is the least CPU
    time of ``repeats`` runs (the dense Hessian: one run), so other work on a shared machine
    inflates it less than wall-clock time. Returns one row per width (columns ``d_model``,
    ``params``, ``llc``, ``trace``, ``top_eig``, ``dense`` and ``hvp`` = trace / probes, the
    seconds of one Hessian-vector product in a chunk), NaN where not measured.
    """
    m = hp["scaling_batch"]
    sgld = SGLDConfig(
        epsilon=epsilon,
        gamma=gamma,
        nbeta=m / np.log(m),
        num_chains=hp["scaling_chains"],
        num_draws=hp["scaling_draws"],
        batch_size=m,
        init_loss_batch_size=4 * m,
    )
    widths = sorted(set(hp["scaling_d_models"]) | set(hp["dense_d_models"]))
    rows = []
    with warnings.catch_warnings():  # few draws at initialisation: mixing is not the point here
        warnings.simplefilter("ignore", LLCConvergenceWarning)
        warnings.simplefilter("ignore", LLCDivergenceWarning)
        _size_costs(config, widths[0], {**hp, "repeats": 1}, sgld, False, True)  # warm-up
        for w in widths:
            rows.append(
                _size_costs(config, w, hp, sgld, w in hp["dense_d_models"], w in hp["scaling_d_models"])
            )
    out = pd.DataFrame(rows, columns=["d_model", "params", "llc", "trace", "top_eig", "dense"])
    return out.assign(hvp=out["trace"] / hp["scaling_probes"])


def cached_scaling(run: Run, hp: dict[str, Any], epsilon: float, gamma: float) -> pd.DataFrame:
    """:func:`scaling_costs` for ``run``'s config, measured once and kept in ``run``'s store
    (keyed by the sizes, the SGLD step, the torch thread count and the torch version)."""
    keys = (
        "scaling_d_models",
        "dense_d_models",
        "dense_max_bytes",
        "scaling_batch",
        "scaling_probes",
        "scaling_chains",
        "scaling_draws",
        "repeats",
        "eig_tol",
    )
    key = {
        "version": 1,
        **{k: hp[k] for k in keys},
        "epsilon": epsilon,
        "gamma": gamma,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    return run.cached("hessian-scaling", key, lambda: scaling_costs(run.config, hp, epsilon, gamma))


def exponent_table(costs: pd.DataFrame) -> pd.DataFrame:
    """Fitted exponents of each column of :data:`SCALING_LABELS` and of the dense Hessian as d
    products (``dense_model``): over all measured sizes and over the two largest."""
    series = {**{n: costs[n] for n in SCALING_LABELS}, "dense_model": costs["params"] * costs["hvp"]}
    rows = {}
    for name, values in series.items():
        ok = values.notna().to_numpy()
        x, y = costs["params"].to_numpy()[ok], values.to_numpy()[ok]
        rows[name] = {"all sizes": fit_exponent(x, y), "two largest": fit_exponent(x[-2:], y[-2:])}
    return pd.DataFrame(rows).T


def fit_exponent(params: Sequence[float], seconds: Sequence[float]) -> float:
    """Least-squares slope of log(seconds) against log(params), over the finite entries."""
    x, y = np.asarray(params, float), np.asarray(seconds, float)
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def _gp(ax: plt.Axes, fit: StageFit, colour: str) -> None:
    ax.plot(fit.grid_steps, fit.mean, color=colour, lw=1.2)
    ax.fill_between(fit.grid_steps, fit.mean - fit.std, fit.mean + fit.std, color=colour, alpha=0.15, lw=0)


def curves_figure(
    llc: pd.DataFrame, curv: pd.DataFrame, llc_stages: Stages, fits: dict[str, Stages]
) -> Figure:
    """λ̂ and each curve of :data:`CURVES` over log-time with their GP fits, the LLC stages
    shaded and each curvature curve's own milestones as dotted lines.

    ``llc`` has columns ``step``, ``llc``, ``llc_std`` (an LLC sweep table); ``curv`` the
    :func:`curvature_sweep` table on the same steps; ``fits`` maps a column of :data:`CURVES`
    to its :func:`devbook.stages.find_stages` result.
    """
    fig, axes = plt.subplots(1 + len(fits), 1, figsize=(8, 2.4 * (1 + len(fits))), sharex=True)
    axes[0].errorbar(llc["step"], llc["llc"], yerr=llc["llc_std"], fmt=".", ms=3, lw=0.6, color="k")
    _gp(axes[0], llc_stages.fit, "k")
    axes[0].set_ylabel(r"LLC $\hat\lambda$")
    for i, (ax, (name, found)) in enumerate(zip(axes[1:], fits.items())):
        colour = f"C{i + 1}"
        err = curv["trace_se"] if name == "trace" else None
        ax.errorbar(curv["step"], curv[name], yerr=err, fmt=".", ms=3, lw=0.6, color=colour)
        _gp(ax, found.fit, colour)
        for m in found.fit.milestones:
            ax.axvline(m, color=colour, ls=":", lw=1.4)
        ax.set_ylabel(CURVES[name])
    for i, ax in enumerate(axes):
        log_time_axis(ax, label="training step" if i == len(axes) - 1 else None, last=llc["step"].iloc[-1])
        shade_stages(ax, llc_stages.table, label=i == 0)
    fig.tight_layout()
    return fig


def slopes_figure(llc_stages: Stages, fits: dict[str, Stages], together: dict[str, pd.DataFrame]) -> Figure:
    """The GP slopes (per log-step, each divided by its largest ``|slope|``) of λ̂ and of each
    curvature curve, one panel per curve, where they move apart shaded red."""
    fig, axes = plt.subplots(len(fits), 1, figsize=(8, 2.3 * len(fits)), sharex=True, squeeze=False)
    ref = llc_stages.fit
    for i, (ax, (name, found)) in enumerate(zip(axes[:, 0], fits.items())):
        ax.plot(ref.grid_steps, ref.slope / np.abs(ref.slope).max(), "k", lw=1.2, label=r"$\hat\lambda$")
        ax.plot(
            found.fit.grid_steps,
            found.fit.slope / np.abs(found.fit.slope).max(),
            f"C{i + 1}",
            lw=1.2,
            label=CURVES[name],
        )
        ax.axhline(0, color="k", lw=0.5)
        for row in together[name].itertuples():
            if not row.together and "flat" not in (row.a, row.b):
                ax.axvspan(row.start, row.end, color="C3", alpha=0.12, lw=0)
        ax.set_ylabel("slope / max |slope|")
        ax.legend(fontsize=8, loc="lower left")
        log_time_axis(ax, label="training step" if i == len(fits) - 1 else None, last=ref.grid_steps[-1])
    fig.tight_layout()
    return fig


#: The statistics of :func:`scaling_costs` with their legend labels.
SCALING_LABELS = {
    "llc": "LLC estimate",
    "trace": "Hutchinson trace",
    "top_eig": "top eigenvalue (Lanczos)",
    "dense": "dense Hessian",
}


def scaling_figure(costs: pd.DataFrame, exponents: dict[str, float]) -> Figure:
    """CPU seconds against parameter count on log-log axes, one series per column of
    :data:`SCALING_LABELS` (fitted exponent in the legend), and the dense Hessian as d
    products at the measured cost of one (dashed; ``exponents["dense_model"]``), with grey guide
    lines of slope 1 and 2 through the first LLC point."""
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, (name, label) in enumerate(SCALING_LABELS.items()):
        ok = costs[name].notna()
        ax.plot(
            costs["params"][ok],
            costs[name][ok],
            "o-",
            color=f"C{i}",
            ms=4,
            label=f"{label}: exponent {exponents[name]:.2f}",
        )
    ok = costs["hvp"].notna()
    ax.plot(
        costs["params"][ok],
        costs["params"][ok] * costs["hvp"][ok],
        "--",
        color="C3",
        label=f"dense = d products (measured cost of one): exponent {exponents['dense_model']:.2f}",
    )
    x = costs["params"].to_numpy(float)
    x0, y0 = x[ok.to_numpy()][0], float(costs["llc"].dropna().iloc[0])
    for power, style in ((1, ":"), (2, "-.")):
        ax.plot(x, y0 * (x / x0) ** power, style, color="0.6", lw=0.8, label=f"slope {power} (guide)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("parameters d")
    ax.set_ylabel("CPU seconds")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", lw=0.3, alpha=0.5)
    fig.tight_layout()
    return fig
