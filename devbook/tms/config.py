"""Presets of the toy model of superposition (TMS) and their validation.

The tables follow the naming of the other settings (:mod:`devbook.setting`):

- :data:`RUN_PRESETS`: the training run, one flat dict of JSON scalars per preset whose hash is
  the run's key in :mod:`devbook.store` (everything that changes the trained weights, and
  nothing else). One run trains ``num_seeds`` initialisations together (seeds
  ``seed * 100_000 + s``), each on its own training set of ``n`` samples.
- :data:`SGLD_PRESETS`: rows of :class:`devbook.setting.SGLDPreset` for the plateau LLCs.
- :data:`EVAL_PRESETS`: everything else the chapter computes (plateau selection, the LLC curve
  of the featured run, the replica-exchange posterior).

``smoke`` exercises the code in seconds; ``cpu`` is the book's default (96 seeds, 20k steps);
``paper`` is the size of the "growth and form" study (1,000 seeds, 100k steps).
"""

from __future__ import annotations

from typing import Any

from devbook import presets

SETTING = "tms"
OPTIMISERS = ("sgd", "adam")

_CPU: dict[str, Any] = {
    "setting": SETTING,
    "version": 1,  # bump when code changes would change the trained weights
    "seed": 0,
    "num_seeds": 96,  # initialisations, trained together
    "r": 2,  # hidden dimensions
    "c": 6,  # features
    "n": 1000,  # training-set size per seed
    "batch_size": 20,
    "num_steps": 20_000,
    "optimiser": "sgd",
    "lr": 0.01,
    "momentum": 0.9,  # SGD only
    "init_scale": 0.3,  # W entries ~ N(0, init_scale²) ...
    "bias_init_scale": 0.0,  # ... and b entries ~ N(0, bias_init_scale²)
    "num_checkpoints": 120,  # log-spaced in [1, num_steps], plus step 0
    "log_every": 100,
}

#: Training configs per preset.
RUN_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {**_CPU, "num_seeds": 16, "num_steps": 5000, "num_checkpoints": 60, "log_every": 50},
    "cpu": dict(_CPU),
    "paper": {**_CPU, "num_seeds": 1000, "num_steps": 100_000, "num_checkpoints": 200, "log_every": 500},
}

# nβ = 1000 is n, the size of each run's training set (the posterior at sample size n, as in
# the seed), not the default m / log m of the SGLD batch: it is written out, never None.
_SGLD_CPU: dict[str, Any] = {
    "epsilon": 2e-4,
    "gamma": 10.0,
    "nbeta": 1000.0,
    "num_chains": 4,
    "num_draws": 1000,
    "num_burnin": 300,
    "batch_size": 100,
    "num_samples": 1000,
    "every": 1,
    "seed": 0,
}

#: SGLD settings per preset (rows of :class:`devbook.setting.SGLDPreset`).
SGLD_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {**_SGLD_CPU, "epsilon": 1e-3, "num_chains": 2, "num_draws": 60, "num_burnin": 20},
    "cpu": dict(_SGLD_CPU),
    "paper": {**_SGLD_CPU, "num_chains": 8, "num_draws": 2000, "num_burnin": 500},
}

_EVAL_CPU: dict[str, Any] = {
    "grad_tol": 0.1,  # a plateau must sit near a critical point: ||∇L(w)|| below this
    "llc_per_label": 8,  # plateaus per k-gon measured besides those of runs with transitions
    "curve_points": 20,  # checkpoints of the featured run whose LLC is estimated
    # replica-exchange ladder of sample sizes (nested data sets); low rungs only help mixing
    "posterior_ns": [10, 20, 35, 50, 75, 100, 150, 200, 300, 400, 500, 600, 700, 800, 1000, 1200],
    "posterior_chains": 16,  # independent replica sets, each one state per rung
    "posterior_steps": 10_000,
    "posterior_draws": 25,
    "posterior_swap_every": 10,
}

#: Evaluation sizes per preset.
EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        **_EVAL_CPU,
        "llc_per_label": 2,
        "curve_points": 6,
        "posterior_ns": [10, 50, 200, 600],
        "posterior_chains": 4,
        "posterior_steps": 200,
        "posterior_draws": 4,
    },
    "cpu": dict(_EVAL_CPU),
    "paper": {
        **_EVAL_CPU,
        "llc_per_label": 200,
        "curve_points": 60,
        "posterior_ns": [10, 20, 35, 50, 75, 100, 150, 200, *range(250, 750, 50), *range(800, 1300, 100)],
        "posterior_chains": 256,
        "posterior_steps": 100_000,
        "posterior_draws": 50,
    },
}


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check a full TMS run config; return it, or raise ``ValueError`` saying what is wrong.

    Parameters
    ----------
    config : dict
        A run config with exactly the keys of :data:`RUN_PRESETS`.

    Returns
    -------
    dict
        ``config`` itself.
    """
    presets.check_config(
        config,
        SETTING,
        _CPU,
        ("num_seeds", "r", "c", "n", "batch_size", "num_steps", "num_checkpoints", "log_every"),
    )
    for name in ("version", "seed", "momentum", "init_scale", "bias_init_scale"):
        if config[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {config[name]}")
    if config["optimiser"] not in OPTIMISERS:
        raise ValueError(f"optimiser {config['optimiser']!r} unknown; valid: {OPTIMISERS}")
    if config["lr"] <= 0:
        raise ValueError(f"lr must be > 0, got {config['lr']}")
    if config["r"] > config["c"]:
        raise ValueError(f"need r <= c, got r={config['r']}, c={config['c']}")
    return config


def validate_eval(evals: dict[str, Any]) -> dict[str, Any]:
    """Check an evaluation config of :data:`EVAL_PRESETS` (the ladder and ``grad_tol``).

    Parameters
    ----------
    evals : dict
        A row of :data:`EVAL_PRESETS` with overrides applied.

    Returns
    -------
    dict
        ``evals``, with ``posterior_ns`` as a list of ints.
    """
    ns = evals["posterior_ns"]
    if (
        len(ns) < 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in ns)
        or min(ns) < 2
        or any(b <= a for a, b in zip(ns, ns[1:]))
    ):
        raise ValueError(f"posterior_ns must be >= 2 increasing ints >= 2, got {ns!r}")
    if evals["grad_tol"] <= 0:
        raise ValueError(f"grad_tol must be > 0, got {evals['grad_tol']}")
    if evals["posterior_draws"] > evals["posterior_steps"] // 2:
        raise ValueError(
            f"posterior_draws ({evals['posterior_draws']}) must be at most half of "
            f"posterior_steps ({evals['posterior_steps']})"
        )
    return {**evals, "posterior_ns": list(ns)}
