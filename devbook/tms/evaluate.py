"""The TMS chapter's expensive evaluations, each cached in the training run's store.

Every function takes the :class:`devbook.store.Run` of the chapter and caches its result with
:meth:`devbook.store.Run.cached` (per plateau for the LLCs and Hessians, so an interrupted
evaluation resumes and the LLC curve shares estimates with the plateau table), so a second
execution of the chapter reads them back:

- :func:`kgon_catalogue`: the optimised k-gons and their exact losses;
- :func:`plateau_analysis`: every seed's labelled plateaus and its final k-gon;
- :func:`llc_estimates`: λ̂ at (seed, checkpoint) pairs, with convergence diagnostics;
- :func:`hessian_minima`: the smallest Hessian eigenvalue of the exact potential there;
- :func:`tempered_posterior` / :func:`posterior_occupancy`: replica-exchange draws and the
  share of each k-gon phase at every rung.

The posterior does not depend on the trained weights; it is cached in the run of the same
seed because that is the chapter's store entry.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from devbook.llc import DIAGNOSES, LLCConvergenceWarning, LLCDivergenceWarning
from devbook.setting import SGLDPreset
from devbook.store import Run
from devbook.tms.analysis import (
    PLATEAU_MIN_DECADES,
    PLATEAU_SLOPE_TOL,
    Plateau,
    hessian_eigenvalues,
    labelled_plateaus,
    plateau_llc,
)
from devbook.tms.data import sample_sparse
from devbook.tms.kgon import classify, optimise_kgon
from devbook.tms.posterior import TemperedDraws, occupancy_table, sample_tempered
from devbook.tms.train import TrainResult

CATALOGUE = ((6, 0), (5, 1), (5, 0), (4, 2), (3, 3))
"""The (k, σ) of the hand-built k-gons optimised by :func:`kgon_catalogue`."""
POSTERIOR_DATA_OFFSET = 7
"""The posterior's data set D_N is drawn from ``torch.Generator(seed + 7)``."""


def kgon_catalogue(
    run: Run, kgons: Sequence[tuple[int, int]] = CATALOGUE, *, max_iter: int = 100
) -> list[tuple[str, float]]:
    """``(label, L(w*))`` of the k-gon critical point nearest each hand-built ``(k, σ)``.

    Parameters
    ----------
    run : devbook.store.Run
        Where the result is cached (it does not depend on the run's weights).
    kgons : sequence of (int, int)
        ``(k, sigma)`` pairs (see :func:`devbook.tms.kgon.optimise_kgon`).
    max_iter : int
        L-BFGS iterations.

    Returns
    -------
    list of (str, float)
        Label by :func:`devbook.tms.kgon.classify` and exact loss, in the order of ``kgons``.
    """

    def compute() -> list[list[Any]]:
        out = []
        for k, sigma in kgons:
            W, b, L = optimise_kgon(k, run.config["c"], sigma=sigma, max_iter=max_iter)
            out.append([classify(W, b).label, L])
        return out

    key = {"kgons": [list(map(int, p)) for p in kgons], "max_iter": max_iter, "version": 1}
    return [(label, float(L)) for label, L in run.cached("tms-kgons", key, compute)]


def plateau_analysis(
    run: Run, result: TrainResult, *, grad_tol: float
) -> tuple[list[list[Plateau]], list[str]]:
    """Every seed's labelled plateaus (:func:`devbook.tms.analysis.labelled_plateaus`) and the
    k-gon label of its last checkpoint, cached.

    Returns
    -------
    tuple
        ``(plateaus, final)``: one list of :class:`Plateau` per seed, and S labels.
    """

    def compute() -> dict[str, Any]:
        found = labelled_plateaus(result, grad_tol=grad_tol)
        final = [classify(result.W[-1, s], result.b[-1, s]).label for s in range(len(found))]
        return {"plateaus": [[asdict(p) for p in runs] for runs in found], "final": final}

    key = {
        "grad_tol": grad_tol,
        "slope_tol": PLATEAU_SLOPE_TOL,
        "min_decades": PLATEAU_MIN_DECADES,
        "version": 1,
    }
    out = run.cached("tms-plateaus", key, compute)
    return [[Plateau(**p) for p in runs] for runs in out["plateaus"]], list(out["final"])


@dataclass(frozen=True)
class LLCEstimate:
    """λ̂ of one seed at one checkpoint: ``mean`` and ``std`` over chains, split-R̂, whether
    it converged (R̂ ≤ ``devbook.llc.RHAT_MAX``) and the number of chains per diagnosis."""

    run: int
    ckpt: int
    mean: float
    std: float
    rhat: float
    converged: bool
    diagnoses: dict[str, int]


def _estimate(result: TrainResult, run: int, ckpt: int, sgld: SGLDPreset) -> dict[str, np.ndarray]:
    """One estimate with its LLC warnings caught (their content is in the diagnostics)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCConvergenceWarning)
        warnings.simplefilter("ignore", LLCDivergenceWarning)
        res = plateau_llc(result, run, ckpt, sgld.sgld_config(), seed=sgld.seed)
    codes = np.array([DIAGNOSES.index(d) for d in res.diagnosis], dtype=np.int64)
    return {
        "mean": np.array(res.mean),
        "std": np.array(res.std),
        "rhat": np.array(res.rhat),
        "converged": np.array(res.converged),
        "per_chain": res.per_chain,
        "diagnosis": codes,
    }


def llc_estimates(
    run: Run, result: TrainResult, points: Sequence[tuple[int, int]], sgld: SGLDPreset
) -> dict[tuple[int, int], LLCEstimate]:
    """λ̂ at each ``(seed index, checkpoint index)`` of ``points``, each cached in ``run``.

    Every estimate uses the seed's own training set and the same SGLD seed (``sgld.seed``);
    the SGLD warnings are caught and their content returned (``converged``, ``diagnoses``).

    Returns
    -------
    dict
        ``{(run, ckpt): LLCEstimate}``, in the order of ``points`` (duplicates once).
    """
    out: dict[tuple[int, int], LLCEstimate] = {}
    for s, i in points:
        key = {"sgld": sgld.to_dict(), "seed_index": int(s), "step": int(result.steps[i])}
        r = run.cached("tms-llc", key, lambda s=s, i=i: _estimate(result, s, i, sgld))
        counts = np.bincount(r["diagnosis"], minlength=len(DIAGNOSES))
        out[(int(s), int(i))] = LLCEstimate(
            int(s),
            int(i),
            float(r["mean"]),
            float(r["std"]),
            float(r["rhat"]),
            bool(r["converged"]),
            {d: int(c) for d, c in zip(DIAGNOSES, counts)},
        )
    return out


def llc_flags(estimates: dict[tuple[int, int], LLCEstimate]) -> dict[str, int]:
    """How many estimates did not converge, and the number of chains per diagnosis.

    Parameters
    ----------
    estimates : dict
        As returned by :func:`llc_estimates`.

    Returns
    -------
    dict
        ``estimates``, ``not_converged`` (split-R̂ above ``devbook.llc.RHAT_MAX``),
        ``not_converged_negative`` (of those, with λ̂ < 0), ``chains`` (in all) and one count
        per diagnosis of ``devbook.llc.DIAGNOSES`` (``ok`` means not flagged).
    """
    values = list(estimates.values())
    return {
        "estimates": len(values),
        "not_converged": sum(not e.converged for e in values),
        "not_converged_negative": sum(not e.converged and e.mean < 0 for e in values),
        "chains": sum(sum(e.diagnoses.values()) for e in values),
        **{d: sum(e.diagnoses[d] for e in values) for d in DIAGNOSES},
    }


def hessian_minima(run: Run, result: TrainResult, plateaus: Sequence[Plateau]) -> list[float]:
    """The smallest Hessian eigenvalue of the exact potential at the end of each plateau.

    Each is cached in ``run`` (:func:`devbook.tms.analysis.hessian_eigenvalues`).

    Parameters
    ----------
    run : devbook.store.Run
        The chapter's run.
    result : TrainResult
        Its checkpoints.
    plateaus : sequence of Plateau
        The plateaus.

    Returns
    -------
    list of float
        One per plateau.
    """

    def one(p: Plateau) -> float:
        W, b = result.W[p.end, p.run], result.b[p.end, p.run]
        return float(hessian_eigenvalues(W, b).min())

    return [
        float(
            run.cached(
                "tms-hessian-min",
                {"seed_index": p.run, "version": 1, "step": int(result.steps[p.end])},
                lambda p=p: one(p),
            )
        )
        for p in plateaus
    ]


def _posterior_key(run: Run, evals: dict[str, Any]) -> dict[str, Any]:
    names = ("posterior_ns", "posterior_chains", "posterior_steps", "posterior_draws", "posterior_swap_every")
    return {
        **{k: evals[k] for k in names},
        "seed": run.config["seed"],
        "c": run.config["c"],
        "r": run.config["r"],
        "version": 1,
    }


def tempered_posterior(run: Run, evals: dict[str, Any]) -> TemperedDraws:
    """Replica-exchange draws over the ladder ``evals["posterior_ns"]``, cached in ``run``.

    The data set D_N (N the top rung) is drawn from ``torch.Generator(seed + 7)``, the rungs
    use its nested prefixes D_n = D_N[:n], and the sampler
    (:func:`devbook.tms.posterior.sample_tempered`) is seeded with the run's seed.

    Parameters
    ----------
    run : devbook.store.Run
        The chapter's run (its ``seed``, ``r`` and ``c``).
    evals : dict
        An evaluation config (:data:`devbook.tms.config.EVAL_PRESETS`).

    Returns
    -------
    devbook.tms.posterior.TemperedDraws
        Bitwise the sampler's output.
    """
    cfg, ladder = run.config, list(evals["posterior_ns"])

    def compute() -> dict[str, np.ndarray]:
        g = torch.Generator().manual_seed(cfg["seed"] + POSTERIOR_DATA_OFFSET)
        data = sample_sparse(max(ladder), cfg["c"], generator=g)
        t = sample_tempered(
            data,
            ladder,
            num_chains=evals["posterior_chains"],
            num_steps=evals["posterior_steps"],
            num_draws=evals["posterior_draws"],
            swap_every=evals["posterior_swap_every"],
            r=cfg["r"],
            seed=cfg["seed"],
        )
        return {"W": t.W, "b": t.b, "swap_rate": t.swap_rate, "lowest_visits": t.lowest_visits}

    z = run.cached("tms-posterior", _posterior_key(run, evals), compute)
    return TemperedDraws(ladder, *(torch.from_numpy(z[k]) for k in ("W", "b", "swap_rate", "lowest_visits")))


def posterior_occupancy(
    run: Run, evals: dict[str, Any], tempered: TemperedDraws, *, threshold: float = 0.1
) -> pd.DataFrame:
    """The share of each k-gon phase at each rung, cached in ``run``.

    Parameters
    ----------
    run : devbook.store.Run
        The chapter's run.
    evals : dict
        The evaluation config ``tempered`` was drawn with (part of the cache key).
    tempered : devbook.tms.posterior.TemperedDraws
        As returned by :func:`tempered_posterior`.
    threshold : float
        Draws with exact potential above it are unclassified.

    Returns
    -------
    pandas.DataFrame
        :func:`devbook.tms.posterior.occupancy_table`.
    """
    key = {**_posterior_key(run, evals), "threshold": threshold}
    return run.cached("tms-occupancy", key, lambda: occupancy_table(tempered, threshold=threshold))
