"""From TMS training runs to k-gon plateaus, transitions and their LLCs.

Used by ``book/tms/growth-and-form.md``: :func:`labelled_plateaus` turns a
:class:`~devbook.tms.train.TrainResult` into plateaus at near-critical points named by their
k-gon, :func:`transitions` reads off consecutive plateaus, :func:`plateau_llc` estimates λ̂ at a
checkpoint with ``devbook.llc``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from devbook.llc import LLCResult, SGLDConfig, estimate_llc
from devbook.tms.kgon import classify
from devbook.tms.model import TMSModel, population_loss, tms_loss_fn
from devbook.tms.train import Plateau, TrainResult, find_plateaus


def grad_norm(W: torch.Tensor, b: torch.Tensor) -> float:
    """||∇L(w)|| of the exact population loss at one parameter ``W`` (r, c), ``b`` (c,)."""
    W = W.detach().double().requires_grad_(True)
    b = b.detach().double().requires_grad_(True)
    gW, gb = torch.autograd.grad(population_loss(W, b), [W, b])
    return float(torch.cat([gW.flatten(), gb.flatten()]).norm())


def hessian_eigenvalues(W: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Eigenvalues (ascending) of the Hessian of the exact population loss at ``W`` (r, c),
    ``b`` (c,): a negative one marks a saddle (a direction in which the loss falls)."""
    r, c = W.shape
    w0 = torch.cat([W.detach().double().flatten(), b.detach().double()])
    H = torch.autograd.functional.hessian(lambda w: population_loss(w[: r * c].reshape(r, c), w[r * c :]), w0)
    return torch.linalg.eigvalsh(H).numpy()


def labelled_plateaus(result: TrainResult, *, grad_tol: float = 0.1) -> list[list[Plateau]]:
    """Per run, its plateaus (see :func:`find_plateaus`) that sit near a critical point
    (population-gradient norm below ``grad_tol`` at the plateau's last checkpoint, which drops
    the "nothing learned yet" plateau at initialisation), each named by its k-gon there.
    Consecutive plateaus with the same label are merged."""
    out: list[list[Plateau]] = []
    for s in range(len(result.seeds)):
        loss = result.loss[:, s].numpy()
        runs: list[Plateau] = []
        for start, end in find_plateaus(result.steps, loss):
            if grad_norm(result.W[end, s], result.b[end, s]) > grad_tol:
                continue
            label = classify(result.W[end, s], result.b[end, s]).label
            level = float(np.mean(loss[start : end + 1]))
            if runs and runs[-1].label == label:
                prev = runs.pop()
                start, level = prev.start, float(np.mean(loss[prev.start : end + 1]))
            runs.append(Plateau(s, start, end, level, label))
        out.append(runs)
    return out


def transitions(plateaus: list[list[Plateau]]) -> Counter[tuple[str, str]]:
    """Counts of (from label, to label) over consecutive plateaus of every run."""
    counts: Counter[tuple[str, str]] = Counter()
    for runs in plateaus:
        for a, b in zip(runs, runs[1:]):
            counts[(a.label, b.label)] += 1
    return counts


def plateau_llc(result: TrainResult, run: int, ckpt: int, config: SGLDConfig, *, seed: int) -> LLCResult:
    """λ̂ of run ``run`` at checkpoint index ``ckpt``, on that run's own training set."""
    model = TMSModel(result.W[ckpt, run], result.b[ckpt, run])
    return estimate_llc(model, tms_loss_fn, (result.data[run],), config, seed=seed)
