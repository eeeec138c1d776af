"""SGLD estimator of the local learning coefficient (LLC), as specified in SPEC §1.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from devbook.progress import progress as tqdm

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]
DIAGNOSES = ("ok", "diverged", "not_converged", "escaped")

# Diagnosis constants (see _diagnose): a difference counts when it exceeds Z_SCORE standard
# errors and, for a trend, the online trace also moved by TREND_RTOL · max(|λ̂|, TREND_FLOOR).
# RHAT_MAX: split-R̂ above it means the chains have not mixed (the estimate is still drifting).
# Measured at the suggested settings of every devbook.known case (seeds 0-3): split-R̂ <= 1.10;
# with ε cut 100-200x and no burn-in: >= 1.37 (see tests/test_llc.py).
Z_SCORE = 3.0
TREND_RTOL = 0.1
TREND_FLOOR = 0.1
RHAT_MAX = 1.2


class LLCDivergenceWarning(UserWarning):
    """Some SGLD chains diverged and were left out of the estimate."""


class LLCConvergenceWarning(UserWarning):
    """The SGLD chains have not mixed (split-R̂ > RHAT_MAX): the estimate is still drifting."""


class LLCDivergenceError(RuntimeError):
    """Every SGLD chain diverged."""


def default_nbeta(batch_size: int) -> float:
    """The default inverse temperature nβ = m / log m for SGLD batch size m (SPEC §1)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 2:
        raise ValueError(f"default_nbeta needs an integer batch_size >= 2, got {batch_size!r}")
    return batch_size / math.log(batch_size)


def _check(name: str, value: Any, *, integer: bool, low: float, strict: bool) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ValueError(f"SGLDConfig.{name} must be a finite {'int' if integer else 'number'}, got {value!r}")
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
        return (f"LLC {self.mean:.4g} ± {self.std:.2g} (std over {int(self.kept.sum())} chains; "
                f"{counts}{drift}); L_n(w*) = {self.init_loss:.6g}, nβ = {self.nbeta:.4g}, "
                f"{self.config.num_chains}×{self.config.num_steps} steps in {self.seconds:.2f} s")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view (arrays as lists)."""
        out = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}
        out["config"] = asdict(self.config)
        return out


class _LossModule(nn.Module):
    """Wraps ``loss_fn(model, batch)`` as a module, so ``functional_call`` can swap parameters."""

    def __init__(self, model: nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


class _Schedule:
    """One chain's random streams, from two generators seeded by (seed, chain): shuffled epochs
    of batch indices (like a shuffled DataLoader with drop_last) and the injected N(0, I) noise.
    Both come in blocks of ``rows`` steps, so the vectorised path slices one (C, rows, ·) tensor
    per step; the block size depends only on (dim, m), so both paths see the same numbers."""

    def __init__(self, seed: int, chain: int, n: int, m: int, dim: int, like: torch.Tensor) -> None:
        state = np.random.SeedSequence([seed, chain]).generate_state(4, dtype=np.uint32)
        self.batch_gen = torch.Generator(device=like.device).manual_seed(int(state[0]) << 32 | int(state[1]))
        self.noise_gen = torch.Generator(device=like.device).manual_seed(int(state[2]) << 32 | int(state[3]))
        self.n, self.m, self.dim, self.like = n, m, dim, like
        self.rows = max(1, min(64, 2**20 // max(dim, m)))
        self.perm = torch.empty(0, dtype=torch.long, device=like.device)
        self.pos = n

    def block(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch indices (rows, m) and noise (rows, dim) for the next ``rows`` steps."""
        idx = []
        for _ in range(self.rows):
            if self.pos + self.m > self.n:
                self.perm = torch.randperm(self.n, generator=self.batch_gen, device=self.like.device)
                self.pos = 0
            idx.append(self.perm[self.pos:self.pos + self.m])
            self.pos += self.m
        noise = torch.randn(self.rows, self.dim, generator=self.noise_gen, dtype=self.like.dtype,
                            device=self.like.device)
        return torch.stack(idx), noise


def _validate_data(data: Any, batch_size: int) -> int:
    if not isinstance(data, tuple) or not data or not all(isinstance(t, torch.Tensor) for t in data):
        raise ValueError("data must be a non-empty tuple of tensors sharing their first dimension, "
                         f"got {type(data).__name__}")
    sizes = {t.shape[0] if t.dim() else None for t in data}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"data tensors must share their first dimension, got shapes {[tuple(t.shape) for t in data]}")
    n = sizes.pop()
    if batch_size > n:
        raise ValueError(f"SGLDConfig.batch_size={batch_size} exceeds the {n} samples in data; use batch_size <= {n}")
    return n


def _sem(x: np.ndarray) -> float:
    """Standard error of the mean of an autocorrelated series, by (up to) 4 batch means."""
    k = min(4, len(x))
    means = np.array([b.mean() for b in np.array_split(x, k)])
    return float(means.std(ddof=1) / math.sqrt(k))


def split_rhat(x: np.ndarray) -> float:
    """Split-R̂ (Gelman et al., BDA3 §11.4) of draws x (C, T): each chain is cut into halves and
    the variance between the 2C half-means is compared with the variance within them; it is
    ≈ 1 when the chains have mixed and larger when they still trend or disagree. nan when
    T < 8 or the draws are constant."""
    C, T = x.shape
    h = T // 2
    if h < 4:
        return float("nan")
    halves = np.concatenate([x[:, :h], x[:, T - h:]])  # (2C, h)
    within = halves.var(axis=1, ddof=1).mean()
    between = h * halves.mean(axis=1).var(ddof=1)
    if not within > 0:
        return float("nan")
    return float(math.sqrt(((h - 1) / h * within + between / h) / within))


def _diagnose(x: np.ndarray, diverged: np.ndarray) -> tuple[list[str], float]:
    """Diagnose each chain from its draws x[c, t] = nβ (L_t − L_n(w*)) (Figure 41 failure modes);
    also return the split-R̂ of the non-diverged chains.

    diverged (C,): set by the caller (non-finite or exploding loss). Otherwise, with q = T // 4
    (T >= 8; shorter chains are only checked for divergence), Q4 the mean of the last quarter
    of draws, H the mean of the rest, and se(·) standard errors from 4 batch means each:
    "escaped" when Q4 + Z_SCORE · se(Q4) < 0: the chain settled below L_n(w*) (a better
    optimum nearby; λ̂ < 0 beyond noise).
    "not_converged" when either
    (1) the online trace λ̂_t moved by more than TREND_RTOL · max(|λ̂_T|, TREND_FLOOR) over the
    last quarter and |Q4 − H| > Z_SCORE · hypot(se(H), se(Q4)): the chain's own draws still
    trend at the end. Sharp for real networks, whose loss sums many coordinates; weak for tiny
    models, where the slow wandering of one chain inflates its own standard errors; or
    (2) the chains have not mixed (split-R̂ > RHAT_MAX, a test across chains, which are
    independent) and this chain's online trace moved by more than TREND_RTOL · max(|λ̂_T|,
    TREND_FLOOR) over the last half.
    """
    out = ["diverged" if d else "ok" for d in diverged]
    T = x.shape[1]
    q = T // 4
    if q < 2:
        return out, float("nan")
    kept = np.flatnonzero(~diverged)
    rhat = split_rhat(x[kept])
    unmixed = rhat > RHAT_MAX
    h = T // 2
    for c in kept:
        head, q4 = x[c, :T - q], x[c, -q:]
        final, before, first_half = x[c].mean(), head.mean(), x[c, :h].mean()
        scale = TREND_RTOL * max(abs(final), TREND_FLOOR)
        if q4.mean() + Z_SCORE * _sem(q4) < 0:
            out[c] = "escaped"
        elif (abs(final - before) > scale
              and abs(q4.mean() - before) > Z_SCORE * math.hypot(_sem(head), _sem(q4))):
            out[c] = "not_converged"
        elif unmixed and abs(final - first_half) > scale:
            out[c] = "not_converged"
    return out, rhat


@torch.no_grad()
def _full_loss(loss_module: nn.Module, state: tuple[dict, dict], data: Batch, batch_size: int) -> float:
    """L_n over all of ``data``, in batches, weighting each batch mean by its size."""
    n = data[0].shape[0]
    total = 0.0
    for start in range(0, n, batch_size):
        batch = tuple(t[start:start + batch_size] for t in data)
        loss = functional_call(loss_module, state, (batch,))
        total += float(loss) * batch[0].shape[0]
    return total / n


@torch.no_grad()
def _minibatch_noise(loss_module: nn.Module, state: tuple[dict, dict], data: Batch, m: int) -> float:
    """Std of the loss over up to 8 disjoint size-m batches at w* (0 when m = n)."""
    k = min(8, data[0].shape[0] // m)
    if k < 2:
        return 0.0
    losses = [float(functional_call(loss_module, state, (tuple(t[i * m:(i + 1) * m] for t in data),)))
              for i in range(k)]
    return float(np.std(losses, ddof=1))


def estimate_llc(model: nn.Module, loss_fn: LossFn, data: Batch, config: SGLDConfig, *, seed: int,
                 vectorize: bool = True, progress: bool = False) -> LLCResult:
    """Estimate the LLC of ``model`` at its current parameters w* (SPEC §1).

    model: any nn.Module; its parameters with requires_grad are sampled, the rest (and buffers)
    are held fixed; the model itself is never modified (buffers are used as copies). It is
    called in its current train/eval mode: use ``model.eval()`` for dropout or batch norm.
    loss_fn(model, batch) -> scalar mean loss on ``batch``, a tuple shaped like ``data``.
    data: tuple of tensors sharing the first dimension n. seed: int >= 0; chain c's batch
    schedule and noise come from a generator seeded by (seed, c), so the vectorised path
    (one vmap over chains) and the sequential path give the same numbers. If vmap fails for
    this model, a warning is issued and the chains run sequentially.
    """
    if not isinstance(config, SGLDConfig):
        raise ValueError(f"config must be an SGLDConfig, got {type(config).__name__}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    n = _validate_data(data, config.batch_size)
    named = [(k, p) for k, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no parameters with requires_grad=True to sample over")
    like = named[0][1]
    if any(p.dtype != like.dtype or p.device != like.device for _, p in named):
        raise ValueError("all sampled parameters must share one dtype and device")
    names = ["model." + k for k, _ in named]
    shapes = [p.shape for _, p in named]
    numels = [p.numel() for _, p in named]
    w_star = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
    dim = w_star.numel()
    fixed = {"model." + k: v.detach().clone() for k, v in model.named_buffers()}
    fixed.update({"model." + k: p.detach().clone() for k, p in model.named_parameters() if not p.requires_grad})
    loss_module = _LossModule(model, loss_fn)

    def loss_of(w: torch.Tensor, batch: Batch) -> torch.Tensor:
        params = {k: v.reshape(s) for k, v, s in zip(names, torch.split(w, numels), shapes)}
        return functional_call(loss_module, (params, fixed), (batch,))

    def grad_one(w: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        w = w.detach().requires_grad_(True)
        loss = loss_of(w, batch)
        (g,) = torch.autograd.grad(loss, w)
        return g, loss.detach()

    batched_loss = vmap(loss_of)

    def grad_chains(w: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        # Chains are independent, so the gradient of the summed loss is each chain's gradient.
        w = w.detach().requires_grad_(True)
        loss = batched_loss(w, batch)
        (g,) = torch.autograd.grad(loss.sum(), w)
        return g, loss.detach()

    cfg = config
    C, m = cfg.num_chains, cfg.batch_size
    star_params = {k: v.reshape(s) for k, v, s in zip(names, torch.split(w_star, numels), shapes)}
    init_loss = _full_loss(loss_module, (star_params, fixed), data, cfg.init_loss_batch_size)
    if not math.isfinite(init_loss):
        raise ValueError(f"L_n(w*) is not finite ({init_loss}); the model or loss_fn is broken at w*")

    half_eps, root_eps = cfg.epsilon / 2, math.sqrt(cfg.epsilon)
    nbeta, gamma = cfg.nbeta, cfg.gamma

    def update(w: torch.Tensor, g: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        # Written once and shared by both paths, so they do the same arithmetic.
        return w + half_eps * (-nbeta * g - gamma * (w - w_star)) + root_eps * noise

    def streams() -> list[_Schedule]:
        return [_Schedule(seed, c, n, m, dim, like) for c in range(C)]

    losses = torch.empty(C, cfg.num_steps, dtype=like.dtype, device=like.device)
    start = time.perf_counter()
    if vectorize:
        schedules, w = streams(), w_star.unsqueeze(0).repeat(C, 1)
        rows = schedules[0].rows
        # torch's CPU generators are serial; each chain owns its generators, so drawing the
        # chains' blocks in threads is deterministic and uses the idle cores.
        with ThreadPoolExecutor(max(1, min(C, torch.get_num_threads()))) as pool:
            for t in tqdm(range(cfg.num_steps), desc="SGLD", disable=not progress):
                if t % rows == 0:
                    blocks = list(pool.map(_Schedule.block, schedules))
                    idx_block = torch.stack([b[0] for b in blocks], 1)  # (rows, C, m)
                    noise_block = torch.stack([b[1] for b in blocks], 1)  # (rows, C, dim)
                idx, noise = idx_block[t % rows], noise_block[t % rows]
                batch = tuple(x.index_select(0, idx.reshape(-1)).view(C, m, *x.shape[1:]) for x in data)
                try:
                    g, loss = grad_chains(w, batch)
                except Exception as err:  # noqa: BLE001 - any vmap failure means: use the sequential path
                    if t > 0:  # the first step is the vmap probe; later failures are real errors
                        raise
                    warnings.warn(f"vmap over chains failed for this model ({type(err).__name__}: {err}); "
                                  "running the chains sequentially", stacklevel=2)
                    vectorize = False
                    break
                losses[:, t] = loss
                w = update(w, g, noise)
    if not vectorize:  # fresh streams, so a failed vmap probe leaves no trace in the numbers
        schedules = streams()
        for c in tqdm(range(C), desc="SGLD chains", disable=not progress):
            w = w_star.clone()
            for t in range(cfg.num_steps):
                if t % schedules[c].rows == 0:
                    idx_block, noise_block = schedules[c].block()
                idx, noise = idx_block[t % schedules[c].rows], noise_block[t % schedules[c].rows]
                g, loss = grad_one(w, tuple(x.index_select(0, idx) for x in data))
                losses[c, t] = loss
                w = update(w, g, noise)
    seconds = time.perf_counter() - start

    all_losses = losses.double().cpu().numpy()
    draw_steps = cfg.num_burnin + cfg.steps_per_draw * np.arange(1, cfg.num_draws + 1) - 1
    loss_trace = all_losses[:, draw_steps]
    threshold = cfg.divergence_threshold
    if threshold is None:
        threshold = 10.0 * max(dim, 10) + 10.0 * nbeta * _minibatch_noise(loss_module, (star_params, fixed), data, m)
    x_all = nbeta * (all_losses - init_loss)
    reasons: dict[int, str] = {}
    for c in range(C):
        bad = np.flatnonzero(~np.isfinite(x_all[c]))
        big = np.flatnonzero(np.where(np.isfinite(x_all[c]), x_all[c], -np.inf) > threshold)
        if bad.size and (not big.size or bad[0] <= big[0]):
            reasons[c] = f"chain {c}: non-finite loss at step {bad[0]}"
        elif big.size:
            reasons[c] = (f"chain {c}: nβ·(L − L_n(w*)) = {x_all[c, big[0]]:.3g} > "
                          f"divergence_threshold {threshold:.3g} at step {big[0]}")
    if len(reasons) == C:
        raise LLCDivergenceError(f"all {C} SGLD chains diverged ({'; '.join(reasons.values())}); "
                                 f"try a smaller epsilon than {cfg.epsilon:g}")
    if reasons:
        warnings.warn(f"SGLD chains {sorted(reasons)} diverged and are excluded from the estimate "
                      f"({'; '.join(reasons.values())}); consider a smaller epsilon than {cfg.epsilon:g}",
                      LLCDivergenceWarning, stacklevel=2)

    x = nbeta * (loss_trace - init_loss)
    with np.errstate(invalid="ignore", over="ignore"):
        per_chain = x.mean(axis=1)
        online = np.cumsum(x, axis=1) / np.arange(1, cfg.num_draws + 1)
    kept = np.array([c not in reasons for c in range(C)])
    diagnosis, rhat = _diagnose(x, ~kept)
    converged = not rhat > RHAT_MAX
    if not converged:
        warnings.warn(f"the estimate is still drifting: the SGLD chains have not mixed (split-R̂ = "
                      f"{rhat:.3g} > {RHAT_MAX}; {diagnosis.count('not_converged')} of {C} chains "
                      "not_converged): increase num_draws or epsilon (or add burn-in)",
                      LLCConvergenceWarning, stacklevel=2)
    good = per_chain[kept]
    return LLCResult(
        mean=float(good.mean()), std=float(good.std(ddof=1)) if good.size > 1 else float("nan"),
        per_chain=per_chain, init_loss=init_loss, loss_trace=loss_trace,
        llc_trace=online[kept].mean(axis=0), llc_trace_per_chain=online, diagnosis=diagnosis,
        config=cfg, nbeta=nbeta, seed=int(seed), vectorized=vectorize, num_params=dim, seconds=seconds,
        rhat=rhat, converged=converged)
