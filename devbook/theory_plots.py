"""Figures of the theory chapter (book/theory/llc.md); the computations are in :mod:`devbook.theory`.

Every function returns a new figure and never changes matplotlib's global rcParams.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook import known, llc
from devbook.theory import Phase, SweepPoint, free_energy, potential_on

DIAG_COLOR = {
    "ok": "tab:green",
    "diverged": "tab:red",
    "not_converged": "tab:orange",
    "escaped": "tab:purple",
}


def _trace_panel(ax: Any, name: str, r: llc.LLCResult, true_lambda: float) -> None:
    """One panel of :func:`plot_failure_traces`."""
    steps = r.config.num_burnin + np.arange(1, r.config.num_draws + 1)
    for c in range(r.config.num_chains):
        ax.plot(steps, r.llc_trace_per_chain[c], lw=0.8, alpha=0.8, color=DIAG_COLOR[r.diagnosis[c]])
    ax.plot(steps, r.llc_trace, color="k", lw=2, label="mean over kept chains")
    ax.axhline(true_lambda, color="0.3", ls="--", lw=1, label=r"exact $\lambda$ at 0")
    kept = r.llc_trace_per_chain[r.kept]
    lo, hi = np.nanmin(kept), np.nanmax(kept)
    pad = 0.15 * (hi - lo + 1e-9)
    ax.set_ylim(min(lo - pad, -0.1), max(hi + pad, 1.2 * true_lambda))
    counts = ", ".join(f"{r.diagnosis.count(d)} {d}" for d in llc.DIAGNOSES if d in r.diagnosis)
    ax.set_title(f"{name}\n{counts}", fontsize=9)
    ax.set_xlabel("SGLD step")
    ax.set_ylabel(r"online $\hat\lambda_t$")


def _free_energy_panel(ax: Any, kind: str, p: Mapping[str, Phase], nc: float) -> None:
    """One panel of :func:`plot_free_energy`."""
    n = np.geomspace(2, nc * 3, 400)
    La = p["alpha"][0]
    for name, color in (("alpha", "C0"), ("beta", "C3")):
        L, lam, c = p[name]
        ax.plot(
            n,
            free_energy(n, L, lam, c) - n * La,
            color=color,
            label=f"$\\{name}$: L={L:g}, $\\lambda$={lam:g}" + (f", c={c:g}" if c else ""),
        )
    ax.axvline(nc, color="0.4", ls="--", lw=1)
    ax.annotate(
        f"$n_{{crit}}$ = {nc:.0f}",
        (nc, ax.get_ylim()[0]),
        xytext=(-5, 8),
        ha="right",
        textcoords="offset points",
        fontsize=9,
    )
    ax.axvspan(n[0], nc, color="C0", alpha=0.06)
    ax.axvspan(nc, n[-1], color="C3", alpha=0.06)
    ax.set_xscale("log")
    ax.set_xlabel("number of samples $n$")
    ax.set_ylabel(r"$F_n - n\,L_\alpha$")
    ax.set_title(f"{kind}: posterior moves from $\\alpha$ to $\\beta$")
    ax.legend(fontsize=8, loc="upper left")


def plot_landscapes(potentials: Mapping[str, known.KnownCase], eps_shade: float, grid: int = 401) -> Figure:
    """Level sets of eight potentials on [-1, 1]^2 (2 x 4 panels), {K < eps_shade} shaded."""
    fig, axes = plt.subplots(2, 4, figsize=(12, 6.2), sharex=True, sharey=True)
    g = np.linspace(-1, 1, grid)
    A, B = np.meshgrid(g, g)
    for ax, (name, case) in zip(axes.flat, potentials.items()):
        Z = potential_on(case, A, B)
        ax.contourf(A, B, Z, levels=[0, eps_shade], colors=["tab:orange"], alpha=0.6)
        ax.contour(A, B, Z, levels=np.geomspace(1e-3, 1, 7), colors="0.3", linewidths=0.7)
        ax.set_title(f"{name}\n$\\lambda = {case.true_lambda:g}$", fontsize=10)
        ax.set_aspect("equal")
    for ax in axes[1]:
        ax.set_xlabel("$w_1$")
    for ax in axes[:, 0]:
        ax.set_ylabel("$w_2$")
    fig.tight_layout()
    return fig


def plot_volume_scaling(
    eps: np.ndarray, volumes: Mapping[str, np.ndarray], potentials: Mapping[str, known.KnownCase]
) -> Figure:
    """Sublevel areas against eps (log-log dots), with lines of slope exact λ through the last."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, v) in enumerate(volumes.items()):
        (line,) = ax.loglog(eps, v, "o", ms=3, color=f"C{i}")
        lam = potentials[name].true_lambda
        ref = v[-1] * (eps / eps[-1]) ** lam
        ax.loglog(eps, ref, "-", lw=0.8, color=line.get_color(), label=f"{name}: exact $\\lambda$={lam:g}")
    ax.set_xlabel(r"$\epsilon$")
    ax.set_ylabel(r"area of $\{K < \epsilon\}$")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_known_cases(table: pd.DataFrame) -> Figure:
    """Estimate against truth (left) and error per case (right) of a :func:`devbook.theory.known_case_table`."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.3), gridspec_kw={"width_ratios": [1, 1.4]})
    top = 1.1 * max(table["true λ"].max(), np.nanmax(table["λ̂"] + table["std"].fillna(0)))
    ax.plot([0, top], [0, top], color="0.6", lw=1, ls="--", label="estimate = truth")
    for i, row in table.iterrows():
        ax.errorbar(row["true λ"], row["λ̂"], yerr=row["std"], fmt="o", ms=5, capsize=3, color=f"C{i % 10}")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(r"true $\lambda$")
    ax.set_ylabel(r"SGLD estimate $\hat\lambda$ (± std over chains)")
    ax.legend(loc="upper left", fontsize=8)
    ax2.axhline(0, color="0.6", lw=1, ls="--")
    for i, row in table.iterrows():
        ax2.errorbar(
            i, row["λ̂"] - row["true λ"], yerr=row["std"], fmt="o", ms=5, capsize=3, color=f"C{i % 10}"
        )
    ax2.set_xticks(range(len(table)))
    ax2.set_xticklabels(
        table["case"].str.replace("reduced-rank regression ", "RRR "), rotation=35, ha="right", fontsize=7
    )
    ax2.set_ylabel(r"$\hat\lambda - \lambda$")
    fig.tight_layout()
    return fig


def plot_failure_traces(scenarios: Mapping[str, llc.LLCResult], true_lambda: float) -> Figure:
    """Online traces per chain (coloured by diagnosis) and their mean, one panel per scenario
    (2 x 2), the y range set by the kept chains."""
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=False)
    for ax, (name, r) in zip(axes.flat, scenarios.items()):
        _trace_panel(ax, name, r, true_lambda)
    handles = [plt.Line2D([], [], color=c, label=d) for d, c in DIAG_COLOR.items()]
    axes[0, 0].legend(
        handles=handles + axes[0, 0].get_legend_handles_labels()[0], fontsize=7, loc="lower right"
    )
    fig.tight_layout()
    return fig


def plot_eps_sweep(sweep: Sequence[SweepPoint], true_lambda: float, title: str) -> Figure:
    """Estimate against step size: green, no chain diverged; red, some did; dotted line, all did."""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    for s in sweep:
        r = s.result
        if r is not None:
            ax.errorbar(
                s.epsilon,
                r.mean,
                yerr=r.std,
                fmt="o",
                capsize=3,
                color="tab:red" if s.diverged else "tab:green",
            )
        else:
            ax.axvline(s.epsilon, color="tab:red", lw=0.8, ls=":")
    ax.axhline(true_lambda, color="0.3", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"step size $\varepsilon$")
    ax.set_ylabel(r"$\hat\lambda$ (kept chains)")
    ax.set_title(title, fontsize=9)
    ax.legend([plt.Line2D([], [], color="0.3", ls="--")], [r"exact $\lambda$"], fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_free_energy(phases: Mapping[str, Mapping[str, Phase]], n_crit: Mapping[str, float]) -> Figure:
    """F_n − n L_alpha of both phases of each transition against n (one panel each)."""
    fig, axes = plt.subplots(1, len(phases), figsize=(11, 4))
    for ax, (kind, p) in zip(np.atleast_1d(axes), phases.items()):
        _free_energy_panel(ax, kind, p, n_crit[kind])
    fig.tight_layout()
    return fig
