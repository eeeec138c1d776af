"""The run store: one directory per full training config, resumable training, cached evaluations.

Every chapter asks the store for a run instead of training inline, so chapters that read the
same run share it and nothing is trained twice for one config.

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
- A :class:`Run` is made of three parts: :class:`Checkpoints` (weights and training state,
  verified against ``manifest.json``), :class:`MetricsLog` (``metrics.jsonl``) and
  :class:`devbook.evalcache.EvalCache` (``evals/``); the low-level file handling is in
  :mod:`devbook.files`.
- Training into a run (resumable, bitwise) lives in :mod:`devbook.training`.

All writes are atomic (temporary file + ``os.replace``). Loading verifies every checkpoint
against the manifest (size, sha256), its own metadata (run key, step) and the weight schema; a
truncated, garbage or foreign file raises :class:`CheckpointError` naming the file. Nothing is
unpickled.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from devbook.evalcache import _NAME, EvalCache
from devbook.files import (
    KEY_LENGTH,
    CheckpointError,
    StoreError,
    atomic_write_bytes,
    canonical_json,
    config_key,
    flatten_state,
    read_json,
    safetensors_metadata,
    sha256,
    unflatten_state,
    write_json,
)
from devbook.paths import cache_dir

__all__ = [
    "KEY_LENGTH",
    "CheckpointError",
    "Checkpoints",
    "EvalCache",
    "MetricsLog",
    "Run",
    "StoreError",
    "atomic_write_bytes",
    "canonical_json",
    "config_key",
    "flatten_state",
    "open_run",
    "unflatten_state",
]


def _schema(weights: Mapping[str, torch.Tensor]) -> dict[str, list[Any]]:
    return {k: [str(v.dtype).removeprefix("torch."), list(v.shape)] for k, v in weights.items()}


def _schema_mismatch(expected: Mapping[str, Any], got: Mapping[str, Any]) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    differ = [
        f"{k}: {got[k]} != {expected[k]}"
        for k in sorted(set(got) & set(expected))
        if list(got[k]) != list(expected[k])
    ]
    parts = [
        f"missing {missing}" if missing else "",
        f"unexpected {extra}" if extra else "",
        f"dtype/shape {differ[:5]}" if differ else "",
    ]
    return "; ".join(p for p in parts if p)


@dataclass
class Checkpoints:
    """The weights and training states of a run directory, recorded in ``manifest.json``.

    Every file is written atomically and recorded (size, sha256) in the manifest before older
    states are removed; every read is verified against the manifest, the file's own metadata
    (run key, step) and the weight schema.
    """

    path: Path
    key: str
    _cache: tuple[Any, dict[str, Any]] | None = field(default=None, init=False, repr=False)

    def file(self, step: int) -> Path:
        """The weights file of ``step``."""
        return self.path / f"ckpt-{step:08d}.safetensors"

    def _state_files(self, step: int) -> tuple[Path, Path]:
        return self.path / f"state-{step:08d}.safetensors", self.path / f"state-{step:08d}.json"

    @property
    def manifest_file(self) -> Path:
        return self.path / "manifest.json"

    def manifest(self) -> dict[str, Any]:
        """A fresh copy of ``manifest.json`` (schema, plan, checkpoint and state records)."""
        if not self.manifest_file.exists():
            return {"run_key": self.key, "schema": None, "plan": None, "checkpoints": {}, "states": {}}
        m = read_json(self.manifest_file)
        if m.get("run_key") != self.key:
            raise CheckpointError(
                f"{self.manifest_file}: belongs to run {m.get('run_key')!r}, not {self.key!r}"
            )
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

    def steps(self) -> list[int]:
        """Steps with a recorded weights checkpoint, ascending."""
        return sorted(int(s) for s in self._manifest_readonly()["checkpoints"])

    # -- verified reading

    # -- verified reading
    def _read_verified(self, path: Path, entry: Mapping[str, Any] | None, step: int) -> bytes:
        if not path.exists():
            steps = self.steps()
            near = sorted(steps, key=lambda s: abs(s - step))[:3]
            raise FileNotFoundError(
                f"{path} does not exist; the run records {len(steps)} "
                f"checkpoints, the nearest at steps {sorted(near)}"
            )
        data = path.read_bytes()
        if path.suffix == ".safetensors":
            meta = safetensors_metadata(data, path)
            if meta.get("run_key") != self.key:
                raise CheckpointError(
                    f"{path}: written by run {meta.get('run_key')!r}, "
                    f"not this run {self.key!r} (foreign file)"
                )
            if meta.get("step") != str(step):
                raise CheckpointError(f"{path}: holds step {meta.get('step')!r}, not {step}")
        if entry is None:
            raise CheckpointError(
                f"{path}: not recorded in {self.manifest_file} (foreign file or an interrupted write)"
            )
        if len(data) != entry["bytes"] or sha256(data) != entry["sha256"]:
            raise CheckpointError(
                f"{path}: {len(data)} bytes whose sha256 differs from the "
                f"manifest ({entry['bytes']} bytes): truncated or replaced"
            )
        return data

    def load_weights(self, step: int) -> dict[str, torch.Tensor]:
        """The model weights saved at ``step`` (``{name: tensor}``), verified; see module doc."""
        m = self._manifest_readonly()
        path = self.file(step)
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
            raise CheckpointError(f"{self.file(step)}: does not fit {type(model).__name__}: {bad}")
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

    # -- writing (used by train_run)
    def save(
        self, step: int, weights: Mapping[str, torch.Tensor], state: Any = None, keep_state: str = "last"
    ) -> None:
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
        atomic_write_bytes(self.file(step), data)
        m["checkpoints"][str(step)] = {"bytes": len(data), "sha256": sha256(data)}
        old_states = list(m["states"])
        if state is not None:
            skeleton, tensors = flatten_state(state)
            tdata = st_save(tensors, metadata=meta)
            jdata = json.dumps(skeleton).encode()
            tpath, jpath = self._state_files(step)
            atomic_write_bytes(tpath, tdata)
            atomic_write_bytes(jpath, jdata)
            m["states"][str(step)] = {
                "tensors": {"bytes": len(tdata), "sha256": sha256(tdata)},
                "json": {"bytes": len(jdata), "sha256": sha256(jdata)},
            }
        stale = (
            [s for s in old_states if s != str(step)] if (state is not None and keep_state == "last") else []
        )
        for s in stale:
            del m["states"][s]
        write_json(self.manifest_file, m)  # the new state is recorded before old ones go
        for s in stale:
            for p in self._state_files(int(s)):
                p.unlink(missing_ok=True)

    def start_plan(self, plan: Mapping[str, Any]) -> None:
        """Record the training plan of a run that has no saved state yet."""
        m = self.manifest()
        m["plan"] = dict(plan)
        write_json(self.manifest_file, m)

    def remove_partial_writes(self) -> None:
        """Delete temporary files left by a process killed mid-write."""
        for tmp in self.path.glob(".*.tmp-*"):
            tmp.unlink()


@dataclass
class MetricsLog:
    """The training log of a run: ``metrics.jsonl``, one JSON object (``step`` + scalars) a line."""

    file: Path

    def append(self, row: Mapping[str, Any]) -> None:
        """Append one JSON line (must contain ``step``)."""
        with open(self.file, "a") as f:
            f.write(json.dumps(dict(row)) + "\n")
            f.flush()

    def truncate(self, step: int) -> None:
        """Drop metric rows logged after ``step`` (a resumed run logs them again)."""
        rows = self.rows(strict=False)
        text = "".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step)
        atomic_write_bytes(self.file, text.encode())

    def rows(self, strict: bool) -> list[dict[str, Any]]:
        if not self.file.exists():
            return []
        lines = self.file.read_text().split("\n")
        rows = []
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                if strict or i != len(lines) - 1:  # only an unterminated last line is forgiven
                    raise StoreError(f"{self.file}: line {i + 1} is not JSON ({e})") from e
        return rows

    def table(self, strict: bool = True) -> pd.DataFrame:
        """The log as a DataFrame (one row per logged step, column ``step`` first).

        ``strict=False`` forgives an unterminated last line (a run killed mid-write).
        """
        return pd.DataFrame(self.rows(strict=strict))


@dataclass
class Run:
    """A run directory (see the module docstring): its config, key and three parts.

    Create with :func:`open_run`. ``checkpoints`` (:class:`Checkpoints`), ``log``
    (:class:`MetricsLog`) and ``evals`` (:class:`devbook.evalcache.EvalCache`) hold the files;
    the few methods here are the reading API the chapters use.
    """

    config: dict[str, Any]
    path: Path
    key: str = field(init=False)
    checkpoints: Checkpoints = field(init=False)
    log: MetricsLog = field(init=False)
    evals: EvalCache = field(init=False)

    def __post_init__(self) -> None:
        self.key = config_key(self.config)
        self.checkpoints = Checkpoints(self.path, self.key)
        self.log = MetricsLog(self.path / "metrics.jsonl")
        self.evals = EvalCache(self.path / "evals")

    @property
    def complete(self) -> bool:
        """Whether training finished (the ``COMPLETE`` marker exists)."""
        return (self.path / "COMPLETE").exists()

    def mark_complete(self, info: Mapping[str, Any]) -> None:
        """Write the completion marker."""
        write_json(self.path / "COMPLETE", dict(info))

    def checkpoint_steps(self) -> list[int]:
        """Steps with a recorded weights checkpoint, ascending."""
        return self.checkpoints.steps()

    def load_weights(self, step: int) -> dict[str, torch.Tensor]:
        """The verified weights of ``step`` (see :meth:`Checkpoints.load_weights`)."""
        return self.checkpoints.load_weights(step)

    def load_into(self, model: torch.nn.Module, step: int) -> torch.nn.Module:
        """Load the weights of ``step`` into ``model`` (see :meth:`Checkpoints.load_into`)."""
        return self.checkpoints.load_into(model, step)

    def metrics(self) -> pd.DataFrame:
        """The training log as a DataFrame (strict once the run is complete)."""
        return self.log.table(strict=self.complete)

    def cached(self, name: str, eval_config: Mapping[str, Any], compute: Any, refresh: bool = False) -> Any:
        """An evaluator's result, computed once (see :meth:`devbook.evalcache.EvalCache.cached`)."""
        return self.evals.cached(name, eval_config, compute, refresh)

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


def open_run(config: Mapping[str, Any], root: Path | None = None) -> Run:
    """The run directory for ``config`` (created if new). ``config["setting"]`` names the setting.

    ``root`` defaults to ``devbook.paths.cache_dir("runs")``. Raises :class:`StoreError` if the
    directory holds a different config (a hash collision or a hand-edited file).
    """
    if (
        not isinstance(config, Mapping)
        or not isinstance(config.get("setting"), str)
        or not _NAME.match(config["setting"])
    ):
        raise ValueError(
            "config must be a mapping with a 'setting' name (letters, digits, "
            f"'_', '.', '-'), got {config!r:.200}"
        )
    config = json.loads(canonical_json(config))
    key = config_key(config)
    path = (root or cache_dir("runs")) / f"{config['setting']}-{key}"
    path.mkdir(parents=True, exist_ok=True)
    cfile = path / "config.json"
    if cfile.exists():
        if read_json(cfile) != config:
            raise StoreError(
                f"{cfile}: holds a different config than the one asked for "
                f"(key {key}); remove the directory if it is stale"
            )
    else:
        write_json(cfile, config)
    return Run(config=config, path=path)
