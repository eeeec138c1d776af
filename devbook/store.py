"""The run store: one directory per full training config, resumable training, cached evaluations.

Every chapter asks the store for a run instead of training inline; the regression stages,
forms, Hessian and calibration chapters (and later the language chapters) share runs this way.

Layout of a run directory ``cache_dir("runs") / f"{setting}-{key}"``::

    config.json                      the full config (canonical JSON; ``key`` is its sha256 prefix)
    manifest.json                    weight schema, training plan, sha256 + size of every file
    ckpt-{step:08d}.safetensors      model weights after ``step`` updates (metadata: run key, step)
    state-{step:08d}.safetensors     optimiser/scheduler/RNG tensors   } resumable training state
    state-{step:08d}.json            everything else, as JSON (no pickle) } (kept for the last step)
    metrics.jsonl                    training log, one JSON object per line (``step`` + scalars)
    COMPLETE                         completion marker (JSON)
    evals/{name}-{hash}/             cached evaluator results (``Run.cached``): npz or JSON

API:

- :func:`config_key` / :func:`canonical_json`: the hash of a config (a JSON object with a
  ``"setting"`` name, e.g. ``{"setting": "regression", "seed": 1, ...}``).
- :func:`open_run` ``(config) -> Run``: ``Run.key``, ``Run.path``, ``Run.config``,
  ``Run.complete``, ``Run.checkpoint_steps()``, ``Run.load_weights(step)``,
  ``Run.load_into(model, step)``, ``Run.metrics()`` (a DataFrame), ``Run.cached(name,
  eval_config, compute)``.
- Training into a run (resumable, bitwise) lives in :mod:`devbook.training`.

All writes are atomic (temporary file + ``os.replace``). Loading verifies every checkpoint
against the manifest (size, sha256), its own metadata (run key, step) and the weight schema; a
truncated, garbage or foreign file raises :class:`CheckpointError` naming the file. Nothing is
unpickled.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import struct
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from devbook.paths import cache_dir

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
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
        raise TypeError(f"config value at {where} has type {type(value).__name__}; "
                        "valid: dict, list, str, int, float, bool, None")


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


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _safetensors_metadata(data: bytes, path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors blob (header parsed by hand, no tensor decoding)."""
    if len(data) < 8:
        raise CheckpointError(f"{path}: truncated ({len(data)} bytes), not a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise CheckpointError(f"{path}: truncated or garbage (header length {n} > file size)")
    try:
        header = json.loads(data[8:8 + n])
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
        raise TypeError(f"state entry {path} has type {type(x).__name__}, which cannot be "
                        "saved without pickle; use tensors, dicts, lists, tuples or scalars")

    return go(obj, prefix), tensors


def unflatten_state(skeleton: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, dict):
        if "__tensor__" in skeleton:
            return tensors[skeleton["__tensor__"]]
        if "__tuple__" in skeleton:
            return tuple(unflatten_state(v, tensors) for v in skeleton["__tuple__"])
        if "__dict__" in skeleton:
            return {(tuple(k) if isinstance(k, list) else k): unflatten_state(v, tensors)
                    for k, v in skeleton["__dict__"]}
        return {k: unflatten_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten_state(v, tensors) for v in skeleton]
    return skeleton


# ----------------------------------------------------------------------------- the run
def _schema(weights: Mapping[str, torch.Tensor]) -> dict[str, list[Any]]:
    return {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in weights.items()}


def _schema_mismatch(expected: Mapping[str, Any], got: Mapping[str, Any]) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = [f"{k}: {got[k]} != {expected[k]}" for k in sorted(set(got) & set(expected))
              if list(got[k]) != list(expected[k])]
    parts = [f"missing {missing}" if missing else "", f"unexpected {extra}" if extra else "",
             f"dtype/shape {differ[:5]}" if differ else ""]
    return "; ".join(p for p in parts if p)


@dataclass
class Run:
    """A run directory (see the module docstring). Create with :func:`open_run`."""

    config: dict[str, Any]
    path: Path
    key: str = field(init=False)
    _cache: tuple[Any, dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.key = config_key(self.config)

    # -- files
    def ckpt_file(self, step: int) -> Path:
        return self.path / f"ckpt-{step:08d}.safetensors"

    def _state_files(self, step: int) -> tuple[Path, Path]:
        return self.path / f"state-{step:08d}.safetensors", self.path / f"state-{step:08d}.json"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    @property
    def metrics_file(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def complete(self) -> bool:
        """Whether training finished (the ``COMPLETE`` marker exists)."""
        return (self.path / "COMPLETE").exists()

    def manifest(self) -> dict[str, Any]:
        """A fresh copy of ``manifest.json`` (schema, plan, checkpoint and state records)."""
        if not self.manifest_file.exists():
            return {"run_key": self.key, "schema": None, "plan": None,
                    "checkpoints": {}, "states": {}}
        m = _read_json(self.manifest_file)
        if m.get("run_key") != self.key:
            raise CheckpointError(f"{self.manifest_file}: belongs to run {m.get('run_key')!r}, "
                                  f"not {self.key!r}")
        return m

    def _manifest_readonly(self) -> dict[str, Any]:
        """:meth:`manifest`, parsed once per file version (loading thousands of checkpoints)."""
        try:
            st = self.manifest_file.stat()
            version = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return self.manifest()
        if self._cache is None or self._cache[0] != version:
            self._cache = (version, self.manifest())
        return self._cache[1]

    def checkpoint_steps(self) -> list[int]:
        """Steps with a recorded weights checkpoint, ascending."""
        return sorted(int(s) for s in self._manifest_readonly()["checkpoints"])

    # -- verified reading
    def _read_verified(self, path: Path, entry: Mapping[str, Any] | None, step: int) -> bytes:
        if not path.exists():
            steps = self.checkpoint_steps()
            near = sorted(steps, key=lambda s: abs(s - step))[:3]
            raise FileNotFoundError(f"{path} does not exist; the run records {len(steps)} "
                                    f"checkpoints, the nearest at steps {sorted(near)}")
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            meta = _safetensors_metadata(data, path)
            if meta.get("run_key") != self.key:
                raise CheckpointError(f"{path}: written by run {meta.get('run_key')!r}, "
                                      f"not this run {self.key!r} (foreign file)")
            if meta.get("step") != str(step):
                raise CheckpointError(f"{path}: holds step {meta.get('step')!r}, not {step}")
        if entry is None:
            raise CheckpointError(f"{path}: not recorded in {self.manifest_file} "
                                  "(foreign file or an interrupted write)")
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            raise CheckpointError(f"{path}: {len(data)} bytes whose sha256 differs from the "
                                  f"manifest ({entry['bytes']} bytes): truncated or replaced")
        return data

    def load_weights(self, step: int) -> dict[str, torch.Tensor]:
        """The model weights saved at ``step`` (``{name: tensor}``), verified; see module doc."""
        m = self._manifest_readonly()
        path = self.ckpt_file(step)
        data = self._read_verified(path, m["checkpoints"].get(str(step)), step)
        try:
            weights = st_load(data)
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: unreadable safetensors ({e})") from e
        if m["schema"] is not None and (bad := _schema_mismatch(m["schema"], _schema(weights))):
            raise CheckpointError(f"{path}: weights do not match the run's schema: {bad}")
        return weights

    def load_into(self, model: torch.nn.Module, step: int) -> torch.nn.Module:
        """Load the weights of ``step`` into ``model`` (keys/shapes checked); returns ``model``."""
        weights = self.load_weights(step)
        bad = _schema_mismatch(_schema(model.state_dict()), _schema(weights))
        if bad:
            raise CheckpointError(f"{self.ckpt_file(step)}: does not fit "
                                  f"{type(model).__name__}: {bad}")
        model.load_state_dict(weights)
        return model

    def load_state(self, step: int) -> Any:
        """The training state saved with the checkpoint at ``step`` (see :func:`flatten_state`)."""
        entry = self.manifest()["states"].get(str(step))
        tpath, jpath = self._state_files(step)
        tdata = self._read_verified(tpath, entry and entry["tensors"], step)
        jdata = self._read_verified(jpath, entry and entry["json"], step)
        try:
            tensors = st_load(tdata)
            skeleton = json.loads(jdata)
        except Exception as e:
            raise CheckpointError(f"{tpath} / {jpath}: unreadable ({e})") from e
        return unflatten_state(skeleton, tensors)

    # -- writing (used by train_run)
    def save_checkpoint(self, step: int, weights: Mapping[str, torch.Tensor],
                        state: Any = None, keep_state: str = "last") -> None:
        """Atomically save weights (and optionally the training state) at ``step``.

        ``keep_state="last"`` deletes older state files once the new ones are recorded.
        """
        m = self.manifest()
        weights = {k: v.detach().cpu().contiguous().clone() for k, v in weights.items()}
        if m["schema"] is None:
            m["schema"] = _schema(weights)
        elif bad := _schema_mismatch(m["schema"], _schema(weights)):
            raise StoreError(f"weights at step {step} differ from the run's schema: {bad}")
        meta = {"run_key": self.key, "step": str(step)}
        data = st_save(weights, metadata=meta)
        atomic_write_bytes(self.ckpt_file(step), data)
        m["checkpoints"][str(step)] = {"bytes": len(data), "sha256": _sha256(data)}
        old_states = list(m["states"])
        if state is not None:
            skeleton, tensors = flatten_state(state)
            tdata = st_save(tensors, metadata=meta)
            jdata = json.dumps(skeleton).encode()
            tpath, jpath = self._state_files(step)
            atomic_write_bytes(tpath, tdata)
            atomic_write_bytes(jpath, jdata)
            m["states"][str(step)] = {
                "tensors": {"bytes": len(tdata), "sha256": _sha256(tdata)},
                "json": {"bytes": len(jdata), "sha256": _sha256(jdata)}}
        stale = [s for s in old_states if s != str(step)] if (
            state is not None and keep_state == "last") else []
        for s in stale:
            del m["states"][s]
        _write_json(self.manifest_file, m)  # the new state is recorded before old ones go
        for s in stale:
            for p in self._state_files(int(s)):
                p.unlink(missing_ok=True)

    def log_metrics(self, row: Mapping[str, Any]) -> None:
        """Append one JSON line (must contain ``step``) to ``metrics.jsonl``."""
        with open(self.metrics_file, "a") as f:
            f.write(json.dumps(dict(row)) + "\n")
            f.flush()

    def start_plan(self, plan: Mapping[str, Any]) -> None:
        """Record the training plan of a run that has no saved state yet."""
        m = self.manifest()
        m["plan"] = dict(plan)
        _write_json(self.manifest_file, m)

    def remove_partial_writes(self) -> None:
        """Delete temporary files left by a process killed mid-write."""
        for tmp in self.path.glob(".*.tmp-*"):
            tmp.unlink()

    def truncate_metrics(self, step: int) -> None:
        """Drop metric rows logged after ``step`` (a resumed run logs them again)."""
        rows = self._metric_rows(strict=False)
        text = "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step)
        atomic_write_bytes(self.metrics_file, text.encode())

    def _metric_rows(self, strict: bool) -> list[dict[str, Any]]:
        if not self.metrics_file.exists():
            return []
        lines = self.metrics_file.read_text().split("\n")
        rows = []
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if strict or i != len(lines) - 1:  # only an unterminated last line is forgiven
                    raise StoreError(f"{self.metrics_file}: line {i + 1} is not JSON ({e})") from e
        return rows

    def metrics(self) -> pd.DataFrame:
        """The training log as a DataFrame (one row per logged step, column ``step`` first)."""
        return pd.DataFrame(self._metric_rows(strict=self.complete))

    def mark_complete(self, info: Mapping[str, Any]) -> None:
        _write_json(self.path / "COMPLETE", dict(info))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive lock on the run directory (two processes never train one run at once)."""
        with open(self.path / ".lock", "w") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(f"waiting for another process working on {self.path} ...", flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # -- cached evaluations
    def cached(self, name: str, eval_config: Mapping[str, Any], compute: Callable[[], Any],
               refresh: bool = False) -> Any:
        """``compute()``'s result for evaluator ``name`` with ``eval_config``, computed once.

        Stored under ``evals/{name}-{config_key(eval_config)}/``: a ``pandas.DataFrame`` (npz of
        columns), a ``dict`` of arrays/tensors (npz; returned as numpy arrays), or any JSON value.
        The value returned is always the one read back from disk, so a first call and a cached
        call return identical objects. For long sweeps, cache per checkpoint (put the step in
        ``eval_config``) so an interrupted sweep resumes.
        """
        if not _NAME.match(name):
            raise ValueError(f"evaluator name {name!r} must match {_NAME.pattern}")
        folder = self.path / "evals" / f"{name}-{config_key(eval_config)}"
        meta_file = folder / "meta.json"
        if meta_file.exists() and not refresh:
            return _load_result(folder, name, eval_config)
        result = compute()
        folder.mkdir(parents=True, exist_ok=True)
        _save_result(folder, name, eval_config, result)
        return _load_result(folder, name, eval_config)


def _save_result(folder: Path, name: str, eval_config: Mapping[str, Any], result: Any) -> None:
    meta: dict[str, Any] = {"name": name, "eval_config": json.loads(canonical_json(eval_config))}
    if isinstance(result, pd.DataFrame):
        arrays = {f"c{i}": np.asarray(result[c].to_numpy()) for i, c in enumerate(result.columns)}
        arrays["index"] = np.asarray(result.index.to_numpy())
        for k, a in arrays.items():
            if a.dtype == object:
                arrays[k] = a.astype(str)
        meta.update(kind="dataframe", columns=[str(c) for c in result.columns],
                    index_name=result.index.name)
    elif isinstance(result, Mapping) and result and all(
            isinstance(v, (np.ndarray, torch.Tensor)) for v in result.values()):
        arrays = {str(k): (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
                  for k, v in result.items()}
        meta.update(kind="arrays")
    else:
        arrays = None
        meta.update(kind="json", value=result)
    if arrays is not None:
        import io
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(folder / "data.npz", buf.getvalue())
    try:
        _write_json(folder / "meta.json", meta)
    except TypeError as e:
        raise TypeError(f"result of evaluator {name!r} must be a DataFrame, a dict of arrays, "
                        f"or JSON-serialisable: {e}") from e


def _load_result(folder: Path, name: str, eval_config: Mapping[str, Any]) -> Any:
    meta = _read_json(folder / "meta.json")
    if meta.get("name") != name or meta.get("eval_config") != json.loads(
            canonical_json(eval_config)):
        raise StoreError(f"{folder / 'meta.json'}: cached result for a different evaluator "
                         f"({meta.get('name')!r}, {meta.get('eval_config')!r})")
    if meta["kind"] == "json":
        return meta["value"]
    try:
        with np.load(folder / "data.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise StoreError(f"{folder / 'data.npz'}: unreadable ({e})") from e
    if meta["kind"] == "arrays":
        return arrays
    df = pd.DataFrame({c: arrays[f"c{i}"] for i, c in enumerate(meta["columns"])},
                      index=pd.Index(arrays["index"], name=meta["index_name"]))
    return df


def open_run(config: Mapping[str, Any], root: Path | None = None) -> Run:
    """The run directory for ``config`` (created if new). ``config["setting"]`` names the setting.

    ``root`` defaults to ``devbook.paths.cache_dir("runs")``. Raises :class:`StoreError` if the
    directory holds a different config (a hash collision or a hand-edited file).
    """
    if not isinstance(config, Mapping) or not isinstance(config.get("setting"), str) \
            or not _NAME.match(config["setting"]):
        raise ValueError("config must be a mapping with a 'setting' name (letters, digits, "
                         f"'_', '.', '-'), got {config!r:.200}")
    config = json.loads(canonical_json(config))
    key = config_key(config)
    path = (root or cache_dir("runs")) / f"{config['setting']}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    cfile = path / "config.json"
    if cfile.exists():
        if _read_json(cfile) != config:
            raise StoreError(f"{cfile}: holds a different config than the one asked for "
                             f"(key {key}); remove the directory if it is stale")
    else:
        _write_json(cfile, config)
    return Run(config=config, path=path)
