"""Seeded random streams: one named, independent ``torch.Generator`` per purpose.

Every setting draws its initialisation, training batches and held-out data from
:func:`generator` ``(seed, purpose)``, so the same config always gives the same numbers and
the streams of different purposes never overlap.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for the stream ``purpose`` of ``seed``.

    Parameters
    ----------
    seed : int
        The run's (or evaluation's) seed.
    purpose : str
        Name of the stream, e.g. ``"init"``, ``"train-data"``, ``"heldout:eval"``.

    Returns
    -------
    int
        The first 8 bytes of ``sha256(f"{seed}:{purpose}")``, little-endian, shifted to 63 bits.
    """
    digest = hashlib.sha256(f"{int(seed)}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(seed: int, purpose: str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` ``(seed, purpose)``.

    Parameters
    ----------
    seed : int
        The run's (or evaluation's) seed.
    purpose : str
        Name of the stream.

    Returns
    -------
    torch.Generator
        A fresh generator; two calls with the same arguments give identical streams.
    """
    return torch.Generator().manual_seed(derive_seed(seed, purpose))
