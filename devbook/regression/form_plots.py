"""Figures of the regression forms chapter (``book/regression/forms.md``).

- :func:`variance_figure`: explained-variance ratios of the trajectory PCA beside Brownian
  motion's 6/(π²k²) (paper App. B.7);
- :func:`planes_figure`: the trajectory in every plane of the first PCs, coloured by LLC stage,
  with its evolute, osculating circles, vertices, cusps and forms;
- :func:`scores_figure`: each PC score over training with the stage boundaries and the forms;
- :func:`potentials_figure`: the form potentials with their influence ranges;
- :func:`distances_figure`: distance of the network's predictions to the reference predictors.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from numpy.typing import ArrayLike

from devbook.ed import FormSearch
from devbook.ed.geometry import circles
from devbook.ed.plots import VERTEX, draw_plane, draw_potential
from devbook.plots import STAGE_COLOURS, log_time_axis, shade_stages, stage_names


def brownian_ratios(k: int) -> np.ndarray:
    """6/(π²j²) for j = 1..k: explained-variance ratios of high-dimensional Brownian motion."""
    return 6.0 / (np.pi**2 * np.arange(1, k + 1) ** 2)


def variance_figure(ratios: ArrayLike) -> Figure:
    """Bars of the explained-variance ratios beside Brownian motion's (dots)."""
    r = np.asarray(ratios, dtype=float)
    k = np.arange(1, r.size + 1)
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.bar(k, r, color="0.45", label="this run")
    ax.plot(k, brownian_ratios(r.size), "o", color=VERTEX, label=r"Brownian motion, $6/(\pi^2k^2)$")
    ax.set_xticks(k)
    ax.set_xlabel("principal component $k$")
    ax.set_ylabel("explained variance ratio")
    ax.legend(frameon=False)
    fig.tight_layout()
    return fig


def _stage_colours(steps: np.ndarray, stages: pd.DataFrame) -> list[str]:
    idx = np.clip(np.searchsorted(stages["end"].to_numpy(float), steps, side="left"), 0, len(stages) - 1)
    return [STAGE_COLOURS[t] for t in stages["type"].to_numpy()[idx]]


def _shade(stages: pd.DataFrame) -> list[float]:
    """Lightness per stage so that neighbouring stages of one type still differ."""
    return [0.55 + 0.45 * (i % 2) for i in range(len(stages))]


def _frame(ax: plt.Axes, curve: np.ndarray, marks: np.ndarray, margin: float = 0.25) -> None:
    """Limit the axes to the curve and the marks (plus ``margin``), not the circles."""
    pts = np.vstack([curve, marks])
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * max(float((hi - lo).max()), 1e-12)
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim(lo[1] - pad, hi[1] + pad)


def _mark_forms(ax: plt.Axes, search: FormSearch, plane: tuple[int, int], highlight: Sequence[int]) -> None:
    """Grey stars at every candidate form; gold, numbered stars with their members' osculating
    circles at the ``highlight`` ones."""
    i, j = plane
    for n, form in enumerate(search.forms):
        big = n in highlight
        x, y = form.point_pc[i], form.point_pc[j]
        style = (
            {"color": "gold", "mec": "black", "ms": 13, "zorder": 5}
            if big
            else {"color": "0.6", "mec": "none", "ms": 7, "zorder": 4}
        )
        ax.plot(x, y, "*", **style)
        if not big:
            continue
        ax.annotate(f"{n + 1}", (x, y), xytext=(5, 5), textcoords="offset points", fontsize=9, weight="bold")
        for m in form.members:
            if m.plane == plane and m.kind == "vertex":
                ax.add_patch(Circle(m.centre, m.radius, fill=False, lw=1.0, color=VERTEX))


def planes_figure(
    search: FormSearch,
    stages: pd.DataFrame,
    highlight: Sequence[int] = (),
    n_circles: int = 8,
    prefix: str = "LR",
) -> Figure:
    """The trajectory in every plane of ``search.planes``, coloured by the LLC stage of each
    checkpoint (the type's colour, alternating in strength), with its evolute (dashed) and
    ``n_circles`` evenly spaced osculating circles (grey), every
    detected vertex (red ring) and cusp (square), every candidate form (grey star) and the forms
    ``highlight`` (indices into ``search.forms``: gold stars numbered ``index + 1``, with the
    osculating circles of their members). The axes frame the trajectory and the highlighted
    forms (other candidates may fall outside). Stages are named ``prefix`` 1, 2, …"""
    planes = search.planes
    fig, axes = plt.subplots(1, len(planes), figsize=(4.2 * len(planes), 4.0), squeeze=False)
    steps = search.steps
    stage_idx = np.clip(np.searchsorted(stages["end"].to_numpy(float), steps), 0, len(stages) - 1)
    alpha = np.asarray(_shade(stages))[stage_idx]
    rgba = [(*to_rgb(c), a) for c, a in zip(_stage_colours(steps, stages), alpha)]
    for ax, (i, j) in zip(axes[0], planes):
        sm = search.smoothed.columns((i, j))
        vert, cusp = search.features[(i, j)]
        draw_plane(
            ax,
            sm.position,
            circles(sm),
            vert,
            cusp,
            labels=(f"PC{i + 1}", f"PC{j + 1}"),
            n_circles=n_circles,
            vertex_circles=False,
            clip=0.5,
        )
        p = sm.position
        ax.add_collection(
            LineCollection(np.stack([p[:-1], p[1:]], axis=1), colors=rgba[:-1], linewidths=3.0, zorder=0)
        )
        _mark_forms(ax, search, (i, j), highlight)
        shown = [search.forms[n].point_pc[[i, j]] for n in highlight]  # other candidates may fall outside
        _frame(ax, p, np.array(shown).reshape(-1, 2))
    names = stage_names(stages, prefix)
    handles = [
        plt.Line2D([], [], color=STAGE_COLOURS[t], lw=3, alpha=a, label=f"{nm} ({t})")
        for nm, t, a in zip(names, stages["type"], _shade(stages))
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig


def scores_figure(search: FormSearch, stages: pd.DataFrame, prefix: str = "LR") -> Figure:
    """Each PC score over training (raw grey, smoothed black), stages shaded, forms dotted."""
    k = search.pca.n_components
    fig, axes = plt.subplots(k, 1, figsize=(8, 1.9 * k), sharex=True, squeeze=False)
    last = float(search.steps[-1])
    for c, ax in enumerate(axes[:, 0]):
        ax.plot(search.steps, search.pca.scores[:, c], color="0.7", lw=0.8)
        ax.plot(search.steps, search.smoothed.position[:, c], color="black", lw=1.2)
        log_time_axis(ax, first_positive=max(float(search.steps[1]), 1.0), label=None, last=last)
        shade_stages(ax, stages, prefix=prefix, label=c == 0)
        for form in search.forms:
            ax.axvline(form.step, color=VERTEX, ls=":", lw=1.2)
        ax.set_ylabel(f"PC{c + 1}")
    axes[-1, 0].set_xlabel("training step")
    fig.tight_layout()
    return fig


def potentials_figure(search: FormSearch, stages: pd.DataFrame, which: Sequence[int]) -> Figure:
    """One panel per form in ``which`` (indices into ``search.forms``): its potential, the
    squared distance in function space, over training, with its influence range."""
    which = list(which)
    fig, axes = plt.subplots(1, max(len(which), 1), figsize=(4.2 * max(len(which), 1), 3.2), squeeze=False)
    for ax, n in zip(axes[0], which):
        form = search.forms[n]
        draw_potential(ax, search.steps, search.potentials[n], start=form.start, end=form.end, step=form.step)
        log_time_axis(ax, first_positive=max(float(search.steps[1]), 1.0), last=float(search.steps[-1]))
        shade_stages(ax, stages, label=False)
        ax.set_title(f"form {n + 1} at step {form.step:,.0f}", fontsize=10)
    if not which:
        axes[0, 0].set_axis_off()
        axes[0, 0].text(0.5, 0.5, "no form found", ha="center", va="center")
    fig.tight_layout()
    return fig


def distances_figure(distances: pd.DataFrame, stages: pd.DataFrame, form_steps: ArrayLike) -> Figure:
    """Median squared distance of the network's predictions to each reference predictor."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    steps = distances.index.to_numpy(float)
    styles = {"task prior": {"ls": "--"}}
    for name in distances.columns:
        ax.plot(steps, distances[name], lw=1.4, label=name, **styles.get(name, {}))
    ax.set_yscale("log")
    log_time_axis(ax, first_positive=max(float(steps[1]), 1.0), last=float(steps[-1]))
    shade_stages(ax, stages)
    for s in np.asarray(form_steps, dtype=float):
        ax.axvline(s, color=VERTEX, ls=":", lw=1.2)
    ax.set_ylabel("median squared distance of $\\hat y$")
    ax.legend(frameon=False, fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig
