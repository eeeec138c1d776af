"""The evaluation cache of a run: results of evaluators, computed once and read back from disk.

A result is stored under ``<run>/evals/{name}-{config_key(eval_config)}/`` as ``meta.json`` plus,
for a ``pandas.DataFrame`` or a dict of arrays, ``data.npz`` (no pickle). Used through
``Run.evals`` of :class:`devbook.store.Run` (``run.cached(...)``).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from devbook.files import StoreError, atomic_write_bytes, canonical_json, config_key, read_json, write_json

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass
class EvalCache:
    """Cached evaluator results under ``root`` (a run's ``evals/`` folder)."""

    root: Path

    def cached(
        self, name: str, eval_config: Mapping[str, Any], compute: Callable[[], Any], refresh: bool = False
    ) -> Any:
        """``compute()``'s result for evaluator ``name`` with ``eval_config``, computed once.

        Parameters
        ----------
        name : str
            Evaluator name (letters, digits, ``_``, ``.``, ``-``).
        eval_config : mapping
            Everything the result depends on (JSON values); hashed into the folder name.
        compute : callable
            Returns a ``pandas.DataFrame``, a ``dict`` of arrays/tensors, or any JSON value.
        refresh : bool
            Recompute even if a result is stored.

        Returns
        -------
        Any
            The result as read back from disk (arrays as numpy), so a first call and a cached
            call return identical objects. For long sweeps, cache per checkpoint (put the step in
            ``eval_config``) so an interrupted sweep resumes.
        """
        if not _NAME.match(name):
            raise ValueError(f"evaluator name {name!r} must match {_NAME.pattern}")
        folder = self.root / f"{name}-{config_key(eval_config)}"
        if (folder / "meta.json").exists() and not refresh:
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
        meta.update(kind="dataframe", columns=[str(c) for c in result.columns], index_name=result.index.name)
    elif (
        isinstance(result, Mapping)
        and result
        and all(isinstance(v, (np.ndarray, torch.Tensor)) for v in result.values())
    ):
        arrays = {
            str(k): (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
            for k, v in result.items()
        }
        meta.update(kind="arrays")
    else:
        arrays = None
        meta.update(kind="json", value=result)
    if arrays is not None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(folder / "data.npz", buf.getvalue())
    try:
        write_json(folder / "meta.json", meta)
    except TypeError as e:
        raise TypeError(
            f"result of evaluator {name!r} must be a DataFrame, a dict of arrays, or JSON-serialisable: {e}"
        ) from e


def _load_result(folder: Path, name: str, eval_config: Mapping[str, Any]) -> Any:
    meta = read_json(folder / "meta.json")
    if meta.get("name") != name or meta.get("eval_config") != json.loads(canonical_json(eval_config)):
        raise StoreError(
            f"{folder / 'meta.json'}: cached result for a different evaluator "
            f"({meta.get('name')!r}, {meta.get('eval_config')!r})"
        )
    if meta["kind"] == "json":
        return meta["value"]
    try:
        with np.load(folder / "data.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise StoreError(f"{folder / 'data.npz'}: unreadable ({e})") from e
    if meta["kind"] == "arrays":
        return arrays
    df = pd.DataFrame(
        {c: arrays[f"c{i}"] for i, c in enumerate(meta["columns"])},
        index=pd.Index(arrays["index"], name=meta["index_name"]),
    )
    return df
