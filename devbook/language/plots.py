"""Figures specific to the language chapter (``book/language/stages.md``).

- :func:`plot_token_changes`: a passage with each token shaded by its loss change across a
  stage (the paper's Figure 17): blue = loss fell (learnt), red = loss rose.
- :func:`plot_head_scores`: one line per attention head of a score over training steps;
- :func:`evidence_figure`, :func:`composition_figure`: the evidence figures of the stages.

Nothing here touches global rcParams.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def plot_token_changes(
    fig: Figure, words: Sequence[str], deltas: np.ndarray, title: str | None = None, fontsize: float = 8.0
) -> None:
    """Lay out ``words`` as wrapped text on ``fig``, each shaded by ``deltas`` (same length).

    The colour scale is symmetric around 0 (blue = lower loss after the stage, red = higher).
    """
    if len(words) != len(deltas):
        raise ValueError(f"{len(words)} words but {len(deltas)} loss changes")
    char = 0.62 * fontsize / (72 * fig.get_figwidth())  # monospace advance, figure fraction
    width = int(0.9 / char)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    vmax = float(np.nanmax(np.abs(deltas))) or 1.0
    norm = mcolors.Normalize(-vmax, vmax)
    cmap = mcolors.LinearSegmentedColormap.from_list("lm", ["#2166ac", "#f7f7f7", "#b2182b"])
    lines: list[list[tuple[str, float]]] = [[]]
    used = 0
    for w, d in zip(words, deltas):
        w = w.replace("\n", " ⏎ ")
        if used + len(w) > width and lines[-1]:
            lines.append([])
            used = 0
        lines[-1].append((w, float(d)))
        used += len(w)
    n = len(lines) + (1 if title else 0)
    step = 1.0 / (n + 1)
    y = 1 - step
    if title:
        ax.text(0.01, y, title, fontsize=9, weight="bold", va="center")
        y -= step
    for line in lines:
        x = 0.01
        for w, d in line:
            ax.text(
                x,
                y,
                w,
                fontsize=fontsize,
                family="monospace",
                va="center",
                bbox={"facecolor": cmap(norm(d)), "edgecolor": "none", "pad": 0.5},
            )
            x += len(w) * char
        y -= step


def plot_head_scores(
    ax: Axes,
    steps: np.ndarray,
    scores: np.ndarray,
    labels: Sequence[str],
    highlight: Sequence[int] = (),
    ylabel: str = "",
) -> None:
    """``scores`` ``(S, n_heads)`` over ``steps``: grey lines, highlighted heads in colour."""
    for h, label in enumerate(labels):
        if h in highlight:
            ax.plot(steps, scores[:, h], lw=1.8, label=label)
        else:
            ax.plot(steps, scores[:, h], lw=0.8, color="0.6")
    ax.set_ylabel(ylabel)
    if highlight:
        ax.legend(fontsize=7, loc="upper left")


def heads_above(scores: np.ndarray, threshold: float) -> list[int]:
    """Indices of the heads whose final score (``scores[-1]``, one per head) exceeds ``threshold``."""
    return [h for h in range(scores.shape[-1]) if scores[-1][h] > threshold]


def _panel_positions(ax: Axes, res: dict[str, np.ndarray], positions: Sequence[int]) -> None:
    gap = res["pos_loss_ablated"] - res["pos_loss"]
    for j, p in enumerate(positions):
        ax.plot(res["step"], gap[:, j], lw=1, label=f"position {p}")
    ax.set_ylabel("loss increase")
    ax.set_title("LM2: zeroing the positional embedding (C.3.1)", fontsize=9)
    ax.legend(fontsize=6, ncol=2)


def evidence_figure(
    res: dict[str, np.ndarray], stages: pd.DataFrame, n_layers: int, n_ctx: int, threshold: float
) -> Figure:
    """The six evidence panels of the language stages (paper App. C.2–C.3), stages shaded.

    ``res`` is :func:`devbook.language.metrics.evaluate_run`'s output; heads whose final score
    exceeds ``threshold`` are drawn in colour.
    """
    import matplotlib.pyplot as plt

    from devbook.language import metrics as lm
    from devbook.plots import log_time_axis, shade_stages

    n_heads = res["prev_token"].shape[-1]
    fig, axes = plt.subplots(3, 2, figsize=(10, 8.5), sharex=True)
    ax = axes[0, 0]
    ax.plot(res["step"], res["bigram_score"], "o-", ms=3, label="bigram score")
    ax.axhline(float(res["bigram_entropy"][-1]), color="k", ls=":", label="bigram entropy (floor)")
    ax.set_ylabel("nats")
    ax.set_title("LM1: bigram score (C.2.1)", fontsize=9)
    ax.legend(fontsize=7)
    for n in (3, 4):
        axes[0, 1].plot(res["step"], res[f"ngram_score_{n}"], "o-", ms=3, label=f"n = {n}")
    axes[0, 1].set_title("LM2: n-gram score (C.2.2)", fontsize=9)
    axes[0, 1].legend(fontsize=7)
    _panel_positions(axes[1, 0], res, lm.ablation_positions(n_ctx))
    plot_head_scores(
        axes[1, 1],
        res["step"],
        res["prev_token"],
        lm.head_labels(1, n_heads),
        heads_above(res["prev_token"], threshold),
        "attention",
    )
    axes[1, 1].set_title("LM3: previous-token score, first-layer heads (C.3.3)", fontsize=9)
    plot_head_scores(
        axes[2, 0],
        res["step"],
        res["prefix_matching"],
        lm.head_labels(n_layers, n_heads),
        heads_above(res["prefix_matching"], threshold),
        "attention",
    )
    axes[2, 0].set_title(f"LM4: prefix-matching score, layer-{n_layers} heads (C.3.4)", fontsize=9)
    axes[2, 1].plot(res["step"], res["icl_score"], "o-", ms=3)
    early, late = lm.icl_positions(n_ctx)
    axes[2, 1].set_title(f"LM4: ICL score, loss at token {late} − token {early} (C.2.3)", fontsize=9)
    for ax in axes.flat:
        log_time_axis(ax)
        shade_stages(ax, stages, prefix="LM", label=False)
    fig.tight_layout()
    return fig


def composition_figure(kcomp: np.ndarray, first: Sequence[str], second: Sequence[str]) -> Figure:
    """K-composition scores between first-layer heads (rows) and second-layer heads (columns)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 4))
    im = ax.imshow(kcomp, cmap="viridis")
    ax.set_xticks(range(len(second)), second, rotation=90, fontsize=7)
    ax.set_yticks(range(len(first)), first, fontsize=7)
    ax.set_xlabel("second-layer head (keys read)")
    ax.set_ylabel("first-layer head (writes)")
    fig.colorbar(im, ax=ax, label="K-composition")
    fig.tight_layout()
    return fig
