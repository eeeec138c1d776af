"""Sizes of the essential-dynamics theory chapter (``book/theory/essential-dynamics.md``).

``smoke`` runs in about a minute (tests), ``cpu`` in a few minutes on two cores, ``paper``
adds surrogates, Brownian paths and checkpoints (still CPU-only: the chapter trains nothing).
Every preset has at least 20 surrogates per family, the fewest with which a p-value can fall
below 0.05 ((1 + 0) / (1 + 20) = 0.048).
Resolved with :func:`devbook.presets.resolve`.
"""

from __future__ import annotations

from typing import Any

TABLE: dict[str, dict[str, Any]] = {
    "smoke": {
        "curve_samples": 400,
        "toy_checkpoints": 400,
        "planted_checkpoints": 401,
        "brownian_checkpoints": 200,
        "brownian_dim": 500,
        "brownian_paths": 1,
        "surrogates": 20,
        "coarse_every": 40,
    },
    "cpu": {
        "curve_samples": 1000,
        "toy_checkpoints": 600,
        "planted_checkpoints": 601,
        "brownian_checkpoints": 400,
        "brownian_dim": 2000,
        "brownian_paths": 8,
        "surrogates": 20,
        "coarse_every": 40,
    },
    "paper": {
        "curve_samples": 2000,
        "toy_checkpoints": 2000,
        "planted_checkpoints": 2001,
        "brownian_checkpoints": 1000,
        "brownian_dim": 20000,
        "brownian_paths": 20,
        "surrogates": 100,
        "coarse_every": 40,
    },
}
