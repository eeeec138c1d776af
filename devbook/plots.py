"""Small shared plotting helpers (matplotlib). Nothing here touches global rcParams.

- :func:`shade_stages` shades the stages of a :func:`devbook.stages.find_stages` table on an
  axis (type A and B in two colours, stage names on top);
- :func:`log_time_axis` puts training steps on a log axis that keeps step 0 visible;
- :func:`stage_names` names the stages ``{prefix}1``, ``{prefix}2``, …;
- :func:`plot_llc_traces` draws per-chain online LLC traces (calibration figures).

Used by the regression and language stage chapters and the calibration chapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

STAGE_COLOURS = {"A": "#4C72B0", "B": "#DD8452"}


def stage_names(stages: pd.DataFrame, prefix: str = "LR") -> list[str]:
    """``[f"{prefix}1", f"{prefix}2", …]``, one per row of ``stages``."""
    return [f"{prefix}{i + 1}" for i in range(len(stages))]


def log_time_axis(ax: Axes, first_positive: float = 1.0, label: str | None = "training step",
                  last: float | None = None) -> None:
    """Symmetric-log x axis: linear below ``first_positive`` (so step 0 shows), log above.

    ``label`` is the x label (``None``: none, e.g. for the upper panels of a shared axis);
    ``last`` (e.g. the final training step) fixes the right end of the axis.
    """
    ax.set_xscale("symlog", linthresh=first_positive, linscale=0.3)
    ax.set_xlim(left=0, right=last)
    if label:
        ax.set_xlabel(label)


def shade_stages(ax: Axes, stages: pd.DataFrame, *, prefix: str = "LR", alpha: float = 0.12,
                 label: bool = True, milestones: bool = True) -> None:
    """Shade each stage (rows with ``start``, ``end``, ``type``) of ``stages`` on ``ax``.

    Type-A stages (LLC rising) and type-B (falling) get the two ``STAGE_COLOURS``; milestones are
    dashed lines; with ``label`` the stage names are written just inside the top of the axis
    (so they never collide with a title). Call it after setting the x scale.
    """
    missing = {"start", "end", "type"} - set(stages.columns)
    if missing:
        raise ValueError(f"stages lacks columns {sorted(missing)}; expected find_stages output")
    names = stage_names(stages, prefix)
    for name, row in zip(names, stages.itertuples()):
        colour = STAGE_COLOURS.get(row.type)
        if colour is None:
            raise ValueError(f"stage type must be 'A' or 'B', got {row.type!r}")
        ax.axvspan(row.start, row.end, color=colour, alpha=alpha, lw=0)
        if milestones and row.start > stages["start"].iloc[0]:
            ax.axvline(row.start, color="0.3", ls="--", lw=0.8)
        if label:
            mid = np.sqrt(max(row.start, 1.0) * max(row.end, 1.0)) \
                if ax.get_xscale() in ("log", "symlog") else (row.start + row.end) / 2
            ax.text(mid, 0.985, f"{name} ({row.type})", transform=ax.get_xaxis_transform(),
                    ha="center", va="top", fontsize=7, color="0.2",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7})


def plot_llc_traces(ax: Axes, traces: np.ndarray, *, title: str | None = None,
                    colour: str | None = None) -> None:
    """Per-chain online LLC traces ``(C, T)`` (thin lines) and their mean (thick) on ``ax``."""
    traces = np.asarray(traces)
    if traces.ndim != 2:
        raise ValueError(f"traces must have shape (chains, draws), got {traces.shape}")
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xlabel("SGLD draw")
    ax.set_ylabel(r"online $\hat\lambda$")
    if not np.isfinite(traces).any():
        ax.text(0.5, 0.5, "all chains diverged", transform=ax.transAxes, ha="center",
                va="center", color="C3")
        ax.set_yticks([])
        return
    draws = np.arange(1, traces.shape[1] + 1)
    lines = ax.plot(draws, traces.T, lw=0.7, alpha=0.6, color=colour)
    finite = np.isfinite(traces).all(axis=1)
    if finite.any():
        ax.plot(draws, traces[finite].mean(axis=0), lw=2, color=colour or lines[0].get_color())


def mark_steps(ax: Axes, steps: Sequence[float], **kwargs: object) -> None:
    """Thin vertical lines at ``steps`` (e.g. the paper's milestones, rescaled)."""
    style = {"color": "k", "ls": ":", "lw": 0.8} | dict(kwargs)
    for s in steps:
        ax.axvline(s, **style)
