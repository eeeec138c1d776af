"""The figures of ``book/tms/growth-and-form.md``; each function returns a matplotlib figure.

- :func:`plot_forms`: the columns of W at the end of each plateau of one run;
- :func:`plot_staircase`: a run's loss with its plateaus, and λ̂ along it;
- :func:`plot_transition_graph`: every k-gon seen at a plateau and the transitions between them;
- :func:`plot_loss_llc`: loss against λ̂ per plateau, transitions as arrows;
- :func:`plot_occupancy`: posterior share of each k-gon phase against n.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook.tms.analysis import Plateau
from devbook.tms.kgon import label_k
from devbook.tms.train import TrainResult


def plot_forms(result: TrainResult, run: int, shown: Sequence[Plateau]) -> Figure:
    """The columns W_j of one run at the end of each of its plateaus, one panel each.

    Parameters
    ----------
    result : TrainResult
        The run's checkpoints.
    run : int
        Seed index.
    shown : sequence of Plateau
        Its plateaus (at least one).

    Returns
    -------
    matplotlib.figure.Figure
        Columns green for a positive bias, red for a negative one, grey near zero.
    """
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.2), squeeze=False)
    for ax, p in zip(axes[0], shown):
        W, b = result.W[p.end, run], result.b[p.end, run]
        lim = 1.15 * float(W.norm(dim=0).max()) + 1e-3
        for j in range(W.shape[1]):
            colour = "tab:green" if b[j] > 0.02 else ("tab:red" if b[j] < -0.02 else "tab:gray")
            ax.plot([0, W[0, j]], [0, W[1, j]], color=colour, lw=2)
            ax.plot(W[0, j], W[1, j], "o", color=colour)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(f"{p.label}  (step {result.steps[p.end]})\nloss {p.loss:.4f}")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_staircase(
    result: TrainResult, run: int, shown: Sequence[Plateau], curve_idx: np.ndarray, curve: Sequence[float]
) -> Figure:
    """A run's training loss (log-log) with its plateaus shaded, and λ̂ on a second axis.

    Parameters
    ----------
    result : TrainResult
        The run's checkpoints and losses.
    run : int
        Seed index.
    shown : sequence of Plateau
        Its plateaus (shaded and labelled).
    curve_idx : numpy.ndarray
        Checkpoint indices of the λ̂ values.
    curve : sequence of float
        λ̂ at ``curve_idx``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(result.steps[1:], result.loss[1:, run], color="tab:blue", label="loss")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss", color="tab:blue")
    for p in shown:
        ax.axvspan(result.steps[p.start], result.steps[p.end], color="0.9")
        ax.text(result.steps[p.start], p.loss * 1.05, p.label, fontsize=9)
    ax2 = ax.twinx()
    ax2.plot(result.steps[curve_idx], curve, "o-", color="tab:green", label="LLC")
    ax2.set_ylabel(r"$\hat\lambda$", color="tab:green")
    fig.tight_layout()
    return fig


def _graph_positions(level: dict[str, list[float]]) -> tuple[dict[str, float], dict[str, float]]:
    """x (k, shifted right by σ and left by φ) and mean plateau loss of every label."""
    mean_level = {label: float(np.mean(v)) for label, v in level.items()}
    xs = {label: label_k(label) + 0.12 * label.count("+") - 0.12 * label.count("-") for label in mean_level}
    return xs, mean_level


def plot_transition_graph(plateaus: list[list[Plateau]], counts: Counter) -> Figure:
    """Every k-gon seen at a plateau and the observed transitions between them.

    Each label is drawn at its mean plateau loss (x: k, shifted right by σ and left by φ) with
    its number of plateaus; each transition is an arrow with its count.

    Parameters
    ----------
    plateaus : list of list of Plateau
        Per run, its plateaus.
    counts : collections.Counter
        As returned by :func:`devbook.tms.analysis.transitions`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    level: dict[str, list[float]] = {}
    for runs in plateaus:
        for p in runs:
            level.setdefault(p.label, []).append(p.loss)
    xs, mean_level = _graph_positions(level)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for label, y in mean_level.items():
        ax.plot(xs[label], y, "o", ms=9, color="tab:blue", zorder=3)
        ax.annotate(
            f"{label}  ({len(level[label])} plateaus)",
            (xs[label], y),
            textcoords="offset points",
            xytext=(-8, 8),
            ha="right",
            fontsize=9,
        )
    for (a, b), cnt in counts.items():
        ax.annotate(
            "",
            xy=(xs[b], mean_level[b]),
            xytext=(xs[a], mean_level[a]),
            arrowprops=dict(
                arrowstyle="-|>",
                lw=1 + 1.5 * np.log1p(cnt),
                color="tab:red",
                alpha=0.7,
                shrinkA=6,
                shrinkB=6,
                connectionstyle="arc3,rad=0.2",
            ),
        )
        ax.text(
            (xs[a] + xs[b]) / 2,
            np.sqrt(mean_level[a] * mean_level[b]),
            f"×{cnt}",
            color="tab:red",
            fontsize=10,
            bbox=dict(facecolor="white", edgecolor="none", alpha=0.8),
        )
    ax.set_yscale("log")
    ax.set_xlim(min(xs.values(), default=3) - 0.8, max(xs.values(), default=6) + 0.4)
    if mean_level:
        ax.set_ylim(min(mean_level.values()) / 1.15, max(mean_level.values()) * 1.25)
    ax.set_xlabel("k (hull vertices); shifted right by σ, left by φ")
    ax.set_ylabel("mean plateau loss (log)")
    fig.tight_layout()
    return fig


def plot_loss_llc(
    per_label: dict[str, list[tuple[float, float, float]]],
    pairs: Sequence[tuple[Plateau, Plateau, float, float]],
    *,
    xmin: float = -25.0,
) -> Figure:
    """Loss against λ̂ for every measured plateau, transitions as arrows.

    Points are coloured by k-gon (black: mean ± std per k-gon). Saddles give very negative λ̂
    (SGLD escapes): values below ``xmin`` are drawn at the left edge (◀) so the rest is
    legible.

    Parameters
    ----------
    per_label : dict
        As returned by :func:`devbook.tms.analysis.label_summary`.
    pairs : sequence of tuple
        ``(a, b, λ̂_a, λ̂_b)`` from :func:`devbook.tms.analysis.transition_test`.
    xmin : float
        The left edge of the λ̂ axis.

    Returns
    -------
    matplotlib.figure.Figure
    """

    def clip(v: float) -> float:
        return max(v, xmin)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, v in per_label.items():
        arr = np.array(v)
        xs_l = np.maximum(arr[:, 1], xmin)
        ax.scatter(xs_l, arr[:, 0], s=14, alpha=0.6, marker="o", label=label)
        if (arr[:, 1] < xmin).any():
            ax.scatter(xs_l[arr[:, 1] < xmin], arr[arr[:, 1] < xmin, 0], s=40, marker="<", color="k")
        ax.errorbar(
            clip(arr[:, 1].mean()),
            arr[:, 0].mean(),
            xerr=arr[:, 1].std() if len(arr) > 1 else 0,
            fmt="ko",
            ms=4,
        )
        ax.annotate(
            label, (clip(arr[:, 1].mean()), arr[:, 0].mean()), textcoords="offset points", xytext=(5, 5)
        )
    for a, b, la, lb in pairs:
        ax.annotate(
            "",
            xy=(clip(lb), b.loss),
            xytext=(clip(la), a.loss),
            arrowprops=dict(arrowstyle="->", color="tab:red", alpha=0.6),
        )
    ax.set_xlim(xmin - 2, None)
    ax.set_xlabel(rf"$\hat\lambda$ at the plateau (values below {xmin:g} drawn at the edge, ◀)")
    ax.set_ylabel("plateau loss")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_occupancy(occupancy: pd.DataFrame, grid: np.ndarray, theory: np.ndarray, n_theory: float) -> Figure:
    """Posterior share of each k-gon phase against n, with the two-phase theory.

    Parameters
    ----------
    occupancy : pandas.DataFrame
        As returned by :func:`devbook.tms.posterior.occupancy_table` (solid lines; dotted: the
        unclassified share).
    grid : numpy.ndarray
        Sample sizes of the theory curves.
    theory : numpy.ndarray
        ``(2, len(grid))`` shares of the 5-gon and 6-gon
        (:func:`devbook.tms.posterior.two_phase_occupancy`; dashed).
    n_theory : float
        The theory's crossing (a grey vertical line).

    Returns
    -------
    matplotlib.figure.Figure
    """
    ladder = [int(n) for n in occupancy["n"]]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key, colour, name in [
        ("k5", "tab:blue", "5-gon"),
        ("k6", "tab:orange", "6-gon"),
        ("other", "tab:gray", "other k"),
    ]:
        ax.plot(
            ladder, [float(v) for v in occupancy[key]], "o-", color=colour, label=f"{name} (replica exchange)"
        )
    ax.plot(
        ladder,
        [float(v) for v in occupancy["unclassified"]],
        "x:",
        color="k",
        label=r"unclassified ($L(w) > 0.1$)",
    )
    ax.plot(grid, theory[0], "--", color="tab:blue", label="5-gon (seed theory)")
    ax.plot(grid, theory[1], "--", color="tab:orange", label="6-gon (seed theory)")
    ax.axvline(n_theory, color="0.6", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("n (log scale)")
    ax.set_ylabel("fraction of draws")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
