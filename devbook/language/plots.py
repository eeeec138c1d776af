"""Figures specific to the language chapter (``book/language/stages.md``).

- :func:`plot_token_changes`: a passage with each token shaded by its loss change across a
  stage (the paper's Figure 17): blue = loss fell (learnt), red = loss rose.
- :func:`plot_head_scores`: one line per attention head of a score over training steps.

Nothing here touches global rcParams.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def plot_token_changes(fig: Figure, words: Sequence[str], deltas: np.ndarray,
                       title: str | None = None, fontsize: float = 8.0) -> None:
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
            ax.text(x, y, w, fontsize=fontsize, family="monospace", va="center",
                    bbox={"facecolor": cmap(norm(d)), "edgecolor": "none", "pad": 0.5})
            x += len(w) * char
        y -= step


def plot_head_scores(ax: Axes, steps: np.ndarray, scores: np.ndarray, labels: Sequence[str],
                     highlight: Sequence[int] = (), ylabel: str = "") -> None:
    """``scores`` ``(S, n_heads)`` over ``steps``: grey lines, highlighted heads in colour."""
    for h, label in enumerate(labels):
        if h in highlight:
            ax.plot(steps, scores[:, h], lw=1.8, label=label)
        else:
            ax.plot(steps, scores[:, h], lw=0.8, color="0.6")
    ax.set_ylabel(ylabel)
    if highlight:
        ax.legend(fontsize=7, loc="upper left")
