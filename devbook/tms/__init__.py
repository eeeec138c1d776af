"""The toy model of superposition (seed ``003``): model, data, vectorised training, k-gons,
posterior sampling, and the presets of ``book/tms/growth-and-form.md``.

``PRESETS`` maps each scale to the chapter's defaults; ``config(preset, **overrides)`` resolves
and checks them with :func:`devbook.presets.resolve`.
"""

from __future__ import annotations

from typing import Any

from devbook import presets

_CPU: dict[str, Any] = {
    "seed": 0,
    "num_seeds": 96,  # training runs (initialisations), trained together
    "n": 1000,  # training-set size per run
    "steps": 20000,
    "batch_size": 20,
    "lr": 0.01,
    "momentum": 0.9,
    "init_scale": 0.3,
    "num_checkpoints": 120,
    "grad_tol": 0.1,  # a plateau must sit near a critical point: ||∇L(w)|| below this
    "llc_epsilon": 2e-4,
    "llc_gamma": 10.0,
    "llc_nbeta": 1000.0,
    "llc_chains": 4,
    "llc_draws": 1000,
    "llc_burnin": 300,
    "llc_batch_size": 100,
    "llc_per_label": 8,  # plateaus per k-gon label measured besides those of runs with transitions
    "curve_points": 20,  # checkpoints of the featured run whose LLC is estimated
    # replica-exchange ladder of sample sizes (nested data sets); low rungs only help mixing
    "posterior_ns": "10,20,35,50,75,100,150,200,300,400,500,600,700,800,1000,1200",
    "posterior_chains": 16,  # independent replica sets, each one state per rung
    "posterior_steps": 10000,
    "posterior_draws": 25,
    "posterior_swap_every": 10,
}

PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        **_CPU,
        "num_seeds": 16,
        "steps": 5000,
        "num_checkpoints": 60,
        "llc_chains": 2,
        "llc_draws": 60,
        "llc_burnin": 20,
        "llc_epsilon": 1e-3,
        "llc_per_label": 2,
        "curve_points": 6,
        "posterior_ns": "10,50,200,600",
        "posterior_chains": 4,
        "posterior_steps": 200,
        "posterior_draws": 4,
    },
    "cpu": _CPU,
    "paper": {
        **_CPU,
        "num_seeds": 1000,
        "steps": 100000,
        "num_checkpoints": 200,
        "llc_chains": 8,
        "llc_draws": 2000,
        "llc_burnin": 500,
        "llc_per_label": 200,
        "curve_points": 60,
        "posterior_ns": "10,20,35,50,75,100,150,200,250,300,350,400,450,500,550,600,650,700,800,900,1000,1100,1200",
        "posterior_chains": 256,
        "posterior_steps": 100000,
        "posterior_draws": 50,
    },
}


def config(preset: str, **overrides: Any) -> dict[str, Any]:
    """The chapter's configuration at ``preset`` with ``overrides`` (checked; see presets)."""
    cfg = presets.resolve(PRESETS, preset, overrides)
    ns = [int(v) for v in str(cfg["posterior_ns"]).split(",") if v.strip()]
    if len(ns) < 2 or min(ns) < 2 or any(b <= a for a, b in zip(ns, ns[1:])):
        raise ValueError(
            f"posterior_ns must be >= 2 comma-separated increasing ints >= 2, got {cfg['posterior_ns']!r}"
        )
    if cfg["num_seeds"] < 1:
        raise ValueError(f"num_seeds must be >= 1, got {cfg['num_seeds']}")
    return cfg
