"""The LLC at every checkpoint of a stored run (paper E.3.2), cached in the run store.

Generic over settings: give it a ``build_model(step) -> nn.Module`` (weights of that checkpoint
loaded), the setting's ``loss_fn(model, batch)``, the fixed SGLD data set (a tuple of tensors)
and an :class:`devbook.llc.SGLDConfig`. Every checkpoint is estimated with the **same seed**, so
each sees the same minibatch schedule and the same injected noise (E.3.2: this smooths the
LLC-over-time curve). Each checkpoint's estimate is cached separately under the run
(``Run.cached``, keyed by the SGLD config, the seed, a hash of the data and the step), so an
interrupted sweep resumes and a repeated one is free.

Used by :meth:`devbook.setting.Setting.llc_sweep` (the regression and language stage chapters);
:func:`sweep_llc` returns a :class:`LLCSweep` (``.table`` one row per checkpoint, ``.traces``
the online per-chain traces).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from devbook.llc import DIAGNOSES, SGLDConfig, estimate_llc
from devbook.progress import progress as tqdm
from devbook.store import Run

Batch = tuple[torch.Tensor, ...]


@dataclass
class LLCSweep:
    """LLC estimates over checkpoints.

    table: one row per checkpoint, columns ``step``, ``llc`` (mean over non-diverged chains),
    ``llc_std`` (std over chains), ``init_loss`` (L_n(w*) on the SGLD data), ``seconds``, and
    one count column per diagnosis (``ok``, ``diverged``, ``not_converged``, ``escaped``).
    traces: ``{step: (C, T) array}`` of per-chain online LLC traces (E.3.4).
    """

    table: pd.DataFrame
    traces: dict[int, np.ndarray]

    @property
    def steps(self) -> np.ndarray:
        return self.table["step"].to_numpy()

    @property
    def llc(self) -> np.ndarray:
        return self.table["llc"].to_numpy()


def data_fingerprint(data: Batch) -> str:
    """sha256 prefix of the SGLD data's shapes, dtypes and bytes (part of the cache key)."""
    h = hashlib.sha256()
    for t in data:
        t = t.detach().cpu().contiguous()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


def select_steps(steps: Sequence[int], every: int = 1) -> list[int]:
    """Every ``every``-th of the sorted ``steps``, always keeping the first and the last.

    Thinning the union of log- and linear-spaced checkpoints this way keeps both kinds (the
    cpu preset uses it to fit its time budget).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    ordered = sorted(int(s) for s in steps)
    if not ordered:
        raise ValueError("no checkpoint steps to select from")
    return sorted(set(ordered[::every]) | {ordered[0], ordered[-1]})


def _checked_steps(run: Run, steps: Sequence[int] | None) -> list[int]:
    """``steps`` (default: every checkpoint of ``run``) sorted, each one a saved checkpoint."""
    available = run.checkpoint_steps()
    if steps is None:
        steps = available
    missing = sorted(set(int(s) for s in steps) - set(available))
    if missing:
        raise ValueError(
            f"steps {missing[:5]}{'…' if len(missing) > 5 else ''} have no "
            f"checkpoint in run {run.key}; available: {available[:3]}…{available[-3:]}"
        )
    return sorted(set(int(s) for s in steps))


def _estimate(
    model: nn.Module, loss_fn: Callable, data: Batch, config: SGLDConfig, seed: int, vectorize: bool
) -> dict[str, np.ndarray]:
    """One checkpoint's estimate as the arrays the run store caches."""
    res = estimate_llc(model, loss_fn, data, config, seed=seed, vectorize=vectorize)
    codes = np.array([DIAGNOSES.index(d) for d in res.diagnosis], dtype=np.int64)
    return {
        "mean": np.array(res.mean),
        "std": np.array(res.std),
        "per_chain": res.per_chain,
        "init_loss": np.array(res.init_loss),
        "trace": res.llc_trace_per_chain,
        "diagnosis": codes,
        "seconds": np.array(res.seconds),
    }


def sweep_llc(
    run: Run,
    build_model: Callable[[int], nn.Module],
    loss_fn: Callable[[nn.Module, Batch], torch.Tensor],
    data: Batch,
    config: SGLDConfig,
    *,
    seed: int,
    steps: Sequence[int] | None = None,
    name: str = "llc",
    vectorize: bool = True,
    progress: bool = True,
) -> LLCSweep:
    """Estimate the LLC at each checkpoint ``steps`` (default: all of ``run``'s) of ``run``.

    ``build_model(step)`` returns the model with that checkpoint's weights; ``loss_fn`` and
    ``data`` are as in :func:`devbook.llc.estimate_llc`; the same ``seed`` is used at every
    checkpoint. Results are cached per checkpoint in ``run`` under evaluator ``name``.
    """
    if not isinstance(run, Run):
        raise ValueError(f"run must be a devbook.store.Run, got {type(run).__name__}")
    if not isinstance(config, SGLDConfig):
        raise ValueError(f"config must be an SGLDConfig, got {type(config).__name__}")
    steps = _checked_steps(run, steps)
    base: dict[str, Any] = {"sgld": asdict(config), "seed": int(seed), "data": data_fingerprint(data)}

    rows: list[dict[str, Any]] = []
    traces: dict[int, np.ndarray] = {}
    bar = tqdm(steps, desc=f"LLC over checkpoints ({run.key[:8]})", disable=not progress)
    for step in bar:
        out = run.cached(
            name,
            {**base, "step": step},
            lambda s=step: _estimate(build_model(s), loss_fn, data, config, seed, vectorize),
        )
        counts = np.bincount(out["diagnosis"], minlength=len(DIAGNOSES))
        rows.append(
            {
                "step": step,
                "llc": float(out["mean"]),
                "llc_std": float(out["std"]),
                "init_loss": float(out["init_loss"]),
                "seconds": float(out["seconds"]),
                **{d: int(c) for d, c in zip(DIAGNOSES, counts)},
            }
        )
        traces[step] = out["trace"]
        bar.set_postfix(step=step, llc=f"{rows[-1]['llc']:.3g}")
    return LLCSweep(table=pd.DataFrame(rows), traces=traces)


def sweep_summary(sweep: LLCSweep) -> Mapping[str, Any]:
    """Counts of chain diagnoses over the whole sweep and the total SGLD time (for the text)."""
    t = sweep.table
    return {
        **{d: int(t[d].sum()) for d in DIAGNOSES},
        "seconds": float(t["seconds"].sum()),
        "checkpoints": len(t),
    }
