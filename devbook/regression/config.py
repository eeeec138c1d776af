"""Presets of the linear-regression setting (paper §2.2, App. E.2) and config validation.

A run config is a flat dict of JSON scalars; its hash is the run's key in :mod:`devbook.store`,
so everything that changes the trained weights is in it (and nothing else is).

- ``paper``: D = 4, K = 8, σ² = 0.125, infinite tasks, 2 blocks × 4 heads, d = 64, Adam +
  OneCycleLR (max lr 3e-3), batch 256, 500k steps, 100 log- + 100 linear-spaced checkpoints,
  seed 1 (the paper's main run; 0–4 are the paper's seeds).
- ``cpu``: the same model and data, a compressed schedule (OneCycleLR over the shorter run) that
  fits the regression chapter's ~25-minute budget on 2 cores (see ``CPU_PRESET_NOTE``).
- ``smoke``: a few hundred steps, for tests and the smoke build (seconds).

SGLD presets (:data:`SGLD_PRESETS`, rows of :class:`devbook.setting.SGLDPreset`):

- ``paper``: the authors' hyperparameters for K = 8: ε = 3e-4, γ = 6.67, nβ = 66.7, 10 chains ×
  5,000 steps of which 1,000 burn-in, SGLD batch 1,024 from n = 32,768 samples, every checkpoint.
- ``cpu``: SGLD batch 64, 4 chains × 200 steps on every other LLC checkpoint (see
  :data:`CPU_SGLD_NOTE`).

At every preset ε, nβ, γ are starting values: the chapters sample with the recommendation of
the calibration grid on their run (:meth:`devbook.setting.Setting.calibrated_sgld`).
- ``smoke``: a handful of draws, to exercise the code path.

Used by the regression stages chapter through :data:`devbook.regression.setting.SETTING`.
"""

from __future__ import annotations

from typing import Any

from devbook import presets

#: Name of the setting (the ``"setting"`` entry of every run config).
NAME = "regression"

_PAPER: dict[str, Any] = {
    "setting": NAME,
    "version": 1,  # bump when code changes would change the trained weights
    "seed": 1,
    # data (paper §2.2)
    "task_dim": 4,  # D
    "num_examples": 8,  # K pairs -> 2K tokens
    "noise_var": 0.125,  # σ²
    "num_tasks": 0,  # 0 = infinite (fresh Gaussian task per sequence); M > 0 = discrete set
    # model
    "d_model": 64,
    "n_layers": 2,
    "n_heads": 4,
    "d_mlp": 64,
    # training
    "batch_size": 256,
    "max_lr": 0.003,
    "num_steps": 500_000,
    "n_log_checkpoints": 100,
    "n_linear_checkpoints": 100,
    "n_ed_checkpoints": 5000,  # linear-spaced, for essential dynamics (E.2.5)
    "log_every": 500,
}

#: Training configs per preset (each a full run config).
RUN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_PAPER),
    "cpu": {
        **_PAPER,
        "num_steps": 20_000,
        "n_log_checkpoints": 50,
        "n_linear_checkpoints": 50,
        "n_ed_checkpoints": 2_000,  # every 10 steps: ~35 checkpoints inside LR1 (ends near step 350)
        "log_every": 100,
    },
    "smoke": {
        **_PAPER,
        "num_steps": 150,
        "batch_size": 64,
        "n_log_checkpoints": 12,
        "n_linear_checkpoints": 8,
        "n_ed_checkpoints": 30,
        "log_every": 10,
    },
}

#: What the ``cpu`` preset changes and why (shown in the chapter).
CPU_PRESET_NOTE = (
    "cpu preset: 20k steps at batch 256 (the paper's 500k compressed 25x; OneCycleLR spans the "
    "shorter run, so the learning rate peaks at 10k). Measured on one core of the (shared) "
    "2-core machine: 45-50 ms of CPU time per step, so about 15 minutes of training; with an "
    "LLC sweep of ~10 minutes this is at the chapter's 25-minute limit. It is long enough for "
    "layer-norm collapse (the mark of LR3) to begin: in this run the final layer norm's first "
    "weights reach |w| < 0.1 at ~10k steps (12.5% of them by 20k), none before, so a much "
    "shorter run would likely miss it (not tested). The integrated learning rate of the run (0.0015 x 20k = 30) equals the "
    "paper's at about step 70k, inside its LR3 (40k-126k): expect LR1 (task prior), LR2 (ICL "
    "emerges; embedding loses a direction) and the start of LR3, and no LR4/LR5 as such."
)


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check a full regression config; return it, or raise ``ValueError`` saying what is wrong."""
    presets.check_config(
        config,
        NAME,
        _PAPER,
        ("task_dim", "num_examples", "d_model", "n_layers", "n_heads", "d_mlp", "batch_size", "log_every"),
    )
    for name in (
        "version",
        "seed",
        "num_tasks",
        "n_log_checkpoints",
        "n_linear_checkpoints",
        "n_ed_checkpoints",
    ):
        if config[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {config[name]}")
    if config["noise_var"] < 0 or config["max_lr"] <= 0:
        raise ValueError(
            f"noise_var must be >= 0 and max_lr > 0, got {config['noise_var']}, {config['max_lr']}"
        )
    if config["num_steps"] < 4:
        raise ValueError(
            f"num_steps must be >= 4 (OneCycleLR div_factor = steps/2 - 1 > 0), got {config['num_steps']}"
        )
    if config["d_model"] % config["n_heads"]:
        raise ValueError(f"n_heads ({config['n_heads']}) must divide d_model ({config['d_model']})")
    return config


_SGLD_PAPER: dict[str, Any] = {
    "epsilon": 3e-4,
    "gamma": 6.67,
    "nbeta": 66.7,
    "num_chains": 10,
    "num_draws": 4000,
    "num_burnin": 1000,
    "batch_size": 1024,
    "num_samples": 32_768,
    "every": 1,
    "seed": 0,
}

#: SGLD settings per preset (rows of :class:`devbook.setting.SGLDPreset`).
SGLD_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_SGLD_PAPER),
    # cpu: batch m = 64, 4 chains × 200 steps at every other LLC checkpoint; ε, nβ, γ here are
    # the starting values (an earlier hand calibration: nβ = m / log m, ε = 1e-3, γ = 100) that
    # the chapters replace by the recommendation of the calibration grid on their run
    # (devbook.regression.calibration.CALIBRATION_PRESETS, Setting.calibrated_sgld)
    "cpu": {
        **_SGLD_PAPER,
        "epsilon": 1e-3,
        "gamma": 100.0,
        "nbeta": None,
        "num_chains": 4,
        "num_draws": 150,
        "num_burnin": 50,
        "batch_size": 64,
        "num_samples": 8192,
        "every": 2,
    },
    "smoke": {
        **_SGLD_PAPER,
        "epsilon": 1e-3,
        "gamma": 100.0,
        "nbeta": None,
        "num_chains": 2,
        "num_draws": 20,
        "num_burnin": 5,
        "batch_size": 32,
        "num_samples": 1024,
        "every": 2,
    },
}

#: What the ``cpu`` SGLD preset changes and why.
CPU_SGLD_NOTE = (
    "cpu SGLD: batch 64 instead of 1,024, 4 chains × 200 steps (50 burn-in) instead of "
    "10 × 5,000, on every other LLC checkpoint, so the sweep fits the chapter's budget; ε, nβ "
    "and γ are recommended by the calibration grid on the run itself."
)

#: Evaluation sizes per preset: the probe batch of the metrics.
EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"probe_n": 256},
    "cpu": {"probe_n": 1024},
    "paper": {"probe_n": 1024},
}
