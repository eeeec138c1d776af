"""Diagnosis of SGLD chains from their draws: the failure modes of paper Figure 41 (App. E.3.4)
and the split-R̂ convergence check across chains. Used by :func:`devbook.llc.estimate_llc`.
"""

from __future__ import annotations

import math

import numpy as np

DIAGNOSES = ("ok", "diverged", "not_converged", "escaped")

# Diagnosis constants (see diagnose): a difference counts when it exceeds Z_SCORE standard
# errors and, for a trend, the online trace also moved by TREND_RTOL · max(|λ̂|, TREND_FLOOR).
# RHAT_MAX: split-R̂ above it means the chains have not mixed (the estimate is still drifting).
# Measured at the suggested settings of every devbook.known case (seeds 0-3): split-R̂ <= 1.10;
# with ε cut 100-200x and no burn-in: >= 1.37 (see tests/test_llc.py).
Z_SCORE = 3.0
TREND_RTOL = 0.1
TREND_FLOOR = 0.1
RHAT_MAX = 1.2


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
    halves = np.concatenate([x[:, :h], x[:, T - h :]])  # (2C, h)
    within = halves.var(axis=1, ddof=1).mean()
    between = h * halves.mean(axis=1).var(ddof=1)
    if not within > 0:
        return float("nan")
    return float(math.sqrt(((h - 1) / h * within + between / h) / within))


def diagnose(x: np.ndarray, diverged: np.ndarray) -> tuple[list[str], float]:
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
        head, q4 = x[c, : T - q], x[c, -q:]
        final, before, first_half = x[c].mean(), head.mean(), x[c, :h].mean()
        scale = TREND_RTOL * max(abs(final), TREND_FLOOR)
        if q4.mean() + Z_SCORE * _sem(q4) < 0:
            out[c] = "escaped"
        elif abs(final - before) > scale and abs(q4.mean() - before) > Z_SCORE * math.hypot(
            _sem(head), _sem(q4)
        ):
            out[c] = "not_converged"
        elif unmixed and abs(final - first_half) > scale:
            out[c] = "not_converged"
    return out, rhat
