"""Computations and figures of the theory chapter, book/theory/llc.md.

The chapter measures the local learning coefficient λ on models where it is known exactly
(:mod:`devbook.known`), in four steps, and this module holds the code behind each:

- *what λ measures* (paper App. A.1, Figure 7): :func:`potential_on`, :func:`sublevel_area`
  (area of {K < ε} by quadrature), :func:`loglog_slope`, :func:`hessian_eigenvalues`,
  :func:`potential_table`;
- *the SGLD estimator on the known cases* (paper App. A.4): :func:`estimate_quietly` (one
  :func:`devbook.llc.estimate_llc` call with its warnings captured, so the page prints none),
  :func:`flag_note` (what the estimator flagged, as a sentence for the text),
  :func:`known_case_table`, :func:`known_summary`;
- *how the estimator fails* (paper E.3.4, Figure 41): :func:`find_partial_divergence` (the
  step-size sweep), :func:`escape_start`, :func:`start_at`, :func:`scenario_table`,
  :func:`failure_numbers`, :func:`divergence_note`;
- *the free energy and the two types of transition* (paper App. A.2): :func:`free_energy`,
  :func:`n_critical`, :func:`transition_numbers`.

Its figures are in :mod:`devbook.theory_plots`.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.integrate import trapezoid
from scipy.optimize import brentq

from devbook import known, llc

Phase = tuple[float, float, float]  # (loss L, learning coefficient λ, constant-order term c)

# ----------------------------------------------------------------------------------------
# What the LLC measures: two-parameter potentials


def _potential_model(case: known.KnownCase) -> known.Potential:
    if not isinstance(case.model, known.Potential):
        raise ValueError(f"{case.name} is not a potential case (quadratic, power_sum, normal_crossing)")
    return case.model


def potential_on(case: known.KnownCase, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """K(w1, w2) of a two-parameter potential case, on arrays of any (equal) shape.

    Parameters
    ----------
    case
        A two-parameter potential case of :mod:`devbook.known`.
    w1, w2
        Coordinates, broadcast-compatible arrays of the same shape.

    Returns
    -------
    numpy.ndarray
        K at each point, with the shape of ``w1``.
    """
    model = _potential_model(case)
    w = torch.as_tensor(np.stack([w1, w2], axis=-1).reshape(-1, 2), dtype=torch.float64)
    with torch.no_grad():
        return torch.vmap(model.potential)(w).numpy().reshape(np.shape(w1))


def _sublevel_halfwidth(
    case: known.KnownCase, w1: np.ndarray, eps: np.ndarray, steps: int = 45
) -> np.ndarray:
    """The t in [0, 1] with K(w1, w2) < eps exactly for |w2| < t (bisection, ``steps`` halvings).

    ``w1`` and ``eps`` broadcast to one shape; K must be even and nondecreasing in |w2|.
    """
    W1 = np.broadcast_to(w1, np.broadcast_shapes(np.shape(w1), np.shape(eps)))
    lo, hi = np.zeros_like(W1), np.ones_like(W1)
    for _ in range(steps):
        mid = (lo + hi) / 2
        below = potential_on(case, W1, mid) < eps
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.where(potential_on(case, W1, np.ones_like(W1)) < eps, 1.0, lo)


def sublevel_area(case: known.KnownCase, eps: np.ndarray, n_grid: int) -> np.ndarray:
    """Area of {w in [-1, 1]^2 : K(w) < eps} for each eps, by quadrature over w1.

    For each w1 the admissible w2 form an interval [-t, t] (K even and nondecreasing in
    |w2|, as for every potential of :mod:`devbook.known`); t is found by bisection and 2t
    integrated over w1 on a grid that is dense near 0 (K must also be even in w1).

    Parameters
    ----------
    case
        A two-parameter potential case.
    eps
        Levels, shape (E,).
    n_grid
        Points of each of the two w1 grids (geometric from 1e-12 and linear from 0, to 1).

    Returns
    -------
    numpy.ndarray
        The areas, shape (E,).
    """
    w1 = np.unique(np.concatenate([np.geomspace(1e-12, 1.0, n_grid), np.linspace(0, 1, n_grid)]))
    eps = np.asarray(eps)
    t = _sublevel_halfwidth(case, np.broadcast_to(w1, (len(eps), len(w1))), eps[:, None])
    return 2 * trapezoid(2 * t, w1, axis=1)  # 2 x: w1 in [-1, 0] mirrors [0, 1]


def loglog_slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of log y against log x (the exponent of a power law y ~ x^s)."""
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def hessian_eigenvalues(case: known.KnownCase) -> np.ndarray:
    """Eigenvalues (ascending) of the Hessian of K at the case's w* (the origin)."""
    model = _potential_model(case)
    w0 = case.w_star["w"]
    return np.linalg.eigvalsh(torch.autograd.functional.hessian(model.potential, w0).numpy())


def half_hessian_rank(eigenvalues: np.ndarray, tol: float = 1e-9) -> float:
    """Half the number of eigenvalues with |e| > tol: λ if the loss were its quadratic part."""
    return 0.5 * int((np.abs(eigenvalues) > tol).sum())


def potential_table(
    potentials: Mapping[str, known.KnownCase],
    volume_slope: Mapping[str, float],
    estimates: Mapping[str, llc.LLCResult],
) -> pd.DataFrame:
    """Hessian, exact λ, volume slope and SGLD estimate of each potential, one row per name.

    Parameters
    ----------
    potentials
        Label -> two-parameter potential case.
    volume_slope
        Label -> :func:`loglog_slope` of its sublevel areas.
    estimates
        Label -> its SGLD estimate.

    Returns
    -------
    pandas.DataFrame
        Columns ``potential``, ``Hessian eigenvalues`` (text), ``½ rank(H)``, ``exact λ``,
        ``volume slope``, ``SGLD λ̂``, ``± std``.
    """
    hessians = {name: hessian_eigenvalues(case) for name, case in potentials.items()}
    return pd.DataFrame(
        {
            "potential": list(potentials),
            "Hessian eigenvalues": [", ".join(f"{e:g}" for e in ev) for ev in hessians.values()],
            "½ rank(H)": [half_hessian_rank(ev) for ev in hessians.values()],
            "exact λ": [c.true_lambda for c in potentials.values()],
            "volume slope": [volume_slope[k] for k in potentials],
            "SGLD λ̂": [estimates[k].mean for k in potentials],
            "± std": [estimates[k].std for k in potentials],
        }
    )


# ----------------------------------------------------------------------------------------
# The estimator on the known cases


@dataclass
class Estimate:
    """One :func:`devbook.llc.estimate_llc` call: its result (None if every chain diverged)
    and the messages of the warnings (or of the error) it raised, in order."""

    result: llc.LLCResult | None
    messages: list[str] = field(default_factory=list)


def estimate_quietly(case: known.KnownCase, *, seed: int, **settings: Any) -> Estimate:
    """estimate_llc on ``case`` with its suggested SGLD settings, ``settings`` overriding them.

    Every warning is captured instead of printed (the chapter says in its text what the
    estimator flagged, from the result: see :func:`flag_note`), and an
    :class:`~devbook.llc.LLCDivergenceError` gives ``Estimate(None, [message])``.

    Parameters
    ----------
    case
        A case of :mod:`devbook.known`, estimated at its current parameters.
    seed
        Seed of the estimate (chains, batches, injected noise).
    **settings
        :class:`~devbook.llc.SGLDConfig` fields overriding ``case.sgld``.
    """
    config = case.config(**settings)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = llc.estimate_llc(case.model, case.loss_fn, case.data, config, seed=seed)
        except llc.LLCDivergenceError as err:
            return Estimate(None, [str(err)])
    return Estimate(result, [str(w.message) for w in caught])


def flags(result: llc.LLCResult | None) -> list[str]:
    """What the estimator warned about in ``result``: divergence and non-convergence."""
    if result is None:
        return ["every chain diverged"]
    out = []
    n_div = result.diagnosis.count("diverged")
    if n_div:
        out.append(f"{n_div} of {len(result.diagnosis)} chains diverged")
    if not result.converged:
        out.append(f"not converged (split-R̂ = {result.rhat:.2f} > {llc.RHAT_MAX})")
    return out


def flag_note(results: Mapping[str, llc.LLCResult | None], what: str = "estimates") -> str:
    """One markdown sentence saying which of ``results`` (label -> result) the estimator flagged.

    Parameters
    ----------
    results
        Label -> result (None: every chain diverged). Labels may be markdown (e.g. math).
    what
        What the results are, in the plural ("estimates", "cases").

    Returns
    -------
    str
        E.g. "The estimator flagged 1 of the 8 estimates: ``w_1^4``, not converged
        (split-R̂ = 1.21 > 1.2)." or "The estimator flagged none of the 8 estimates: ...".
    """
    flagged = {name: f for name, r in results.items() if (f := flags(r))}
    if not flagged:
        return (
            f"The estimator flagged none of the {len(results)} {what}: no chain diverged and "
            f"split-R̂ stayed at or below {llc.RHAT_MAX} in every one."
        )
    items = "; ".join(f"{name}, {' and '.join(f)}" for name, f in flagged.items())
    return f"The estimator flagged {len(flagged)} of the {len(results)} {what}: {items}."


def known_case_table(cases: Sequence[known.KnownCase], estimates: Mapping[str, Estimate]) -> pd.DataFrame:
    """True against estimated λ, one row per case (NaN where every chain diverged).

    ``estimates`` maps ``case.name`` to its :class:`Estimate`. Columns: ``case``
    (description), ``params``, ``true λ``, ``λ̂``, ``std``, ``(λ̂ − λ)/λ``, ``chains ok``.
    """
    rows = []
    for case in cases:
        r = estimates[case.name].result
        ok = r is not None
        rows.append(
            {
                "case": case.description,
                "params": case.num_params,
                "true λ": case.true_lambda,
                "λ̂": r.mean if ok else np.nan,
                "std": r.std if ok else np.nan,
                "(λ̂ − λ)/λ": (r.mean - case.true_lambda) / case.true_lambda if ok else np.nan,
                "chains ok": f"{r.diagnosis.count('ok')}/{len(r.diagnosis)}" if ok else "all diverged",
            }
        )
    return pd.DataFrame(rows)


def known_summary(table: pd.DataFrame) -> dict[str, int | float]:
    """Summary of a :func:`known_case_table`: cases, cases with |λ̂ − λ| <= 2 std, and the
    largest and median |relative error| over the estimated cases."""
    estimated = table.dropna(subset=["λ̂"])
    within = (estimated["λ̂"] - estimated["true λ"]).abs() <= 2 * estimated["std"]
    relerr = estimated["(λ̂ − λ)/λ"].abs()
    return {
        "n-cases": len(table),
        "n-within": int(within.sum()),
        "max-relerr": float(relerr.max()),
        "median-relerr": float(relerr.median()),
    }


# ----------------------------------------------------------------------------------------
# How the estimator fails


@dataclass
class SweepPoint:
    """One estimate of the step-size sweep: its ε, the estimate and how many chains diverged."""

    epsilon: float
    estimate: Estimate
    diverged: int

    @property
    def result(self) -> llc.LLCResult | None:
        return self.estimate.result


def sweep_point(case: known.KnownCase, epsilon: float, *, seed: int, **settings: Any) -> SweepPoint:
    """:func:`estimate_quietly` at step size ``epsilon``; ``settings`` must give ``num_chains``."""
    est = estimate_quietly(case, seed=seed, epsilon=epsilon, **settings)
    n_div = settings["num_chains"] if est.result is None else est.result.diagnosis.count("diverged")
    return SweepPoint(epsilon, est, n_div)


def _bisect_partial(
    case: known.KnownCase, sweep: list[SweepPoint], *, seed: int, steps: int, **settings: Any
) -> SweepPoint | None:
    """Bisect (geometrically) between the largest ε where some chain survived and the smallest
    where all diverged, appending every point to ``sweep``; the first partial one, or None."""
    C = settings["num_chains"]
    survived = [s for s in sweep if s.diverged < C]
    died = [s for s in sweep if s.diverged == C]
    if not survived or not died:
        return None
    a = max(survived, key=lambda s: s.epsilon).epsilon
    b = min(died, key=lambda s: s.epsilon).epsilon
    for _ in range(steps):
        mid = math.sqrt(a * b)
        point = sweep_point(case, mid, seed=seed, **settings)
        sweep.append(point)
        if 0 < point.diverged < C:
            return point
        a, b = (mid, b) if point.diverged == 0 else (a, mid)
    return None


def find_partial_divergence(
    case: known.KnownCase, epsilons: Sequence[float], *, seed: int, bisect_steps: int = 12, **settings: Any
) -> tuple[list[SweepPoint], SweepPoint]:
    """Raise ε along ``epsilons`` until some (not all) chains diverge.

    If the grid jumps from no chain diverging to all, bisect between the last two; if no mixed
    outcome is found at all, fall back to the largest ε at which some chain survived.

    Parameters
    ----------
    case
        The case to estimate on (at its current parameters).
    epsilons
        Increasing step sizes of the sweep.
    seed
        Seed of every estimate.
    bisect_steps
        Most estimates of the bisection.
    **settings
        SGLDConfig overrides of every estimate; must include ``num_chains``.

    Returns
    -------
    (list of SweepPoint, SweepPoint)
        Every point estimated (grid first, then the bisection), and the one chosen.
    """
    C = settings["num_chains"]
    sweep = [sweep_point(case, eps, seed=seed, **settings) for eps in epsilons]
    partial = [s for s in sweep if 0 < s.diverged < C]
    if partial:
        return sweep, partial[0]
    found = _bisect_partial(case, sweep, seed=seed, steps=bisect_steps, **settings)
    if found is None:
        alive = [s for s in sweep if s.result is not None]
        if not alive:
            raise ValueError(f"every chain diverged at every step size from {min(epsilons):g} on")
        found = max(alive, key=lambda s: s.epsilon)
    return sweep, found


def markdown_escape(text: str) -> str:
    """``text`` with the characters markdown would read as markup backslash-escaped."""
    return "".join("\\" + ch if ch in "\\`*_[]<>#|" else ch for ch in text)


def divergence_note(point: SweepPoint, width: int = 100) -> str:
    """The estimator's messages at ``point`` as a markdown block quote, wrapped at ``width``.

    One paragraph per message, each line prefixed with ``>`` and markup escaped; "(no
    warning)" if there was none.
    """
    paragraphs = [textwrap.fill(m, width) for m in point.estimate.messages] or ["(no warning)"]
    quoted = ["> " + markdown_escape(p).replace("\n", "\n> ") for p in paragraphs]
    return "\n>\n".join(quoted)


def escape_start(case: known.KnownCase, multiple: float = 4.0) -> float:
    """The w1 at which nβ·w1² is ``multiple`` times the case's λ (nβ: its suggested setting)."""
    return math.sqrt(multiple * case.true_lambda / case.sgld["nbeta"])


def start_at(case: known.KnownCase, index: int, value: float) -> known.KnownCase:
    """Move coordinate ``index`` of a potential case's parameter to ``value``, in place.

    The estimator then starts its chains there; ``case.w_star`` and ``case.true_lambda``
    still describe the minimum. Returns ``case``.
    """
    model = _potential_model(case)
    with torch.no_grad():
        model.w[index] = value
    return case


def scaled_loss(case: known.KnownCase, nbeta: float) -> float:
    """nβ · L_n at the case's current parameters."""
    with torch.no_grad():
        return case.loss_fn(case.model, case.data).item() * nbeta


def scenario_table(scenarios: Mapping[str, llc.LLCResult]) -> pd.DataFrame:
    """Estimate, std and count of chains per diagnosis of each scenario (label -> result)."""
    return pd.DataFrame(
        [
            {
                "scenario": name,
                "λ̂ (kept chains)": r.mean,
                "std": r.std,
                **{d: r.diagnosis.count(d) for d in llc.DIAGNOSES},
            }
            for name, r in scenarios.items()
        ]
    )


def failure_numbers(scenarios: Mapping[str, llc.LLCResult]) -> dict[str, int | float]:
    """The numbers the text quotes from the four scenarios, in the order healthy, ε too large,
    started off the minimum, too few steps: each one's estimate (``*-mean``), the chains
    flagged with its failure mode (``*-count``), and split-R̂ of the first and last."""
    if len(scenarios) != 4:
        raise ValueError(
            f"expected 4 scenarios (healthy, diverged, escaped, not converged), got {len(scenarios)}"
        )
    healthy, div, esc, nc = scenarios.values()
    return {
        "div-count": div.diagnosis.count("diverged"),
        "esc-count": esc.diagnosis.count("escaped"),
        "nc-count": nc.diagnosis.count("not_converged"),
        "healthy-mean": healthy.mean,
        "div-mean": div.mean,
        "esc-mean": esc.mean,
        "nc-mean": nc.mean,
        "healthy-rhat": healthy.rhat,
        "nc-rhat": nc.rhat,
    }


# ----------------------------------------------------------------------------------------
# The free energy and the two types of transition


def free_energy(n: np.ndarray, L: float, lam: float, c: float) -> np.ndarray:
    """F_n = n L + lam log n + c (paper App. A.2, keeping the constant-order term c)."""
    return n * L + lam * np.log(n) + c


def n_critical(alpha: Phase, beta: Phase) -> float:
    """The n in [2, e^30] at which F_n(beta) falls below F_n(alpha), by Brent's method on log n.

    Parameters
    ----------
    alpha, beta
        Phases as (L, λ, c); alpha must have the lower free energy at n = 2, beta at n = e^30.

    Returns
    -------
    float
        The critical sample size n_crit.
    """

    def diff(log_n: float) -> float:
        return free_energy(np.exp(log_n), *beta) - free_energy(np.exp(log_n), *alpha)

    lo, hi = math.log(2.0), 30.0
    if not (diff(lo) > 0 > diff(hi)):
        raise ValueError(f"phases {alpha} -> {beta}: alpha must win at n = 2 and beta at n = e^30")
    return float(np.exp(brentq(diff, lo, hi)))


def transition_numbers(alpha: Phase, beta: Phase) -> dict[str, float]:
    """What the text quotes of a transition from phase alpha to phase beta, each (L, λ, c):
    ``ncrit`` (:func:`n_critical`), the loss drop ``dL`` = L_alpha − L_beta, the size of the
    change in λ ``dlam`` = |λ_beta − λ_alpha| and the constant-order handicap of beta
    ``dc`` = c_beta − c_alpha."""
    (La, la, ca), (Lb, lb, cb) = alpha, beta
    return {"ncrit": n_critical(alpha, beta), "dL": La - Lb, "dlam": abs(lb - la), "dc": cb - ca}
