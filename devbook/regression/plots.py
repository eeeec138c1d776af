"""The evidence figures of the regression stages chapter (paper App. D.2–D.3), stages shaded.

Each function takes the metrics table ``mt`` (index: step; from
:func:`devbook.regression.metrics.evaluate_run`) and the automatic stage table, and returns a figure. Nothing here touches rcParams.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook.plots import log_time_axis, shade_stages


def _finish(fig: Figure, axes: np.ndarray, stages: pd.DataFrame, last: float) -> Figure:
    flat = list(np.ravel(axes))
    bottom = len(flat) - (2 if len(flat) > 2 else len(flat))
    for i, ax in enumerate(flat):
        log_time_axis(ax, label="training step" if i >= bottom else None, last=last)
        shade_stages(ax, stages, label=i < 2)
    fig.tight_layout()
    return fig


def behaviour_figure(mt: pd.DataFrame, stages: pd.DataFrame) -> Figure:
    """Distances to the zero and task-prior predictions, ICL scores, OOD inputs and tasks."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    ax = axes[0, 0]
    ax.plot(mt.index, mt["prior_dist_zero"], label="to zero prediction")
    ax.plot(mt.index, mt["prior_dist_task_prior"], label=r"to task prior $\bar t\cdot x$")
    ax.set_yscale("log")
    ax.set_ylabel("mean squared distance")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    ax.plot(mt.index, mt["icl_1_D"], label=r"ICL$_{1:D}=\ell_D-\ell_1$")
    ax.plot(mt.index, mt["icl_D_K"], label=r"ICL$_{D:K}=\ell_K-\ell_D$")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel("ICL score")
    ax.legend(fontsize=8)
    gains = sorted(float(c.removeprefix("ood_inputs_g")) for c in mt.columns if c.startswith("ood_inputs_g"))
    for ax, fam, title in [
        (axes[1, 0], "ood_inputs", r"OOD inputs $x\sim N(0,g^2I)$"),
        (axes[1, 1], "ood_tasks", r"OOD tasks $t\sim N(0,g^2I)$"),
    ]:
        for g in gains:
            col = f"{fam}_g{g:g}" if f"{fam}_g{g:g}" in mt else f"{fam}_g{g}"
            ax.plot(mt.index, mt[col], label=f"g={g:g}")
        ax.set_yscale("log")
        ax.set_ylabel(r"MSE / $g^2$")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7, ncol=2)
    return _finish(fig, axes, stages, mt.index[-1])


def _singular_values(ax: plt.Axes, mt: pd.DataFrame, prefix: str, cmap: str | None) -> None:
    cols = sorted((c for c in mt.columns if c.startswith(prefix)), key=lambda c: int(c[6:]))
    colours = plt.get_cmap(cmap) if cmap else None
    for i, c in enumerate(cols):
        if colours is None:
            ax.plot(mt.index, mt[c], label=c.replace(prefix, "σ"))
        else:
            ax.plot(mt.index, mt[c], color=colours(i / max(1, len(cols) - 1)), lw=0.9)
    ax.set_yscale("log")


def structure_figure(
    mt: pd.DataFrame, vectors: dict[str, np.ndarray], vector_steps: np.ndarray, stages: pd.DataFrame
) -> Figure:
    """Embedding singular values, positional alignment, unembedding weights, LN collapse."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5), sharex=True)
    _singular_values(axes[0, 0], mt, "emb_sv", None)
    axes[0, 0].set_title("token embedding singular values", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=2)
    _singular_values(axes[0, 1], mt, "pos_sv", "viridis")
    axes[0, 1].set_title("positional embedding singular values (dark: largest)", fontsize=9)
    twin = axes[0, 1].twinx()
    twin.plot(mt.index, mt["emb_pos_alignment"], "k--", lw=1)
    twin.set_ylabel("emb./pos. alignment (dashed)", fontsize=8)
    ax, w = axes[1, 0], vectors["unemb_eff_weight"]
    ax.plot(vector_steps, w, lw=0.5, alpha=0.6)
    ax.plot(vector_steps, w.mean(axis=1), "k", lw=2, label="mean")
    ax.set_title("effective unembedding weights (read-out component)", fontsize=9)
    ax.legend(fontsize=8)
    for c in (c for c in mt.columns if c.startswith("ln_collapse_")):
        axes[1, 1].plot(mt.index, mt[c], label=c.removeprefix("ln_collapse_"))
    axes[1, 1].set_title(r"layer-norm collapse: fraction of $|\gamma|<0.1$", fontsize=9)
    axes[1, 1].legend(fontsize=7)
    return _finish(fig, axes, stages, mt.index[-1])


def attention_figure(mt: pd.DataFrame, stages: pd.DataFrame) -> Figure:
    """Normalised attention entropy of every head, for queries at x- and at y-tokens."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for ax, q in zip(axes, "xy"):
        cols = sorted(c for c in mt.columns if c.startswith("attn_entropy_") and c.endswith(q))
        for c in cols:
            ax.plot(mt.index, mt[c], lw=1, label=c.removeprefix("attn_entropy_")[:-1])
        ax.set_title(f"normalised attention entropy, queries at {q}-tokens", fontsize=9)
        log_time_axis(ax, last=mt.index[-1])
        shade_stages(ax, stages)
    axes[0].set_ylabel("entropy / log(#visible)")
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
