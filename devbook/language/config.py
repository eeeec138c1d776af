"""Presets of the language setting (paper §2.1, App. C, E.1) and config validation.

A run config is a flat dict of JSON scalars; its hash is the run's key in :mod:`devbook.store`,
so everything that changes the trained weights is in it (and nothing else is). The SGLD
sampler's presets are :data:`SGLD_PRESETS`, the metric sample sizes :data:`EVAL_PRESETS`.

- ``paper``: 2 layers × 8 heads, d_model 256, d_head 32, n_ctx 1024, d_vocab 5000, attention
  only, shortformer positions, LayerNorm; AdamW lr 1e-3, wd 0.05, batch 100, 50k steps.
- ``cpu``: the paper's layers and heads at half the width, with a 32-token context, 16
  sequences per batch and a higher learning rate (see :data:`CPU_PRESET_NOTE`).
- ``smoke``: a tiny context and a few dozen steps (seconds), exercising every code path.

Used by ``book/language/stages.md`` through :data:`devbook.language.setting.SETTING`.
"""

from __future__ import annotations

from typing import Any

from devbook import presets
from devbook.language.corpus import FORMAT_VERSION

#: Name of the setting (the ``"setting"`` entry of every run config).
NAME = "language"
#: The corpus format runs are keyed by (``FORMAT_VERSION`` of :mod:`devbook.language.corpus`).
CORPUS_FORMAT = FORMAT_VERSION

_PAPER: dict[str, Any] = {
    "setting": NAME,
    "seed": 0,
    # data: "corpus" (the offline books and code) or a folder saved with datasets' save_to_disk
    "data": "corpus",
    # the offline corpus's format (part of the run key: a changed corpus trains a new run)
    "corpus_format": CORPUS_FORMAT,
    "split_seed": 0,
    # model (paper App. E.1.1)
    "n_layers": 2,
    "d_model": 256,
    "n_heads": 8,
    "d_head": 32,
    "n_ctx": 1024,
    "d_vocab": 5000,
    # training (authors' code): AdamW, no schedule
    "batch_size": 100,
    "lr": 0.001,
    "weight_decay": 0.05,
    "num_steps": 50_000,
    "n_log_checkpoints": 100,
    "n_linear_checkpoints": 2000,
    # checkpoints are those of a num_steps run unless this is larger: then those of a
    # checkpoint_horizon-step run up to num_steps (a shorter run at a longer run's checkpoints)
    "checkpoint_horizon": 0,
    "log_every": 100,
}

#: Training configs per preset (each a full run config).
RUN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_PAPER),
    "cpu": {
        **_PAPER,
        "d_model": 128,
        "d_head": 16,
        "n_ctx": 32,
        "batch_size": 16,
        "lr": 0.003,
        "num_steps": 20_000,
        "n_log_checkpoints": 40,
        "n_linear_checkpoints": 20,
        "log_every": 50,
    },
    "smoke": {
        **_PAPER,
        "n_ctx": 32,
        "batch_size": 4,
        "num_steps": 30,
        "n_log_checkpoints": 6,
        "n_linear_checkpoints": 3,
        "log_every": 5,
    },
}

#: What the ``cpu`` preset changes and why (shown in the chapter).
CPU_PRESET_NOTE = (
    "cpu preset: 2 layers x 8 heads as the paper, but d_model 128 (d_head 16), a 32-token "
    "context, batches of 16 sequences, AdamW lr 3e-3 and 20,000 steps (10.2M training tokens, "
    "about 3 passes over the training split; the paper: about 5B). A short context buys "
    "previous-token heads: in probe runs (benchmarks/language_heads.py) at 512 tokens per step, "
    "the best first-layer head's previous-token score reached 0.30 after 6,000 steps with a "
    "32-token context, 0.19 after 8,000 with 64 tokens, 0.11 after 6,000 with 128, and 0.04 "
    "after 5,000-6,000 with 256 or 512. No context tried gave induction heads within the "
    "chapter's ~40-minute budget (a step takes about 67 ms on one core)."
)

# SGLD presets (rows of devbook.setting.SGLDPreset; nβ None = m / log m, paper App. E.3.1).
_SGLD_PAPER: dict[str, Any] = {
    "num_chains": 20,
    "num_draws": 200,
    "batch_size": 100,
    "epsilon": 0.0003,
    "gamma": 300.0,
    "nbeta": None,
    "seed": 0,
    "every": 1,  # estimate at every k-th checkpoint
    "num_samples": 10_000,  # SGLD data: windows from the SGLD split
    "init_loss_batch_size": 32,
}
#: SGLD settings per preset (rows of :class:`devbook.setting.SGLDPreset`).
SGLD_PRESETS: dict[str, dict[str, Any]] = {
    "paper": dict(_SGLD_PAPER),
    # cpu: the chains, draws and batch the chapters run; their ε, nβ, γ come from the grid of
    # CALIBRATION_PRESETS on the chapter's own run (Setting.calibrated_sgld). The values here
    # are the fallback when no cell is healthy (an earlier hand calibration of this preset).
    "cpu": {
        **_SGLD_PAPER,
        "num_chains": 2,
        "num_draws": 80,
        "batch_size": 32,
        "epsilon": 0.001,
        "gamma": 300.0,
        "num_samples": 512,
        "every": 3,
    },
    "smoke": {**_SGLD_PAPER, "num_chains": 2, "num_draws": 5, "batch_size": 4, "num_samples": 16},
}
#: Calibration grids per preset (paper App. E.3.3; :func:`devbook.calibrated.calibration_config`):
#: ε × nβ × γ values (nβ None = m / log m, the paper's own choice for this model, E.1.3),
#: chains per cell and where the grid is probed (fractions of the LLC checkpoints: early,
#: middle, final; checkpoints in the middle of training can diverge first). ``cpu`` has 4 cells
#: of 2 chains at 3 checkpoints: γ is held at the SGLD preset's 300 (the paper does not report
#: its γ for this model) to halve the grid's cost, the dearest part of the language chapters
#: on two cores; when the grid also had γ = 100 (8 cells), no γ-100 cell was healthy on either
#: the two- or the one-layer ``cpu`` run (2026-12-02).
CALIBRATION_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "epsilon": [1e-4, 3e-4, 1e-3],
        "nbeta": [None, 60.0],
        "gamma": [100.0, 300.0, 1000.0],
        "chains": 4,
        "probes": [0.1, 0.5, 1.0],
    },
    "cpu": {
        "epsilon": [1e-3, 3e-3],
        "nbeta": [None, 30.0],
        "gamma": [300.0],
        "chains": 2,
        "probes": [0.3, 0.5, 1.0],
    },
    "smoke": {"epsilon": [1e-3, 3e-3], "nbeta": [None], "gamma": [300.0], "chains": 2, "probes": [1.0]},
}
# Sizes of the behavioural metrics: validation windows and synthetic head-probe sequences.
#: Evaluation sizes per preset.
EVAL_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_eval_sequences": 1000, "n_synthetic": 10_000},
    "cpu": {"n_eval_sequences": 100, "n_synthetic": 400},
    "smoke": {"n_eval_sequences": 8, "n_synthetic": 16},
}


def validate(config: dict[str, Any]) -> dict[str, Any]:
    """Check a full language run config; return it, or raise ``ValueError`` saying what is wrong."""
    presets.check_config(
        config,
        NAME,
        _PAPER,
        ("n_layers", "d_model", "n_heads", "d_head", "batch_size", "num_steps", "log_every"),
    )
    if config["n_layers"] not in (1, 2):
        raise ValueError(f"n_layers must be 1 or 2 (the paper's models), got {config['n_layers']}")
    if config["n_ctx"] < 8:
        raise ValueError(f"n_ctx must be >= 8, got {config['n_ctx']}")
    if config["d_vocab"] < 257:
        raise ValueError(f"d_vocab must be >= 257 (bytes + BOS), got {config['d_vocab']}")
    for name in ("seed", "split_seed", "n_log_checkpoints", "n_linear_checkpoints", "checkpoint_horizon"):
        if config[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {config[name]}")
    if config["corpus_format"] != CORPUS_FORMAT:
        raise ValueError(
            f"this run config is for corpus format {config['corpus_format']}; the offline corpus is "
            f"now format {CORPUS_FORMAT}: use corpus_format={CORPUS_FORMAT} (a new run)"
        )
    horizon = config["checkpoint_horizon"]
    if horizon and horizon < config["num_steps"]:
        raise ValueError(
            f"checkpoint_horizon must be 0 or >= num_steps ({config['num_steps']}), got {horizon}"
        )
    if config["lr"] <= 0 or config["weight_decay"] < 0:
        raise ValueError(
            f"lr must be > 0 and weight_decay >= 0, got {config['lr']}, {config['weight_decay']}"
        )
    return config
