"""SGLD estimator of the local learning coefficient (LLC) (paper §3.1, App. A.4, E.3).

    λ̂(w*) = nβ · ( E_w[L_n(w)] − L_n(w*) ),   p(w) ∝ exp(−nβ L_n(w) − γ/2 ||w − w*||²)

sampled with minibatch SGLD (paper A.4, E.3). Each step, for every chain,

    Δw_t = (ε/2) · ( −nβ ∇L_m^{B_t}(w_t) − γ (w_t − w*) ) + N(0, ε I),

and the expectation is the mean of the minibatch losses L_m^{B_t}(w_t) recycled from the
steps (evaluated before the update), after burn-in. All chains run together in one
``torch.func.vmap`` over a (chains × parameters) matrix; a sequential path gives the same
numbers for the same seed. Every chain draws its batch schedule and its noise from its own
``torch.Generator``, seeded from (seed, chain index): same seed, same numbers.

Used by book/theory/llc.md (known cases and failure modes), the regression and language
chapters (LLC over training) and benchmarks/llc_vs_devinterp.py.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from devbook.diagnostics import DIAGNOSES, RHAT_MAX, TREND_FLOOR, TREND_RTOL, Z_SCORE, diagnose, split_rhat
from devbook.sgld import (
    Batch,
    LossFn,
    _full_loss,
    _minibatch_noise,
    _Posterior,
    _validate_data,
    run_chains_sequential,
    run_chains_vectorized,
    sgld_step,
)

if TYPE_CHECKING:
    from devbook.calibration import Grid

__all__ = [
    "DIAGNOSES",
    "RHAT_MAX",
    "TREND_FLOOR",
    "TREND_RTOL",
    "Z_SCORE",
    "LLCConvergenceWarning",
    "LLCDivergenceError",
    "LLCDivergenceWarning",
    "LLCResult",
    "SGLDConfig",
    "default_nbeta",
    "divergent_chains",
    "estimate_llc",
    "estimate_llc_grid",
    "run_chains_sequential",
    "run_chains_vectorized",
    "sgld_step",
    "split_rhat",
]


class LLCDivergenceWarning(UserWarning):
    """Some SGLD chains diverged and were left out of the estimate."""


class LLCConvergenceWarning(UserWarning):
    """The SGLD chains have not mixed (split-R̂ > RHAT_MAX): the estimate is still drifting."""


class LLCDivergenceError(RuntimeError):
    """Every SGLD chain diverged."""


def default_nbeta(batch_size: int) -> float:
    """The default inverse temperature nβ = m / log m for SGLD batch size m (paper App. E.3.1)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 2:
        raise ValueError(f"default_nbeta needs an integer batch_size >= 2, got {batch_size!r}")
    return batch_size / math.log(batch_size)


def _check(name: str, value: Any, *, integer: bool, low: float, strict: bool) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ValueError(
            f"SGLDConfig.{name} must be a finite {'int' if integer else 'number'}, got {value!r}"
        )
    if value < low or (strict and value == low):
        raise ValueError(f"SGLDConfig.{name} must be {'>' if strict else '>='} {low}, got {value!r}")


@dataclass(frozen=True)
class SGLDConfig:
    """Hyperparameters of one LLC estimate.

    epsilon: step size ε (> 0). gamma: localization strength γ (>= 0). nbeta: nβ (> 0);
    see :func:`default_nbeta`. num_chains, num_draws: chains C and kept draws T per chain
    (>= 1). num_burnin: steps discarded before the first draw (>= 0). steps_per_draw:
    thinning (>= 1). batch_size: SGLD minibatch size m (>= 1, at most the number of samples).
    divergence_threshold: a chain diverges when a draw has nβ·(L_t − L_n(w*)) above it
    (None: 10·max(d, 10) + 10·nβ·σ_m for d parameters and σ_m the std of the loss over
    size-m batches at w*; λ ≤ d/2 always, so this is far beyond any sound draw). init_loss_batch_size: batch size for computing L_n(w*) over the whole data set.
    Each chain makes num_burnin + num_draws · steps_per_draw SGLD steps.
    """

    epsilon: float
    gamma: float
    nbeta: float
    num_chains: int
    num_draws: int
    num_burnin: int = 0
    batch_size: int = 1024
    steps_per_draw: int = 1
    divergence_threshold: float | None = None
    init_loss_batch_size: int = 4096

    def __post_init__(self) -> None:
        _check("epsilon", self.epsilon, integer=False, low=0.0, strict=True)
        _check("gamma", self.gamma, integer=False, low=0.0, strict=False)
        _check("nbeta", self.nbeta, integer=False, low=0.0, strict=True)
        _check("num_chains", self.num_chains, integer=True, low=1, strict=False)
        _check("num_draws", self.num_draws, integer=True, low=1, strict=False)
        _check("num_burnin", self.num_burnin, integer=True, low=0, strict=False)
        _check("batch_size", self.batch_size, integer=True, low=1, strict=False)
        _check("steps_per_draw", self.steps_per_draw, integer=True, low=1, strict=False)
        _check("init_loss_batch_size", self.init_loss_batch_size, integer=True, low=1, strict=False)
        if self.divergence_threshold is not None:
            _check("divergence_threshold", self.divergence_threshold, integer=False, low=0.0, strict=True)

    @property
    def num_steps(self) -> int:
        """SGLD steps per chain, burn-in included."""
        return self.num_burnin + self.num_draws * self.steps_per_draw


@dataclass
class LLCResult:
    """An LLC estimate with its traces. Shapes: C chains, T draws.

    mean, std: over the chains that did not diverge (std with ddof=1; nan for one chain).
    per_chain (C,): λ̂_c = nβ (mean_t L_t^{(c)} − L_n(w*)). loss_trace (C, T): recycled
    minibatch losses. llc_trace_per_chain (C, T): online estimate nβ (mean_{s≤t} L_s − L_n(w*))
    (E.3.4); llc_trace (T,): its mean over non-diverged chains (llc_trace[-1] == mean).
    diagnosis: per chain, one of DIAGNOSES. rhat: split-R̂ of the draws of the non-diverged
    chains (nan when undefined: T < 8 or constant draws); converged: rhat <= RHAT_MAX (or nan).
    """

    mean: float
    std: float
    per_chain: np.ndarray
    init_loss: float
    loss_trace: np.ndarray
    llc_trace: np.ndarray
    llc_trace_per_chain: np.ndarray
    diagnosis: list[str]
    config: SGLDConfig
    nbeta: float
    seed: int
    vectorized: bool
    num_params: int
    seconds: float
    rhat: float = float("nan")
    converged: bool = True

    @property
    def kept(self) -> np.ndarray:
        """Boolean mask (C,) of the chains used for mean/std (those that did not diverge)."""
        return np.array([d != "diverged" for d in self.diagnosis])

    def summary(self) -> str:
        counts = {d: self.diagnosis.count(d) for d in DIAGNOSES if d in self.diagnosis}
        drift = "" if self.converged else f"; NOT CONVERGED, split-R̂ = {self.rhat:.3g}"
        return (
            f"LLC {self.mean:.4g} ± {self.std:.2g} (std over {int(self.kept.sum())} chains; "
            f"{counts}{drift}); L_n(w*) = {self.init_loss:.6g}, nβ = {self.nbeta:.4g}, "
            f"{self.config.num_chains}×{self.config.num_steps} steps in {self.seconds:.2f} s"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (arrays as lists)."""
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        out["config"] = asdict(self.config)
        return out


def divergent_chains(x_all: np.ndarray, threshold: float) -> dict[int, str]:
    """Chains whose draws ``x_all[c, t] = nβ (L_t − L_n(w*))`` go non-finite or above ``threshold``.

    Returns ``{chain: reason}``, the reason naming the first offending step.
    """
    reasons: dict[int, str] = {}
    for c in range(x_all.shape[0]):
        bad = np.flatnonzero(~np.isfinite(x_all[c]))
        big = np.flatnonzero(np.where(np.isfinite(x_all[c]), x_all[c], -np.inf) > threshold)
        if bad.size and (not big.size or bad[0] <= big[0]):
            reasons[c] = f"chain {c}: non-finite loss at step {bad[0]}"
        elif big.size:
            reasons[c] = (
                f"chain {c}: nβ·(L − L_n(w*)) = {x_all[c, big[0]]:.3g} > "
                f"divergence_threshold {threshold:.3g} at step {big[0]}"
            )
    return reasons


def _check_inputs(config: Any, seed: Any) -> None:
    if not isinstance(config, SGLDConfig):
        raise ValueError(f"config must be an SGLDConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


def _prepare(
    model: nn.Module, loss_fn: LossFn, data: Batch, config: SGLDConfig, seed: int
) -> tuple[_Posterior, float]:
    """Checked inputs, the posterior around w* and L_n(w*) (which must be finite)."""
    _check_inputs(config, seed)
    _validate_data(data, config.batch_size)
    post = _Posterior(model, loss_fn)
    init_loss = _full_loss(post.module, post.state(post.w_star), data, config.init_loss_batch_size)
    if not math.isfinite(init_loss):
        raise ValueError(f"L_n(w*) is not finite ({init_loss}); the model or loss_fn is broken at w*")
    return post, init_loss


def _check_grid(grid: Any) -> None:
    from devbook.calibration import Grid  # noqa: PLC0415 (devbook.calibration imports this module)

    if not isinstance(grid, Grid):
        raise ValueError(f"grid must be a devbook.calibration.Grid, got {type(grid).__name__}")


def _draw_steps(config: SGLDConfig) -> np.ndarray:
    """The SGLD steps whose losses are the kept draws (after burn-in, every ``steps_per_draw``)."""
    return config.num_burnin + config.steps_per_draw * np.arange(1, config.num_draws + 1) - 1


def _default_threshold(dim: int, nbeta: float, noise: float) -> float:
    """The divergence threshold on nβ·(L − L_n(w*)) when the config sets none."""
    return 10.0 * max(dim, 10) + 10.0 * nbeta * noise


def _flag_divergences(
    post: _Posterior, data: Batch, cfg: SGLDConfig, all_losses: np.ndarray, init_loss: float
) -> dict[int, str]:
    """Divergent chains (see :func:`divergent_chains`); warn about some, raise if all."""
    threshold = cfg.divergence_threshold
    if threshold is None:
        noise = _minibatch_noise(post.module, post.state(post.w_star), data, cfg.batch_size)
        threshold = _default_threshold(post.dim, cfg.nbeta, noise)
    reasons = divergent_chains(cfg.nbeta * (all_losses - init_loss), threshold)
    C = cfg.num_chains
    if len(reasons) == C:
        raise LLCDivergenceError(
            f"all {C} SGLD chains diverged ({'; '.join(reasons.values())}); "
            f"try a smaller epsilon than {cfg.epsilon:g}"
        )
    if reasons:
        warnings.warn(
            f"SGLD chains {sorted(reasons)} diverged and are excluded from the estimate "
            f"({'; '.join(reasons.values())}); consider a smaller epsilon than {cfg.epsilon:g}",
            LLCDivergenceWarning,
            stacklevel=3,
        )
    return reasons


def _assemble(
    loss_trace: np.ndarray, init_loss: float, diverged: np.ndarray, cfg: SGLDConfig, **info: Any
) -> LLCResult:
    """The :class:`LLCResult` of the kept draws ``loss_trace`` (C, T); diagnoses every chain."""
    C = cfg.num_chains
    x = cfg.nbeta * (loss_trace - init_loss)
    with np.errstate(invalid="ignore", over="ignore"):
        per_chain = x.mean(axis=1)
        online = np.cumsum(x, axis=1) / np.arange(1, cfg.num_draws + 1)
    kept = ~diverged
    diagnosis, rhat = diagnose(x, diverged)
    converged = not rhat > RHAT_MAX
    if not converged:
        warnings.warn(
            f"the estimate is still drifting: the SGLD chains have not mixed (split-R̂ = "
            f"{rhat:.3g} > {RHAT_MAX}; {diagnosis.count('not_converged')} of {C} chains "
            "not_converged): increase num_draws or epsilon (or add burn-in)",
            LLCConvergenceWarning,
            stacklevel=3,
        )
    good = per_chain[kept]
    return LLCResult(
        mean=float(good.mean()),
        std=float(good.std(ddof=1)) if good.size > 1 else float("nan"),
        per_chain=per_chain,
        init_loss=init_loss,
        loss_trace=loss_trace,
        llc_trace=online[kept].mean(axis=0),
        llc_trace_per_chain=online,
        diagnosis=diagnosis,
        config=cfg,
        nbeta=cfg.nbeta,
        rhat=rhat,
        converged=converged,
        **info,
    )


def estimate_llc(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch,
    config: SGLDConfig,
    *,
    seed: int,
    vectorize: bool = True,
    progress: bool = False,
) -> LLCResult:
    """Estimate the LLC of ``model`` at its current parameters w* (paper §3.1, App. A.4).

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters with ``requires_grad`` are sampled, the rest (and buffers) held fixed; the
        model itself is never modified. It is called in its current train/eval mode.
    loss_fn : callable
        ``loss_fn(model, batch) -> scalar`` mean loss on ``batch``, a tuple shaped like ``data``.
    data : tuple of torch.Tensor
        Tensors sharing their first dimension n.
    config : SGLDConfig
        The sampler's hyperparameters.
    seed : int
        Chain c's batch schedule and noise come from a generator seeded by (seed, c), so the
        vectorised path (one vmap over chains) and the sequential path give the same numbers.
    vectorize : bool
        Run the chains in one ``vmap``; if vmap fails for this model, a warning is issued and
        the chains run sequentially.
    progress : bool
        Show a progress bar.

    Returns
    -------
    LLCResult
        The estimate, its traces and the chains' diagnoses. Diverged chains are excluded
        (``LLCDivergenceWarning``); unmixed chains raise ``LLCConvergenceWarning``; if every chain
        diverges, ``LLCDivergenceError``.
    """
    post, init_loss = _prepare(model, loss_fn, data, config, seed)
    start = time.perf_counter()
    losses = run_chains_vectorized(post, data, config, seed, progress=progress) if vectorize else None
    vectorized = losses is not None
    if losses is None:  # fresh streams, so a failed vmap probe leaves no trace in the numbers
        losses = run_chains_sequential(post, data, config, seed, progress=progress)
    seconds = time.perf_counter() - start
    all_losses = losses.double().cpu().numpy()
    reasons = _flag_divergences(post, data, config, all_losses, init_loss)
    diverged = np.array([c in reasons for c in range(config.num_chains)])
    return _assemble(
        all_losses[:, _draw_steps(config)],
        init_loss,
        diverged,
        config,
        seed=int(seed),
        vectorized=vectorized,
        num_params=post.dim,
        seconds=seconds,
    )


def estimate_llc_grid(
    model: nn.Module,
    loss_fn: LossFn,
    data: Batch,
    config: SGLDConfig,
    grid: Grid,
    *,
    seed: int,
    vectorize: bool = True,
) -> list[LLCResult]:
    """The LLC estimate of every cell of a calibration grid, all cells' chains in one ``vmap``.

    Parameters
    ----------
    model, loss_fn, data, seed :
        As in :func:`estimate_llc`.
    config : SGLDConfig
        Chains, draws, burn-in, batch size (shared by every cell); its ε, nβ, γ are replaced by
        each cell's.
    grid : devbook.calibration.Grid
        The K cells (ε, nβ, γ).
    vectorize : bool
        Run the K·C chains in one ``vmap`` (else, or when vmap cannot run the model, one cell
        after another with sequential chains: the same numbers).

    Returns
    -------
    list of LLCResult
        Cell k's result is the :func:`estimate_llc` of ``grid.config(config, k)`` with the same
        ``seed`` (every cell sees the same batches and noise), except that divergences are
        recorded instead of warned about or raised: a cell whose chains all diverged has mean nan.
    """
    _check_inputs(config, seed)
    _check_grid(grid)
    post, init_loss = _prepare(model, loss_fn, data, config, seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        losses = run_chains_vectorized(post, data, config, seed, cells=grid.values()) if vectorize else None
    vectorized = losses is not None
    if losses is None:
        losses = torch.cat(
            [run_chains_sequential(post, data, grid.config(config, k), seed) for k in range(len(grid))]
        )
    seconds = time.perf_counter() - start
    all_losses = losses.double().cpu().numpy()
    noise = _minibatch_noise(post.module, post.state(post.w_star), data, config.batch_size)
    C = config.num_chains
    return [
        _grid_cell(
            all_losses[k * C : (k + 1) * C],
            init_loss,
            grid.config(config, k),
            post.dim,
            noise,
            seed=int(seed),
            vectorized=vectorized,
            seconds=seconds / len(grid),
        )
        for k in range(len(grid))
    ]


def _grid_cell(
    cell: np.ndarray,
    init_loss: float,
    cfg: SGLDConfig,
    dim: int,
    noise: float,
    *,
    seed: int,
    vectorized: bool,
    seconds: float,
) -> LLCResult:
    """One cell's result from its chains' losses ``(C, steps)``: divergences recorded, not raised."""
    threshold = cfg.divergence_threshold
    if threshold is None:
        threshold = _default_threshold(dim, cfg.nbeta, noise)
    with np.errstate(over="ignore", invalid="ignore"):
        reasons = divergent_chains(cfg.nbeta * (cell - init_loss), threshold)
    diverged = np.array([c in reasons for c in range(cfg.num_chains)])
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return _assemble(
            cell[:, _draw_steps(cfg)],
            init_loss,
            diverged,
            cfg,
            seed=seed,
            vectorized=vectorized,
            num_params=dim,
            seconds=seconds,
        )
