"""devbook.minimum: the first-order bound on how much the gradient at w* lowers λ̂ (paper App.
A.6), the leading-run rule, and its cached use on a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from devbook import minimum


def _gaussian_shift(g: np.ndarray, h: np.ndarray, nbeta: float, gamma: float) -> float:
    """Exact E[nβ (L(w) − L(w*))] − (the same with g = 0) for a quadratic L under the local
    posterior exp(−nβ L − γ/2 |w − w*|²), by sampling it exactly (it is Gaussian)."""
    a = nbeta * h + gamma * np.eye(len(g))
    cov = np.linalg.inv(a)
    rng = np.random.default_rng(0)
    mean = -nbeta * cov @ g
    d = rng.multivariate_normal(mean, cov, size=400_000)
    d0 = rng.multivariate_normal(np.zeros(len(g)), cov, size=400_000)
    loss = d @ g + 0.5 * np.einsum("ni,ij,nj->n", d, h, d)
    loss0 = 0.5 * np.einsum("ni,ij,nj->n", d0, h, d0)
    return float(nbeta * (loss.mean() - loss0.mean()))


@pytest.mark.parametrize("h_scale", [0.0, 1.0, 20.0])
def test_descent_bound_bounds_the_exact_gaussian_shift(h_scale):
    g = np.array([0.3, -0.2, 0.1])
    h = h_scale * np.diag([1.0, 2.0, 0.5])
    nbeta, gamma = 10.0, 5.0
    shift = _gaussian_shift(g, h, nbeta, gamma)
    bound = float(minimum.descent_bound(np.linalg.norm(g), nbeta, gamma))
    assert shift < 0  # the gradient lowers the estimate
    assert -shift <= bound * 1.01
    if h_scale == 0.0:  # H = 0: the bound is attained
        assert -shift == pytest.approx(bound, rel=0.02)


def test_descent_bound_rejects_bad_values():
    with pytest.raises(ValueError, match="gamma > 0"):
        minimum.descent_bound(np.ones(3), 10.0, 0.0)


def test_leading_away():
    assert minimum.leading_away(np.array([True, True, False, True])) == 2
    assert minimum.leading_away(np.array([False, True])) == 0
    assert minimum.leading_away(np.array([True, True])) == 2


def test_gradient_norm_matches_autograd_on_the_whole_set():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    x, y = torch.randn(10, 3), torch.randn(10, 1)

    def loss_fn(m, batch):
        return ((m(batch[0]) - batch[1]) ** 2).mean()

    full = torch.autograd.grad(loss_fn(model, (x, y)), list(model.parameters()))
    expected = float(torch.sqrt(sum((g**2).sum() for g in full)))
    assert minimum.gradient_norm(model, loss_fn, (x, y), batch_size=3) == pytest.approx(expected, rel=1e-6)


def test_settling_on_a_smoke_run(tmp_path):
    from devbook.regression import SETTING

    run = SETTING.train(SETTING.config("smoke"), root=tmp_path, progress=False)
    sgld = SETTING.sgld("smoke")
    sweep = SETTING.llc_sweep(run, sgld, progress=False)
    settle = minimum.settling(SETTING, run, sweep, sgld)
    t = settle.table
    assert list(t["step"]) == [int(s) for s in sweep.steps]
    assert np.all(t["grad_norm"] > 0) and np.allclose(
        t["bound"], sgld.resolved_nbeta**2 * t["grad_norm"] ** 2 / sgld.gamma
    )
    n_out = len(settle.left_out)
    assert t["away"][:n_out].all() and settle.start == t["step"][n_out]
    assert settle.mask.sum() >= 5
    again = minimum.settling(SETTING, run, sweep, sgld)  # cached in the run store
    assert np.array_equal(again.table["grad_norm"], t["grad_norm"])
