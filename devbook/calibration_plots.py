"""Figures of the calibration chapter (book/theory/calibration.md, paper App. E.3): the grid as
verdict heatmaps (Figure 40), λ̂ against the inverse temperature (E.3.1) and the LLC curve with
the same and with fresh seeds (E.3.2). Nothing here touches global rcParams."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook.calibration import VERDICTS

#: Colour of each cell verdict.
VERDICT_COLOURS = {"ok": "#4daf4a", "not_converged": "#ffcc33", "escaped": "#984ea3", "diverged": "#e41a1c"}


def _cell_key(e: float, b: float, g: float) -> tuple[float, float, float]:
    return (round(float(e), 12), round(float(b), 9), round(float(g), 9))


def grid_heatmaps(table: pd.DataFrame, marks: Mapping[str, Mapping[str, float]] | None = None) -> Figure:
    """One panel per probed checkpoint: ε across, (γ, nβ) down, each cell coloured by its verdict
    and labelled with λ̂; ``marks`` (``{label: {"epsilon", "nbeta", "gamma"}}``) outlines cells
    (first label solid black, second dashed blue)."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch, Rectangle

    steps = sorted(table["step"].unique())
    eps = sorted(table["epsilon"].unique())
    rows = sorted({(g, b) for g, b in zip(table["gamma"], table["nbeta"])})
    fig, axes = plt.subplots(
        1, len(steps), figsize=(1.2 + 1.35 * len(eps) * len(steps), 1.1 + 0.55 * len(rows)), squeeze=False
    )
    styles = [dict(edgecolor="black", linestyle="-"), dict(edgecolor="C0", linestyle="--")]
    for ax, step in zip(axes[0], steps):
        t = table[table["step"] == step]
        for _, r in t.iterrows():
            x, y = eps.index(r["epsilon"]), rows.index((r["gamma"], r["nbeta"]))
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, color=VERDICT_COLOURS[r["verdict"]], alpha=0.85))
            label = "—" if not np.isfinite(r["llc"]) else f"{r['llc']:.3g}"
            ax.text(x, y, label, ha="center", va="center", fontsize=8)
        for cell, style in zip((marks or {}).values(), styles):
            key = _cell_key(cell["epsilon"], cell["nbeta"], cell["gamma"])
            for x, e in enumerate(eps):
                for y, (g, b) in enumerate(rows):
                    if _cell_key(e, b, g) == key:
                        ax.add_patch(Rectangle((x - 0.46, y - 0.46), 0.92, 0.92, fill=False, lw=2.2, **style))
        ax.set_xlim(-0.5, len(eps) - 0.5)
        ax.set_ylim(-0.5, len(rows) - 0.5)
        ax.set_xticks(range(len(eps)), [f"{e:g}" for e in eps], fontsize=8)
        ax.set_yticks(range(len(rows)), [f"γ={g:g}, nβ={b:.3g}" for g, b in rows], fontsize=8)
        ax.set_xlabel("step size ε")
        ax.set_title(f"checkpoint {step:,}", fontsize=10)
    handles = [Patch(color=VERDICT_COLOURS[v], label=v) for v in VERDICTS]
    handles += [Patch(fill=False, lw=2, label=name, **style) for name, style in zip(marks or {}, styles)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def temperature_figure(table: pd.DataFrame, references: Mapping[str, float]) -> Figure:
    """λ̂ (left) and λ̂/nβ (right) against nβ, markers coloured by verdict (a red dotted line where
    every chain diverged); dashed vertical lines at the ``references`` (``{label: nβ}``, e.g.
    m/log m and n/log n)."""
    import matplotlib.pyplot as plt

    t = table.sort_values("nbeta")
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for ax, col, label in zip(axes, ("llc", "llc_over_nbeta"), ("λ̂", "λ̂ / nβ")):
        ax.plot(t["nbeta"], t[col], color="0.5", lw=1)
        for v in VERDICTS:
            sel = t[t["verdict"] == v]
            ax.scatter(sel["nbeta"], sel[col], color=VERDICT_COLOURS[v], label=v, zorder=3, s=30)
        for x in t.loc[~np.isfinite(t[col]), "nbeta"]:  # diverged: no estimate to plot
            ax.axvline(x, color=VERDICT_COLOURS["diverged"], ls=":", lw=1.5)
        for i, (name, x) in enumerate(references.items()):
            ax.axvline(x, color=f"C{i}", ls="--", lw=1, label=name)
        ax.set_xscale("log")
        if col == "llc_over_nbeta":
            ax.set_yscale("log")
        ax.set_xlabel("inverse temperature nβ")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def seed_figure(comparison: pd.DataFrame, roughness: Mapping[str, float]) -> Figure:
    """The LLC curve with the same seed at every checkpoint and with a fresh seed at each, each
    labelled with its roughness."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    steps: Sequence[int] = comparison["step"].to_numpy()
    for col, colour, name in (("same_seed", "C0", "same seed"), ("fresh_seed", "C3", "fresh seed")):
        ax.plot(steps, comparison[col], "o-", color=colour, label=f"{name} (roughness {roughness[col]:.3f})")
    ax.set_ylabel("λ̂")
    ax.set_xlabel("training step")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
