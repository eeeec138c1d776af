"""This run beside the paper's: its stages, the cumulative-learning-rate time map, evidence.

A milestone of a shorter run cannot be compared with the paper's by step number: the learning
rate moves the weights, and a compressed OneCycleLR schedule ramps it up much faster. So a step
of this run is mapped to the paper step with the same cumulative learning rate
(:func:`paper_equivalent`). Used by the regression stages chapter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook.regression.train import one_cycle_lr
from devbook.stages import stage_of

PAPER_STEPS = 500_000
PAPER_MAX_LR = 0.003
PAPER_STAGES = pd.DataFrame(
    {
        "stage": ["LR1", "LR2", "LR3", "LR4", "LR5"],
        "start": [0, 1_000, 40_000, 126_000, 320_000],
        "end": [1_000, 40_000, 126_000, 320_000, 500_000],
        "type": ["A", "A", "B", "B", "A"],
    }
)  # paper §4.2 and Table 2 (seed 1)


def cumulative_lr(total_steps: int, max_lr: float) -> np.ndarray:
    """``Σ_{u<s} η_u`` for ``s = 0..total_steps`` under the OneCycleLR schedule of training."""
    return np.concatenate([[0.0], np.cumsum(one_cycle_lr(total_steps, max_lr))])


def paper_equivalent(steps: np.ndarray | list[int], total_steps: int, max_lr: float) -> np.ndarray:
    """The paper steps whose cumulative learning rate equals that of this run's ``steps``."""
    run = cumulative_lr(total_steps, max_lr)
    paper = cumulative_lr(PAPER_STEPS, PAPER_MAX_LR)
    return np.interp(run[np.asarray(steps, dtype=int)], paper, np.arange(PAPER_STEPS + 1))


def stages_on_paper_axis(stages: pd.DataFrame, total_steps: int, max_lr: float) -> pd.DataFrame:
    """``stages`` with the fractions of training and the paper-equivalent steps of its ends."""
    return stages.assign(
        frac_start=stages["start"] / total_steps,
        frac_end=stages["end"] / total_steps,
        paper_eq_start=paper_equivalent(stages["start"], total_steps, max_lr),
        paper_eq_end=paper_equivalent(stages["end"], total_steps, max_lr),
    )


def headline_metrics(mt: pd.DataFrame, task_dim: int) -> pd.DataFrame:
    """A few headline metrics per checkpoint (index: step) from the metrics table ``mt``."""
    ln_cols = [c for c in mt.columns if c.startswith("ln_collapse_")]
    attn = [c for q in "xy" for c in sorted(mt.columns) if c.startswith("attn_entropy_") and c.endswith(q)]
    smallest = mt[f"emb_sv{task_dim}"] if f"emb_sv{task_dim}" in mt else mt.filter(like="emb_sv").iloc[:, -1]
    return pd.DataFrame(
        {
            "test loss": mt["loss"],
            "dist. to task prior": mt["prior_dist_task_prior"],
            "dist. to zero": mt["prior_dist_zero"],
            "ICL_1:D": mt["icl_1_D"],
            "ICL_D:K": mt["icl_D_K"],
            "smallest emb. SV": smallest,
            "emb/pos alignment": mt["emb_pos_alignment"],
            "LN collapse (mean)": mt[ln_cols].mean(axis=1),
            "attn entropy (mean)": mt[attn].mean(axis=1),
        },
        index=mt.index,
    )


def describe_stages(stages: pd.DataFrame, evidence: pd.DataFrame) -> str:
    """One markdown line per stage from the computed changes ``evidence`` (no typed numbers)."""
    lines = []
    for row, (_, ch) in zip(stages.itertuples(), evidence.iterrows()):
        parts = [
            f"loss {ch['test loss']:+.3g}",
            f"LLC {row.dllc:+.3g}",
            f"distance to the task-prior prediction {ch['dist. to task prior']:+.3g}",
            f"ICL$_{{1:D}}$ {ch['ICL_1:D']:+.3g}",
            f"ICL$_{{D:K}}$ {ch['ICL_D:K']:+.3g}",
            f"LN collapse {ch['LN collapse (mean)']:+.3g}",
            f"attention entropy {ch['attn entropy (mean)']:+.3g}",
        ]
        lines.append(
            f"- **{row.stage}** (type {row.type}, steps {row.start:,}–{row.end:,}): " + ", ".join(parts) + "."
        )
    return "\n".join(lines)


def evidence_events(headline: pd.DataFrame, mt: pd.DataFrame, stages: pd.DataFrame) -> list[str]:
    """Three events of paper §4.2 located in the run, each placed in its automatic stage.

    The steepest fall of ICL_{1:D} per unit log-time, the minimum of the smallest token-embedding
    singular value, and the first checkpoint where any layer-norm weight falls below 0.1.
    """
    icl = headline["ICL_1:D"].to_numpy()
    drop = np.diff(icl) / np.diff(np.log1p(headline.index.to_numpy()))
    icl_step = int(headline.index[int(np.argmin(drop)) + 1])
    emb_step = int(headline["smallest emb. SV"].idxmin())
    ln_any = (mt[[c for c in mt.columns if c.startswith("ln_collapse_")]] > 0).any(axis=1)
    ln_step = int(ln_any.idxmax()) if ln_any.any() else None
    return [
        f"- steepest fall of ICL$_{{1:D}}$ per unit log-time: up to step {icl_step:,}, in "
        f"{stage_of(stages, icl_step)};",
        f"- smallest token-embedding singular value at its minimum: step {emb_step:,}, in "
        f"{stage_of(stages, emb_step)};",
        (
            f"- first layer-norm weight below 0.1: step {ln_step:,}, in {stage_of(stages, ln_step)}."
            if ln_step is not None
            else "- no layer-norm weight falls below 0.1 in this run."
        ),
    ]


def save_paper_results(folder: Path, seed: int, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write the small result tables of a ``paper``-preset run as ``{name}_seed{seed}.csv``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, table in tables.items():
        paths.append(folder / f"{name}_seed{seed}.csv")
        table.to_csv(paths[-1], index=False)
    return paths


def paper_results_figure(folder: Path) -> tuple[Figure | None, list[tuple[str, pd.DataFrame]]]:
    """The committed ``paper``-preset results in ``folder``: λ̂ over training with its stages
    shaded (``None`` without an ``llc_*.csv``) and every ``stages_*.csv`` as ``(name, table)``."""
    import matplotlib.pyplot as plt

    from devbook.plots import log_time_axis, shade_stages

    files = sorted(folder.glob("*.csv")) if folder.exists() else []
    llc_files = [f for f in files if f.name.startswith("llc_")]
    stage_files = [f for f in files if f.name.startswith("stages_")]
    tables = [(f.name, pd.read_csv(f)) for f in stage_files]
    if not llc_files:
        return None, tables
    p = pd.read_csv(llc_files[0])
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(p["step"], p["llc"], "k.-", ms=3, lw=0.8, label=f"paper preset ({llc_files[0].stem})")
    if tables:
        shade_stages(ax, tables[0][1])
    log_time_axis(ax)
    ax.set_ylabel(r"$\hat\lambda$")
    ax.legend(fontsize=8)
    return fig, tables


def differences(
    num_steps: int, sgld: dict, stages: pd.DataFrame, run_end_eq: float, reduced: bool
) -> list[str]:
    """Markdown notes on where a run differs from the paper's: length, SGLD, stages found.

    ``sgld`` is the run's SGLD preset as a dict; ``run_end_eq`` the paper step equivalent to the
    run's last step; ``reduced`` is False at the ``paper`` preset (no length or SGLD notes).
    """
    notes = []
    if reduced:
        later = [s for s in PAPER_STAGES["stage"][PAPER_STAGES["start"] >= run_end_eq]]
        notes.append(
            f"- **Length.** {num_steps:,} steps instead of 500,000: by cumulative learning rate "
            f"the run ends at the equivalent of paper step {run_end_eq:,.0f}, so the paper's "
            f"stages after that ({', '.join(later) or 'none'}) cannot appear. Their mechanism, "
            "the slow collapse of layer-norm and unembedding weights under a small learning "
            "rate, needs the long annealing phase of the full run; the compressed schedule "
            f"anneals {PAPER_STEPS // num_steps}× faster."
        )
        notes.append(
            f"- **SGLD.** Batch {sgld['batch_size']} instead of 1,024, {sgld['num_chains']} "
            f"chains × {sgld['num_burnin'] + sgld['num_draws']} steps instead of 10 × 5,000, "
            f"ε = {sgld['epsilon']:g}, nβ = {sgld['nbeta']:.3g}, γ = {sgld['gamma']:g} (calibrated "
            "on this run above), and one "
            f"checkpoint in {sgld['every']}: the estimates are noisier and their scale is not "
            "comparable with the paper's (the LLC estimate depends on ε, γ and nβ); the GP "
            "smoothing absorbs some of the noise, but milestones can move by a checkpoint or two."
        )
    n_a, n_b = int((stages["type"] == "A").sum()), int((stages["type"] == "B").sum())
    notes.append(
        f"- **Stages found.** {len(stages)} ({n_a} of type A, {n_b} of type B) against "
        "the paper's five (three A, two B) over the full run; the table above compares "
        "them on the paper's step axis."
    )
    return notes
