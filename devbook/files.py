"""Low-level pieces of the run store: errors, config hashing, atomic files, safetensors headers,
and nested training state split into JSON and tensors (no pickle anywhere)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

KEY_LENGTH = 16


class StoreError(RuntimeError):
    """A run directory is inconsistent with what was asked of it."""


class CheckpointError(StoreError):
    """A checkpoint or state file is truncated, corrupted, foreign or does not match the run."""


# ----------------------------------------------------------------------------- config hashing
def _check_json(value: Any, where: str) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"config key {k!r} at {where} must be a str")
            _check_json(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif isinstance(value, float):
        if not np.isfinite(value):
            raise ValueError(f"config value at {where} is {value}; only finite floats hash")
    elif not (value is None or isinstance(value, (str, int, bool))):
        raise TypeError(
            f"config value at {where} has type {type(value).__name__}; "
            "valid: dict, list, str, int, float, bool, None"
        )


def canonical_json(config: Mapping[str, Any]) -> str:
    """Sorted-key, compact JSON of ``config`` (what :func:`config_key` hashes)."""
    _check_json(config, "config")
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def config_key(config: Mapping[str, Any]) -> str:
    """First 16 hex digits of the sha256 of :func:`canonical_json` of ``config``."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()[:KEY_LENGTH]


# ----------------------------------------------------------------------------- atomic files
def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safetensors_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (header parsed by hand, no tensor decoding)."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated ({len(data)} bytes), not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: truncated or garbage (header length {n} > file size)")
    try:
        header = json.loads(data[8 : 8 + n])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: garbage safetensors header ({e})") from e
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: garbage safetensors header")
    return dict(header.get("__metadata__") or {})


# ----------------------------------------------------------------------------- nested state <-> (tensors, JSON)
def flatten_state(obj: Any, prefix: str = "s") -> tuple[Any, dict[str, torch.Tensor]]:
    """Split a nested state (dicts, lists, tuples, tensors, scalars) into JSON and tensors.

    Returns ``(skeleton, tensors)``: ``skeleton`` is JSON-serialisable, with every tensor
    replaced by ``{"__tensor__": key}`` and ``tensors[key]`` holding a contiguous CPU copy;
    tuples and dicts with non-str keys (e.g. ``optimizer.state_dict()["state"]``) are tagged so
    :func:`unflatten_state` restores them exactly. Floats survive JSON exactly (repr round-trip).
    """
    tensors: dict[str, torch.Tensor] = {}

    def go(x: Any, path: str) -> Any:
        if isinstance(x, torch.Tensor):
            tensors[path] = x.detach().cpu().contiguous().clone()
            return {"__tensor__": path}
        if isinstance(x, Mapping):
            if all(isinstance(k, str) and not k.startswith("__") for k in x):
                return {k: go(v, f"{path}.{k}") for k, v in x.items()}
            return {"__dict__": [[k, go(v, f"{path}.{i}")] for i, (k, v) in enumerate(x.items())]}
        if isinstance(x, tuple):
            return {"__tuple__": [go(v, f"{path}.{i}") for i, v in enumerate(x)]}
        if isinstance(x, list):
            return [go(v, f"{path}.{i}") for i, v in enumerate(x)]
        if x is None or isinstance(x, (bool, int, float, str)):
            return x
        raise TypeError(
            f"state entry {path} has type {type(x).__name__}, which cannot be "
            "saved without pickle; use tensors, dicts, lists, tuples or scalars"
        )

    return go(obj, prefix), tensors


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if "__dict__" in skeleton:
            return {
                (tuple(k) if isinstance(k, list) else k): unflatten_state(v, tensors)
                for k, v in skeleton["__dict__"]
            }
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton
