"""Figures of the language forms chapter (``book/language/forms.md``).

The trajectory figures are those of the regression forms chapter
(:mod:`devbook.regression.form_plots`), with the language stages' names:

- :func:`planes_figure`: the trajectory in every plane of the first PCs, coloured by LLC
  stage, with its evolute, osculating circles, vertices, cusps and forms;
- :func:`scores_figure`: each PC score over training, stages shaded, forms dotted;
- :func:`potentials_figure`: the form potentials with their influence ranges;
- :func:`contents_figure`: the shares of new words and induction patterns among each form's
  most extreme tokens-in-context, against the base rate (paper App. C.1.3, Figures 15–16).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook.ed import FormSearch
from devbook.regression import form_plots as rfp


def planes_figure(search: FormSearch, stages: pd.DataFrame, highlight: Sequence[int] = ()) -> Figure:
    """:func:`devbook.regression.form_plots.planes_figure` with stages named LM1, LM2, …"""
    return rfp.planes_figure(search, stages, highlight=highlight, prefix="LM")


def scores_figure(search: FormSearch, stages: pd.DataFrame) -> Figure:
    """:func:`devbook.regression.form_plots.scores_figure` with stages named LM1, LM2, …"""
    return rfp.scores_figure(search, stages, prefix="LM")


def potentials_figure(search: FormSearch, stages: pd.DataFrame, which: Sequence[int]) -> Figure:
    """:func:`devbook.regression.form_plots.potentials_figure`: the potentials of the forms ``which``."""
    return rfp.potentials_figure(search, stages, which)


def contents_figure(
    contents: pd.DataFrame, kinds: Sequence[str] = ("new words", "induction patterns")
) -> Figure:
    """One panel per kind: for each form, its share among the most positive (dark) and most
    negative (light) normalised logits, the base rate over all pairs as a dashed line.

    ``contents`` is :func:`devbook.language.forms.form_contents`.
    """
    base = contents[contents["side"] == "base rate"].iloc[0]
    forms = contents[contents["side"] != "base rate"]
    labels = sorted(forms["form"].unique())
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.2), squeeze=False)
    x = np.arange(len(labels))
    for ax, kind in zip(axes[0], kinds):
        for off, side, colour in ((-0.2, "positive", "#4C72B0"), (0.2, "negative", "#A6C0E0")):
            part = forms[forms["side"] == side].set_index("form").reindex(labels)
            ax.bar(x + off, part[kind].to_numpy(float), width=0.4, color=colour, label=f"most {side}")
        ax.axhline(float(base[kind]), color="black", ls="--", lw=1, label="all pairs")
        ax.set_xticks(x, [f"form {f}" for f in labels])
        ax.set_ylim(0, 1)
        ax.set_title(kind, fontsize=10)
        ax.set_ylabel("share")
    axes[0, 0].legend(frameon=False, fontsize=8)
    if not labels:
        for ax in axes[0]:
            ax.text(0.5, 0.5, "no form found", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig
