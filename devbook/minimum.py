"""LLC estimates away from a local minimum (paper App. A.6): which early checkpoints the stage
finder leaves out.

The LLC estimator assumes w* is a local minimum; along training it is not, and early on the
loss still falls steeply. To first order the local posterior of SGLD,
p(w) ∝ exp(−nβ L(w) − γ/2 ‖w − w*‖²), then feels the gradient g = ∇L_n(w*): with
L(w) ≈ L(w*) + gᵀδ + ½ δᵀHδ and H ⪰ 0, the gradient lowers nβ (E L − L(w*)), the estimate, by

    ½ nβ² gᵀA⁻¹g + ½ γ nβ² gᵀA⁻²g  ≤  nβ² ‖g‖² / γ,      A = nβ H + γ I.

:func:`descent_bound` is that bound. Where it exceeds the estimate itself, λ̂ says more about
the descent than about the geometry at w*: such a checkpoint is *away from a minimum*. The rule
both stage chapters apply (:func:`settling`): the leading run of checkpoints away from a
minimum is left out of stage discovery (shown, but not cut into stages); the stages begin at
the first checkpoint after it. Later checkpoints are kept whatever their bound (they are
reported): the rule is about the start of training, where SGLD starts far from any minimum.
The threshold is the estimate itself (a ratio of 1), fixed by the argument above, not fitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from devbook.setting import Setting, SGLDPreset
from devbook.store import Run
from devbook.sweep import LLCSweep, data_fingerprint


def gradient_norm(model: torch.nn.Module, loss_fn, data: tuple[torch.Tensor, ...], batch_size: int) -> float:
    """‖∇L_n(w)‖ of the mean loss over all of ``data`` (batches of ``batch_size``, weighted)."""
    params = [p for p in model.parameters() if p.requires_grad]
    n = data[0].shape[0]
    grads = [torch.zeros_like(p) for p in params]
    for start in range(0, n, batch_size):
        batch = tuple(t[start : start + batch_size] for t in data)
        loss = loss_fn(model, batch) * (batch[0].shape[0] / n)
        for acc, g in zip(grads, torch.autograd.grad(loss, params)):
            acc += g
    return float(torch.sqrt(sum((g.double() ** 2).sum() for g in grads)))


def descent_bound(grad_norm: np.ndarray, nbeta: float, gamma: float) -> np.ndarray:
    """nβ² ‖g‖² / γ: the most the gradient at w* can lower λ̂ (first order, H ⪰ 0)."""
    if not gamma > 0 or not nbeta > 0:
        raise ValueError(f"need nbeta > 0 and gamma > 0, got nbeta={nbeta}, gamma={gamma}")
    g = np.asarray(grad_norm, dtype=float)
    return nbeta**2 * g**2 / gamma


def gradient_norms(setting: Setting, run: Run, steps: list[int], sgld: SGLDPreset) -> np.ndarray:
    """‖∇L_n(w*)‖ on the SGLD data at each of ``steps``, cached per step in the run store."""
    data = setting.sgld_data(run.config, sgld)
    fingerprint = data_fingerprint(data)
    out = []
    for step in steps:
        key = {"step": int(step), "data": fingerprint, "batch_size": sgld.init_loss_batch_size}
        out.append(
            run.cached(
                "grad-norm",
                key,
                lambda s=step: gradient_norm(
                    setting.load_model(run, s), setting.loss_fn, data, sgld.init_loss_batch_size
                ),
            )
        )
    return np.asarray(out, dtype=float)


@dataclass(frozen=True)
class Settling:
    """Where the estimates settle: ``table`` (step, llc, grad_norm, bound, away) over a sweep's
    checkpoints and ``start``, the first checkpoint the stage finder uses."""

    table: pd.DataFrame
    start: int

    @property
    def mask(self) -> np.ndarray:
        """The sweep's checkpoints the stage finder uses (from ``start`` on)."""
        return self.table["step"].to_numpy() >= self.start

    @property
    def left_out(self) -> list[int]:
        """The leading checkpoints left out of stage discovery."""
        return [int(s) for s in self.table["step"][~self.mask]]


def leading_away(away: np.ndarray) -> int:
    """How many leading entries of ``away`` are True (the length of the initial run)."""
    a = np.asarray(away, dtype=bool)
    return int(a.size if a.all() else np.argmin(a))


def settling(setting: Setting, run: Run, sweep: LLCSweep, sgld: SGLDPreset, min_kept: int = 5) -> Settling:
    """The rule of this module on ``sweep`` (estimated with ``sgld``): which leading checkpoints
    are away from a minimum (bound > λ̂, or λ̂ not finite) and where the stages begin.

    Step 0 (the initialisation) counts like any other checkpoint. At least ``min_kept``
    checkpoints are kept for the stage finder, whatever the bound says (a warning row in the
    table's ``away`` column still shows them).
    """
    steps = [int(s) for s in sweep.steps]
    llc = sweep.llc.astype(float)
    norms = gradient_norms(setting, run, steps, sgld)
    bound = descent_bound(norms, sgld.resolved_nbeta, sgld.gamma)
    away = ~np.isfinite(llc) | (bound > llc)
    n_out = min(leading_away(away), max(len(steps) - min_kept, 0))
    table = pd.DataFrame({"step": steps, "llc": llc, "grad_norm": norms, "bound": bound, "away": away})
    return Settling(table=table, start=steps[n_out])


def describe(settle: Settling) -> str:
    """One markdown sentence on what the rule did to a sweep (numbers from ``settle``)."""
    t = settle.table
    out = settle.left_out
    later = int(t["away"][settle.mask].sum())
    if not out:
        first = t.iloc[0]
        text = (
            f"No checkpoint is left out: at the first, step {int(first['step']):,}, the bound "
            f"nβ²‖g‖²/γ = {first['bound']:.3g} is below λ̂ = {first['llc']:.3g}."
        )
    else:
        last = t.iloc[len(out) - 1]
        text = (
            f"{len(out)} leading checkpoint{'s are' if len(out) > 1 else ' is'} left out "
            f"(step{'s' if len(out) > 1 else ''} {', '.join(f'{s:,}' for s in out)}; at step "
            f"{int(last['step']):,} the bound "
            f"is {last['bound']:.3g} against λ̂ = {last['llc']:.3g}); the stages begin at step "
            f"{settle.start:,}."
        )
    if later:
        text += f" Later, {later} checkpoint{'s' if later > 1 else ''} also exceed the bound; they are kept."
    return text
