"""Tests of devbook.tms: model, exact potential, data, vectorised training, k-gon classifier,
posterior sampler and the chapter's presets. Fast (one thread, a few seconds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from devbook.tms import PRESETS, config
from devbook.tms.data import sample_sparse
from devbook.tms.kgon import classify, classify_many, make_kgon, optimise_kgon
from devbook.tms.model import TMSModel, empirical_loss, forward, population_loss, tms_loss_fn
from devbook.tms.posterior import free_energy_crossing, sample_posterior, sample_tempered
from devbook.tms.train import TrainConfig, find_plateaus, loss_grad, train_seeds


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- data
def test_sparse_data_has_one_uniform_feature_per_row() -> None:
    x = sample_sparse(20000, 6, generator=gen())
    assert x.shape == (20000, 6)
    assert ((x > 0).sum(-1) == 1).all()
    mu = x.sum(-1)
    assert 0 <= mu.min() and mu.max() <= 1
    assert abs(mu.mean().item() - 0.5) < 0.01 and abs((mu**2).mean().item() - 1 / 3) < 0.01
    counts = (x > 0).float().mean(0)
    assert torch.allclose(counts, torch.full((6,), 1 / 6), atol=0.01)
    assert sample_sparse(3, 4, generator=gen(), batch=(5,)).shape == (5, 3, 4)


def test_sparse_data_is_reproducible_and_checks_input() -> None:
    assert torch.equal(sample_sparse(10, generator=gen(3)), sample_sparse(10, generator=gen(3)))
    with pytest.raises(ValueError, match="n must be"):
        sample_sparse(0, generator=gen())


# ---------------------------------------------------------------- model
def test_forward_matches_definition_and_batches() -> None:
    g = gen(1)
    W, b, x = torch.randn(2, 6, generator=g), torch.randn(6, generator=g), torch.rand(5, 6, generator=g)
    assert torch.allclose(forward(W, b, x), torch.relu(x @ W.T @ W + b))
    Ws, bs = torch.stack([W, 2 * W]), torch.stack([b, b])
    out = forward(Ws, bs, x)
    assert out.shape == (2, 5, 6) and torch.allclose(out[1], torch.relu(x @ (2 * W).T @ (2 * W) + b))
    assert torch.allclose(TMSModel(W, b)(x), forward(W, b, x))
    assert torch.isclose(tms_loss_fn(TMSModel(W, b), (x,)), empirical_loss(W, b, x))
    with pytest.raises(ValueError, match="W must be"):
        forward(W, torch.zeros(5), x)
    with pytest.raises(ValueError, match="features"):
        forward(W, b, torch.rand(5, 4))


def test_population_loss_matches_monte_carlo() -> None:
    g = gen(2)
    W = torch.randn(3, 2, 6, generator=g, dtype=torch.float64)
    b = 0.3 * torch.randn(3, 6, generator=g, dtype=torch.float64)
    x = sample_sparse(200000, 6, generator=g).double()
    exact, mc = population_loss(W, b), empirical_loss(W, b, x)
    assert exact.shape == (3,)
    assert torch.allclose(exact, mc, rtol=0.02)
    assert math.isclose(float(population_loss(torch.zeros(2, 6), torch.zeros(6))), 1 / 3, rel_tol=1e-6)


def test_kgon_losses_match_the_seed_table() -> None:
    # seed 003: 6-gon 0.04819, 5-gon 0.06874, 5+-gon 0.06180
    for k, sigma, want in [(6, 0, 0.04819), (5, 0, 0.06874), (5, 1, 0.06180)]:
        W, b, L = optimise_kgon(k, sigma=sigma)
        assert abs(L - want) < 6e-6, (k, sigma, L)
        assert classify(W, b).k == k and classify(W, b).sigma == sigma


def test_hand_gradient_matches_autograd() -> None:
    g = gen(4)
    W = torch.randn(3, 2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = (0.2 * torch.randn(3, 6, generator=g, dtype=torch.float64)).requires_grad_()
    x = sample_sparse(7, 6, generator=g, batch=(3,)).double()
    gW, gb = torch.autograd.grad(empirical_loss(W, b, x).sum(), [W, b])
    hW, hb = loss_grad(W.detach(), b.detach(), x)
    assert torch.allclose(gW, hW) and torch.allclose(gb, hb)


# ---------------------------------------------------------------- classifier
@pytest.mark.parametrize("k,sigma,phi", [(4, 0, 0), (4, 2, 0), (4, 1, 1), (5, 0, 0), (5, 1, 0), (5, 0, 1), (6, 0, 0)])
def test_classifier_names_hand_built_kgons(k: int, sigma: int, phi: int) -> None:
    W, b = make_kgon(k, sigma=sigma, phi=phi, vertex_bias=-0.1 if k > 4 else 0.0)
    got = classify(W, b)
    assert (got.k, got.sigma, got.phi) == (k, sigma, phi)
    assert got.label == f"{k}" + "+" * sigma + "-" * phi


@pytest.mark.parametrize("k", [4, 5, 6])
def test_classifier_is_robust_to_perturbation_rotation_and_permutation(k: int) -> None:
    g = gen(k)
    W, b = make_kgon(k, sigma=min(1, 6 - k), radius=1.2, vertex_bias=-0.1)
    want = classify(W, b)
    for trial in range(20):
        angle = float(torch.rand(1, generator=g)) * 2 * math.pi
        R = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=W.dtype)
        perm = torch.randperm(6, generator=g)
        Wp = (R @ W)[:, perm] + 0.05 * torch.randn(W.shape, generator=g, dtype=W.dtype)
        bp = b[perm] + 0.005 * torch.randn(b.shape, generator=g, dtype=b.dtype)
        assert classify(Wp, bp) == want, trial


def test_classifier_distinguishes_polygons_from_non_hull_columns() -> None:
    W, b = make_kgon(4)
    W[:, 4] = torch.tensor([0.3, 0.1], dtype=W.dtype)  # inside the square: not a vertex
    assert classify(W, b).k == 4
    W[:, 4] = torch.tensor([1.5, 1.5], dtype=W.dtype)  # outside: a new vertex
    assert classify(W, b).k == 5
    # a small-bias unit that still fires on its own input is not "large negative"
    W5, b5 = make_kgon(5, vertex_bias=-0.3)
    assert classify(W5, b5).phi == 0
    labels = classify_many(torch.stack([W5, make_kgon(6)[0]]), torch.stack([b5, make_kgon(6)[1]]))
    assert labels == ["5", "6"]
    with pytest.raises(ValueError, match="shape"):
        classify(torch.zeros(3, 6), torch.zeros(6))
    with pytest.raises(ValueError, match="k \\+ sigma"):
        make_kgon(5, sigma=2)


# ---------------------------------------------------------------- training
def test_training_is_vectorised_per_seed_and_learns() -> None:
    cfg = TrainConfig(steps=600, num_checkpoints=20, init_scale=0.3)
    both = train_seeds(cfg, [3, 8], progress=False)
    alone = train_seeds(cfg, [8], progress=False)
    assert both.W.shape == (len(both.steps), 2, 2, 6) and both.loss.shape == (len(both.steps), 2)
    assert torch.allclose(both.W[:, 1], alone.W[:, 0], atol=1e-5)  # run 8 ignores run 3
    assert (both.pop_loss[-1] < 0.5 * both.pop_loss[0]).all()
    with pytest.raises(ValueError, match="optimiser"):
        TrainConfig(optimiser="rmsprop")


def test_find_plateaus_on_a_synthetic_staircase() -> None:
    steps = np.unique(np.round(np.logspace(0, 5, 200)).astype(int))
    t = np.log10(steps)
    loss = 0.3 - 0.1 / (1 + np.exp(-(t - 2) * 20)) - 0.1 / (1 + np.exp(-(t - 4) * 20))
    found = find_plateaus(steps, loss)
    assert len(found) == 3
    mids = [np.log10(steps[(a + e) // 2]) for a, e in found]
    assert mids[0] < 2 < mids[1] < 4 < mids[2]


def test_hessian_eigenvalues_at_the_hexagon_are_nonnegative() -> None:
    from devbook.tms.analysis import hessian_eigenvalues

    W6, b6, _ = optimise_kgon(6)
    ev = hessian_eigenvalues(W6, b6)
    assert ev.shape == (18,) and ev.min() > -1e-6 and ev.max() > 0.1
    assert (np.abs(ev) < 1e-6).sum() == 1  # only the rotation is flat
    # the pentagon with a dead sixth unit is a degenerate critical point: more flat directions
    W5, b5, _ = optimise_kgon(5, phi=1)
    ev5 = hessian_eigenvalues(W5, b5)
    assert ev5.min() > -1e-6 and (np.abs(ev5) < 1e-6).sum() >= 3


# ---------------------------------------------------------------- posterior
def test_free_energy_crossing() -> None:
    n = free_energy_crossing(-0.02055, 1.5)
    assert abs(n * -0.02055 + 1.5 * math.log(n)) < 1e-6 and 400 < n < 500
    assert abs(free_energy_crossing(0.04819 - 0.06874, 1.5, 6.37767 - 3.62417) - 601) < 2  # seed's 601
    assert math.isnan(free_energy_crossing(0.01, 1.5))


def test_posterior_sampler_shapes_and_concentration() -> None:
    x = sample_sparse(200, generator=gen(5))
    W, b = sample_posterior(x, num_chains=4, num_steps=300, num_draws=5, epsilon=0.05 / 200, seed=0)
    assert W.shape == (5, 4, 2, 6) and b.shape == (5, 4, 6)
    # draws sit well below the loss of their random start (the posterior prefers low loss)
    assert population_loss(W[-1], b[-1]).mean() < 0.2
    with pytest.raises(ValueError, match="num_draws"):
        sample_posterior(x, num_chains=2, num_steps=10, num_draws=8, epsilon=1e-3, seed=0)


def test_posterior_chains_started_at_the_hexagon_stay_there_at_large_n() -> None:
    W6, b6, _ = optimise_kgon(6)
    init = (W6.float().expand(3, 2, 6), b6.float().expand(3, 6))
    x = sample_sparse(1000, generator=gen(6))
    W, b = sample_posterior(x, num_chains=3, num_steps=200, num_draws=3, epsilon=0.05 / 1000, init=init, seed=1)
    assert all(classify(W[-1, c], b[-1, c]).k == 6 for c in range(3))
    with pytest.raises(ValueError, match="init must be"):
        sample_posterior(x, num_chains=2, num_steps=10, num_draws=2, epsilon=1e-3, init=init, seed=0)


def test_tempered_sampler_shapes_swaps_and_ordering() -> None:
    x = sample_sparse(800, generator=gen(8))
    out = sample_tempered(x, [5, 50, 800], num_chains=6, num_steps=400, num_draws=4, swap_every=2, seed=0)
    assert out.W.shape == (4, 3, 6, 2, 6) and out.b.shape == (4, 3, 6, 6)
    assert out.swap_rate.shape == (2,) and ((out.swap_rate > 0) & (out.swap_rate <= 1)).all()
    assert out.lowest_visits.shape == (3, 6) and (out.lowest_visits[0] == 1).all()
    # the large-n rung concentrates on low loss, the n = 5 rung is diffuse (prior-dominated)
    L = [float(population_loss(out.W[:, i].reshape(-1, 2, 6), out.b[:, i].reshape(-1, 6)).mean()) for i in range(3)]
    assert L[2] < L[1] < L[0] and L[2] < 0.2 < L[0]


def test_tempered_sampler_rejects_bad_ladders() -> None:
    x = sample_sparse(100, generator=gen(9))
    with pytest.raises(ValueError, match="strictly increasing"):
        sample_tempered(x, [50, 20], num_chains=2, num_steps=10, num_draws=2, seed=0)
    with pytest.raises(ValueError, match="strictly increasing"):
        sample_tempered(x, [50, 200], num_chains=2, num_steps=10, num_draws=2, seed=0)
    with pytest.raises(ValueError, match="num_draws"):
        sample_tempered(x, [10, 50], num_chains=2, num_steps=10, num_draws=8, seed=0)


# ---------------------------------------------------------------- presets
def test_presets_resolve_and_reject_bad_values() -> None:
    assert set(PRESETS) == {"smoke", "cpu", "paper"}
    assert config("cpu")["num_seeds"] >= 50
    assert config("smoke", steps=10)["steps"] == 10
    with pytest.raises(ValueError, match="unknown parameter"):
        config("cpu", stepz=3)
    with pytest.raises(ValueError, match="must be of type int"):
        config("cpu", steps="many")
    with pytest.raises(ValueError, match="posterior_ns"):
        config("cpu", posterior_ns="1")
    with pytest.raises(ValueError, match="posterior_ns"):
        config("cpu", posterior_ns="100,50")
    with pytest.raises(ValueError, match="unknown preset"):
        config("gpu")
