"""Small shared plotting helpers (matplotlib). Nothing here touches global rcParams.

- :func:`shade_stages` shades the stages of a :func:`devbook.stages.find_stages` table on an
  axis (type A and B in two colours, stage names on top);
- :func:`log_time_axis` puts training steps on a log axis that keeps step 0 visible;
- :func:`stage_names` names the stages ``{prefix}1``, ``{prefix}2``, …;
- :func:`stage_figure`: loss + λ̂ + GP slope with the stages shaded (both stage chapters).

Used by the regression and language stage chapters.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from devbook.stages import Stages

STAGE_COLOURS = {"A": "#4C72B0", "B": "#DD8452"}


def stage_names(stages: pd.DataFrame, prefix: str = "LR") -> list[str]:
    """``[f"{prefix}1", f"{prefix}2", …]``, one per row of ``stages``."""
    return [f"{prefix}{i + 1}" for i in range(len(stages))]


def log_time_axis(
    ax: Axes, first_positive: float = 1.0, label: str | None = "training step", last: float | None = None
) -> None:
    """Symmetric-log x axis: linear below ``first_positive`` (so step 0 shows), log above.

    ``label`` is the x label (``None``: none, e.g. for the upper panels of a shared axis);
    ``last`` (e.g. the final training step) fixes the right end of the axis.
    """
    ax.set_xscale("symlog", linthresh=first_positive, linscale=0.3)
    ax.set_xlim(left=0, right=last)
    if label:
        ax.set_xlabel(label)


def shade_stages(
    ax: Axes,
    stages: pd.DataFrame,
    *,
    prefix: str = "LR",
    alpha: float = 0.12,
    label: bool = True,
    milestones: bool = True,
) -> None:
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
            mid = (
                np.sqrt(max(row.start, 1.0) * max(row.end, 1.0))
                if ax.get_xscale() in ("log", "symlog")
                else (row.start + row.end) / 2
            )
            ax.text(
                mid,
                0.985,
                f"{name} ({row.type})",
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="top",
                fontsize=7,
                color="0.2",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.7},
            )


def mark_steps(ax: Axes, steps: Sequence[float], **kwargs: object) -> None:
    """Thin vertical lines at ``steps`` (e.g. the paper's milestones, rescaled)."""
    style = {"color": "k", "ls": ":", "lw": 0.8} | dict(kwargs)
    for s in steps:
        ax.axvline(s, **style)


def stage_figure(
    steps: np.ndarray,
    loss: np.ndarray,
    llc: np.ndarray,
    llc_std: np.ndarray,
    stages: Stages,
    *,
    prefix: str = "LR",
    loss_label: str = "test loss",
    log_loss: bool = True,
    slope: bool = True,
    train_log: pd.DataFrame | None = None,
    left_out: float | None = None,
) -> Figure:
    """Loss, λ̂ with its GP fit, and (optionally) the GP's slope, over log-time, stages shaded.

    Parameters
    ----------
    steps, loss, llc, llc_std : numpy.ndarray
        ``(n,)`` checkpoints, the loss there, λ̂ and its spread over chains.
    stages : devbook.stages.Stages
        The output of :func:`devbook.stages.find_stages` on ``(steps, llc)``.
    prefix : str
        Stage-name prefix (``"LR"``, ``"LM"``).
    loss_label : str
        Label of the loss curve.
    log_loss : bool
        Log-scale the loss axis.
    slope : bool
        Add the panel of ``dλ̂ / d log t`` with the tolerance band.
    train_log : pandas.DataFrame, optional
        A training log (``step``, ``loss``) drawn behind the loss.
    left_out : float, optional
        The first step the stage finder used (:func:`devbook.minimum.settling`): the checkpoints
        before it are shaded grey, away from a local minimum (paper App. A.6).

    Returns
    -------
    matplotlib.figure.Figure
        The figure (2 or 3 panels sharing the time axis).
    """
    import matplotlib.pyplot as plt

    fit, n = stages.fit, 3 if slope else 2
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.5 * n), sharex=True)
    _loss_panel(axes[0], steps, loss, loss_label, log_loss, train_log)
    _llc_panel(axes[1], steps, llc, llc_std, fit)
    if slope:
        _slope_panel(axes[2], fit)
    for i, ax in enumerate(axes):
        log_time_axis(ax, label="training step" if i == n - 1 else None, last=steps[-1])
        shade_stages(ax, stages.table, prefix=prefix, label=i == 0)
    if left_out is not None and left_out > steps[0]:
        _shade_left_out(axes, steps[0], left_out)
    fig.tight_layout()
    return fig


def _loss_panel(ax: Axes, steps, loss, label: str, log: bool, train_log: pd.DataFrame | None) -> None:
    ax.plot(steps, loss, "k.-", ms=3, lw=0.8, label=label)
    if train_log is not None:
        ax.plot(train_log["step"], train_log["loss"], lw=0.8, alpha=0.6, label="training loss")
        ax.legend(fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(label)


def _llc_panel(ax: Axes, steps, llc, llc_std, fit) -> None:
    ax.errorbar(
        steps, llc, yerr=llc_std, fmt=".", ms=3, lw=0.6, color="k", label=r"$\hat\lambda$ (± std over chains)"
    )
    ax.plot(fit.grid_steps, fit.mean, "C3", lw=1.2, label="GP mean")
    ax.fill_between(fit.grid_steps, fit.mean - fit.std, fit.mean + fit.std, color="C3", alpha=0.15, lw=0)
    ax.set_ylabel(r"LLC $\hat\lambda$")
    ax.legend(fontsize=8, loc="lower right")


def _slope_panel(ax: Axes, fit) -> None:
    ax.plot(fit.grid_steps, fit.slope, "C3")
    ax.axhspan(-fit.tolerance, fit.tolerance, color="0.5", alpha=0.2, lw=0, label="tolerance")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_ylabel(r"$d\hat\lambda / d\log t$")
    ax.legend(fontsize=8)


def _shade_left_out(axes, first: float, left_out: float) -> None:
    """Grey over the leading checkpoints left out of stage discovery (paper App. A.6)."""
    for ax in axes:
        ax.axvspan(first, left_out, color="0.85", lw=0, zorder=0)
    axes[0].text(
        first,
        1.0,
        "away from a minimum",
        transform=axes[0].get_xaxis_transform(),
        fontsize=7,
        va="bottom",
        color="0.4",
    )
