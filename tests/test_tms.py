"""Tests of devbook.tms: model, exact potential, data, training through the run store (against
a frozen copy of the former in-memory loop, and across a kill), checkpoint schedule, k-gon
classifier, plateau analysis, cached evaluations, posterior sampler, plots and presets. Fast
(one thread, seconds each)."""

from __future__ import annotations

import math
import warnings

import matplotlib
import numpy as np
import pytest
import torch

from devbook.llc import SGLDConfig
from devbook.store import flatten_state, open_run, unflatten_state
from devbook.tms import EVAL_PRESETS, RUN_PRESETS, SETTING, SGLD_PRESETS
from devbook.tms import analysis as ta
from devbook.tms import evaluate as te
from devbook.tms.analysis import Plateau, find_plateaus
from devbook.tms.data import sample_sparse
from devbook.tms.kgon import STUDY_TABLE, classify, classify_many, label_k, make_kgon, optimise_kgon
from devbook.tms.model import TMSModel, empirical_loss, forward, population_loss, tms_loss_fn
from devbook.tms.posterior import (
    free_energy_crossing,
    occupancy_crossover,
    occupancy_table,
    sample_posterior,
    sample_tempered,
    two_phase_occupancy,
)
from devbook.tms.train import INDEX_CHUNK, TMSTrainer, loss_and_grad, loss_grad
from devbook.training import checkpoint_schedule, train_run

matplotlib.use("Agg")
torch.set_num_threads(1)

SMALL = dict(num_seeds=3, num_steps=1200, num_checkpoints=25, log_every=100)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return SETTING.train(
        SETTING.config("smoke", **SMALL), root=tmp_path_factory.mktemp("runs"), progress=False
    )


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
    W, b = torch.randn(2, 6, generator=g), torch.randn(6, generator=g)
    x = torch.rand(5, 6, generator=g)
    assert torch.allclose(forward(W, b, x), torch.relu(x @ W.T @ W + b))
    Ws, bs = torch.stack([W, 2 * W]), torch.stack([b, b])
    out = forward(Ws, bs, x)
    assert out.shape == (2, 5, 6)
    assert torch.allclose(out[1], torch.relu(x @ (2 * W).T @ (2 * W) + b))
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
    zero = float(population_loss(torch.zeros(2, 6), torch.zeros(6)))
    assert math.isclose(zero, 1 / 3, rel_tol=1e-6)


def test_kgon_losses_match_the_seed_table() -> None:
    # the growth-and-form study's table: 6-gon 0.04819, 5-gon 0.06874, 5+-gon 0.06180
    for k, sigma, want in [(6, 0, 0.04819), (5, 0, 0.06874), (5, 1, 0.06180)]:
        W, b, L = optimise_kgon(k, sigma=sigma)
        assert abs(L - want) < 6e-6, (k, sigma, L)
        assert classify(W, b).k == k and classify(W, b).sigma == sigma


# ---------------------------------------------------------------- classifier
@pytest.mark.parametrize(
    "k,sigma,phi", [(4, 0, 0), (4, 2, 0), (4, 1, 1), (5, 0, 0), (5, 1, 0), (5, 0, 1), (6, 0, 0)]
)
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
        R = torch.tensor(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=W.dtype
        )
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
def _reference_train(config: dict, seeds: list[int]) -> dict[str, np.ndarray | torch.Tensor]:
    """A frozen copy of the former in-memory ``train_seeds`` loop (before training went through
    the run store): the store-backed run must reproduce it bitwise."""
    Ws, bs, xs = [], [], []
    for seed in seeds:
        g = torch.Generator().manual_seed(int(seed))
        Ws.append(torch.randn(config["r"], config["c"], generator=g) * config["init_scale"])
        bs.append(torch.randn(config["c"], generator=g) * config["bias_init_scale"])
        xs.append(sample_sparse(config["n"], config["c"], generator=g))
    W, b, data = torch.stack(Ws), torch.stack(bs), torch.stack(xs)
    m = [torch.zeros_like(W), torch.zeros_like(b)]
    v = [torch.zeros_like(W), torch.zeros_like(b)]
    gens = [torch.Generator().manual_seed(10_000_019 + int(s)) for s in seeds]
    steps, n_ck = config["num_steps"], config["num_checkpoints"]
    log = np.unique(np.round(np.logspace(0, np.log10(steps), n_ck)).astype(int))
    ckpts = np.concatenate([[0], log])
    keep, rows, chunk = set(int(t) for t in ckpts), torch.arange(len(seeds))[:, None], 500
    out_W, out_b = [W.clone()], [b.clone()]
    for step in range(1, steps + 1):
        if (step - 1) % chunk == 0:
            idx_chunk = torch.stack(
                [torch.randint(0, config["n"], (chunk, config["batch_size"]), generator=g) for g in gens]
            )
        batch = data[rows, idx_chunk[:, (step - 1) % chunk]]
        h = torch.bmm(batch, W.transpose(1, 2))
        z = torch.bmm(h, W) + b[:, None, :]
        dz = 2.0 / batch.shape[1] * (torch.relu(z) - batch) * (z > 0)
        dW = torch.bmm(h.transpose(1, 2), dz) + torch.bmm(
            torch.bmm(dz, W.transpose(1, 2)).transpose(1, 2), batch
        )
        for p, gr, mm, vv in zip((W, b), (dW, dz.sum(1)), m, v):
            if config["optimiser"] == "sgd":
                mm.mul_(config["momentum"]).add_(gr) if step > 1 else mm.copy_(gr)
                p.sub_(config["lr"] * mm)
            else:
                mm.mul_(0.9).add_(gr, alpha=0.1)
                vv.mul_(0.999).addcmul_(gr, gr, value=0.001)
                mhat, vhat = mm / (1 - 0.9**step), vv / (1 - 0.999**step)
                p.sub_(config["lr"] * mhat / (vhat.sqrt() + 1e-8))
        if step in keep:
            out_W.append(W.clone())
            out_b.append(b.clone())
    Wt, bt = torch.stack(out_W), torch.stack(out_b)
    loss = torch.stack([empirical_loss(Wt[i], bt[i], data) for i in range(len(ckpts))])
    pop = torch.stack([population_loss(Wt[i].double(), bt[i].double()).float() for i in range(len(ckpts))])
    return {"steps": ckpts, "W": Wt, "b": bt, "loss": loss, "pop": pop, "data": data}


@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_store_training_equals_the_in_memory_reference_bitwise(optimiser, small_run, tmp_path):
    config = SETTING.config("smoke", **SMALL, optimiser=optimiser, lr=0.01 if optimiser == "sgd" else 0.003)
    run = small_run if optimiser == "sgd" else SETTING.train(config, root=tmp_path, progress=False)
    ref = _reference_train(config, [config["seed"] * 100_000 + s for s in range(3)])
    result = SETTING.result(run)
    assert result.steps.tolist() == ref["steps"].tolist()
    for got, want in [
        (result.W, ref["W"]),
        (result.b, ref["b"]),
        (result.loss, ref["loss"]),
        (result.pop_loss, ref["pop"]),
        (result.data, ref["data"]),
    ]:
        assert got.dtype == want.dtype and torch.equal(got, want)
    assert list(run.metrics().columns) == ["step", "loss"] and len(run.metrics()) == 12


@pytest.mark.parametrize("optimiser", ["sgd", "adam"])
def test_killed_and_resumed_run_equals_an_uninterrupted_one(optimiser, small_run, tmp_path):
    config = SETTING.config("smoke", **SMALL, optimiser=optimiser)
    whole = small_run if optimiser == "sgd" else SETTING.train(config, root=tmp_path / "a", progress=False)

    class Killed(Exception):
        pass

    def dying() -> TMSTrainer:
        trainer = TMSTrainer(config)
        inner = trainer.train_step

        def step(k: int) -> dict[str, float]:
            if k == 1000:  # the last checkpoint before it, 893, lies inside the second chunk
                raise Killed
            return inner(k)

        trainer.train_step = step
        return trainer

    steps = SETTING.checkpoint_steps(config)
    run = open_run(config, tmp_path / "b")
    with pytest.raises(Killed):
        train_run(run, dying, config["num_steps"], steps, log_every=config["log_every"], progress=False)
    assert not run.complete and max(run.checkpoint_steps()) == 893
    resumed = SETTING.train(config, root=tmp_path / "b", progress=False)
    assert resumed.checkpoint_steps() == whole.checkpoint_steps()
    for s in steps:
        a, b = whole.load_weights(s), resumed.load_weights(s)
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics().equals(whole.metrics())


@pytest.mark.parametrize("at", [0, 1, INDEX_CHUNK - 1, INDEX_CHUNK, INDEX_CHUNK + 37])
def test_trainer_state_round_trip_continues_bitwise(at):
    config = SETTING.config("smoke", num_seeds=2, num_steps=INDEX_CHUNK + 100)
    a = TMSTrainer(config)
    for k in range(at):
        a.train_step(k)
    skeleton, tensors = flatten_state(a.state_dict())  # as the run store saves it
    b = TMSTrainer(config)
    b.model.load_state_dict(a.model.state_dict())
    b.load_state_dict(unflatten_state(skeleton, tensors))
    for k in range(at, config["num_steps"]):
        assert a.train_step(k) == b.train_step(k)
    assert torch.equal(a.model.W, b.model.W) and torch.equal(a.model.b, b.model.b)


def test_hand_gradient_matches_autograd() -> None:
    g = gen(4)
    W = torch.randn(3, 2, 6, generator=g, dtype=torch.float64, requires_grad=True)
    b = (0.2 * torch.randn(3, 6, generator=g, dtype=torch.float64)).requires_grad_()
    x = sample_sparse(7, 6, generator=g, batch=(3,)).double()
    loss = empirical_loss(W, b, x)
    gW, gb = torch.autograd.grad(loss.sum(), [W, b])
    got, hW, hb = loss_and_grad(W.detach(), b.detach(), x)
    assert torch.allclose(gW, hW) and torch.allclose(gb, hb) and torch.allclose(got, loss)
    assert all(torch.equal(u, v) for u, v in zip(loss_grad(W.detach(), b.detach(), x), (hW, hb)))


def test_training_is_per_seed_and_learns(small_run, tmp_path):
    alone = SETTING.train(SETTING.config("smoke", **{**SMALL, "num_seeds": 1}), root=tmp_path, progress=False)
    both, one = SETTING.result(small_run), SETTING.result(alone)
    assert both.W.shape == (len(both.steps), 3, 2, 6) and both.loss.shape == (len(both.steps), 3)
    assert torch.allclose(both.W[:, 0], one.W[:, 0], atol=1e-5)  # seed 0 ignores seeds 1, 2
    assert (both.pop_loss[-1] < 0.5 * both.pop_loss[0]).all()
    model = SETTING.load_model(small_run, int(both.steps[-1]))
    assert torch.equal(model.W, both.W[-1]) and torch.equal(model.b, both.b[-1])
    init = SETTING.make_model(small_run.config)
    assert torch.equal(init.W, both.W[0]) and torch.equal(init.b, both.b[0])


@pytest.mark.parametrize(
    "steps,num",
    [(5000, 60), (20_000, 120), (100_000, 200), (1200, 25), (10, 50), (1, 3), (777, 7), (3000, 2)],
)
def test_checkpoint_schedule_is_the_former_log_schedule(steps, num):
    old = np.concatenate([[0], np.unique(np.round(np.logspace(0, np.log10(steps), num)).astype(int))])
    assert checkpoint_schedule(steps, num, 0) == old.tolist()
    # with one log-spaced step the former schedule ended at step 1; a run always saves its end
    assert checkpoint_schedule(steps, 1, 0) == sorted({0, 1, steps})


def test_preset_checkpoints_are_the_former_schedule():
    for preset in RUN_PRESETS:
        config = SETTING.config(preset)
        T, num = config["num_steps"], config["num_checkpoints"]
        old = np.concatenate([[0], np.unique(np.round(np.logspace(0, np.log10(T), num)).astype(int))])
        assert SETTING.checkpoint_steps(config) == old.tolist()


# ---------------------------------------------------------------- plateaus
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


# ---------------------------------------------------------------- plateau analysis
def _p(run: int, end: int, loss: float, label: str) -> Plateau:
    return Plateau(run, end - 1, end, loss, label)


def test_llc_targets_transitions_and_their_test():
    plateaus = [
        [_p(0, 5, 0.10, "4++"), _p(0, 9, 0.06, "5+")],
        [_p(1, 7, 0.06, "5+")],
        [_p(2, 8, 0.05, "6")],
        [_p(3, 4, 0.07, "5")],
        [_p(4, 6, 0.06, "5+")],
        [],
    ]
    todo = ta.llc_targets(plateaus, per_label=2)
    assert [(p.run, p.end) for p in todo] == [(0, 5), (0, 9), (1, 7), (2, 8), (3, 4)]
    assert ta.transitions(plateaus) == {("4++", "5+"): 1}
    llc = {(0, 5): -3.0, (0, 9): 8.0, (1, 7): 7.5, (2, 8): 9.0, (3, 4): 6.0}
    pairs, counts = ta.transition_test(plateaus, llc)
    assert [(a.label, b.label, la, lb) for a, b, la, lb in pairs] == [("4++", "5+", -3.0, 8.0)]
    assert counts == {"measured": 1, "up": 1, "measured_pos": 0, "up_pos": 0}
    assert ta.group_by_label(todo, range(5)) == {"4++": [0], "5+": [1, 2], "6": [3], "5": [4]}


def test_label_table_and_crossings(small_run):
    result = SETTING.result(small_run)
    todo = [
        Plateau(0, 3, 10, 0.07, "5"),
        Plateau(1, 3, 12, 0.06, "5+"),
        Plateau(2, 3, 12, 0.06, "5+"),
        Plateau(0, 11, 20, 0.05, "6"),
    ]
    llc = {(0, 10): 7.0, (1, 12): 8.0, (2, 12): 9.0, (0, 20): 8.5}
    per_label = ta.label_summary(todo, llc, result)
    assert list(per_label) == ["5", "5+", "6"]
    assert per_label["5+"][1] == (0.06, 9.0, float(result.pop_loss[12, 2]))
    rows = ta.label_rows(per_label)
    assert [r[0] for r in rows] == ["5", "5+", "6"] and math.isnan(rows[0][4])
    assert math.isclose(rows[1][4], np.std([8.0, 9.0], ddof=1))
    assert ta.llc_table_markdown(rows).startswith("`5`: 7.0 (1 plateau); `5+`: 8.5 ± 0.7 (2 ")
    assert ta.phase_matches("5+", "k=5") and not ta.phase_matches("5+", "5")
    assert label_k("4++-") == 4
    L5, lam5 = ta.phase_stats(per_label, "5")
    L6, lam6 = ta.phase_stats(per_label, "k=6")
    want = free_energy_crossing(L6 - L5, lam6 - lam5)
    assert ta.crossing_text(per_label, "5", "k=6").startswith(f"{want:.0f} (ΔL = ")
    assert ta.crossing_text(per_label, "4++", "k=6").startswith("not measured")
    assert ta.sixth_column_range(result, []) == "(no `5` plateau measured)"


def test_featured_run_and_curve_checkpoints(small_run):
    result = SETTING.result(small_run)
    plateaus = [[_p(0, 5, 0.1, "5")], [_p(1, 5, 0.1, "5"), _p(1, 9, 0.06, "5+")], [_p(2, 9, 0.1, "6")]]
    assert ta.featured_run(plateaus, result) == 1
    idx = ta.llc_curve_checkpoints(result, plateaus[1], 6)
    assert idx.min() >= 1 and idx.max() == len(result.steps) - 1 and len(set(idx)) == len(idx)
    first = max(1, int(result.steps[plateaus[1][0].start]) // 2)
    assert result.steps[idx[0]] >= first > result.steps[idx[0] - 1]


# ---------------------------------------------------------------- cached evaluations
def _no_recompute(monkeypatch, *names: str) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("recomputed a cached evaluation")

    for name in names:
        monkeypatch.setattr(te, name, fail)


def test_plateaus_and_catalogue_are_cached(small_run, monkeypatch):
    result = SETTING.result(small_run)
    plateaus, final = te.plateau_analysis(small_run, result, grad_tol=0.1)
    assert plateaus == ta.labelled_plateaus(result, grad_tol=0.1)
    assert final == classify_many(result.W[-1], result.b[-1])
    catalogue = te.kgon_catalogue(small_run, [(6, 0), (5, 1)], max_iter=20)
    assert [label for label, _ in catalogue] == ["6", "5+"]
    assert catalogue[0][1] == optimise_kgon(6, max_iter=20)[2]
    _no_recompute(monkeypatch, "labelled_plateaus", "optimise_kgon")
    assert te.plateau_analysis(small_run, result, grad_tol=0.1) == (plateaus, final)
    assert te.kgon_catalogue(small_run, [(6, 0), (5, 1)], max_iter=20) == catalogue


def test_llc_estimates_are_cached_equal_and_quiet(small_run, monkeypatch):
    result = SETTING.result(small_run)
    # too few draws to mix: estimate_llc warns, llc_estimates records it instead
    sgld = SETTING.sgld("smoke", num_draws=12, num_burnin=0, epsilon=3e-3)
    points = [(0, len(result.steps) - 1), (1, len(result.steps) - 1), (0, 5)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = te.llc_estimates(small_run, result, points, sgld)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the direct estimate warns
        direct = ta.plateau_llc(result, 1, len(result.steps) - 1, sgld.sgld_config(), seed=sgld.seed)
    e = est[(1, len(result.steps) - 1)]
    assert e.mean == direct.mean and e.converged == direct.converged
    assert sum(e.diagnoses.values()) == sgld.num_chains
    flags = te.llc_flags(est)
    assert flags["estimates"] == 3 and flags["chains"] == 3 * sgld.num_chains
    assert flags["not_converged"] == sum(not v.converged for v in est.values())
    _no_recompute(monkeypatch, "plateau_llc", "hessian_eigenvalues")
    assert te.llc_estimates(small_run, result, points, sgld) == est
    with pytest.raises(AssertionError, match="recomputed"):
        te.llc_estimates(small_run, result, [(2, 5)], sgld)


def test_hessian_minima_are_cached(small_run, monkeypatch):
    result = SETTING.result(small_run)
    todo = [Plateau(0, 3, len(result.steps) - 1, 0.06, "5+")]
    want = float(ta.hessian_eigenvalues(result.W[-1, 0], result.b[-1, 0]).min())
    assert te.hessian_minima(small_run, result, todo) == [want]
    _no_recompute(monkeypatch, "hessian_eigenvalues")
    assert te.hessian_minima(small_run, result, todo) == [want]


def test_posterior_is_cached_bitwise(small_run, monkeypatch):
    evals = SETTING.eval_config("smoke", posterior_steps=40, posterior_draws=4)
    draws = te.tempered_posterior(small_run, evals)
    data = sample_sparse(600, 6, generator=gen(small_run.config["seed"] + 7))
    direct = sample_tempered(
        data,
        [10, 50, 200, 600],
        num_chains=4,
        num_steps=40,
        num_draws=4,
        swap_every=10,
        seed=small_run.config["seed"],
    )
    assert draws.ns == direct.ns and torch.equal(draws.W, direct.W)
    assert torch.equal(draws.swap_rate, direct.swap_rate)
    occ = te.posterior_occupancy(small_run, evals, draws)
    assert occ.equals(occupancy_table(direct))
    _no_recompute(monkeypatch, "sample_tempered", "occupancy_table")
    assert torch.equal(te.tempered_posterior(small_run, evals).b, direct.b)
    assert te.posterior_occupancy(small_run, evals, draws).equals(occ)


def test_plots_return_figures(small_run):
    import matplotlib.pyplot as plt

    from devbook.tms import plots as tp

    result = SETTING.result(small_run)
    shown = [_p(0, 10, 0.07, "5"), _p(0, 20, 0.06, "5+")]
    per_label = {"5": [(0.07, 7.0, 0.07)], "5+": [(0.06, 8.0, 0.06), (0.061, -40.0, 0.06)]}
    occ = occupancy_table(
        sample_tempered(
            sample_sparse(100, generator=gen(1)), [10, 100], num_chains=2, num_steps=20, num_draws=2, seed=0
        )
    )
    grid = np.geomspace(10, 100, 5)
    theory = two_phase_occupancy(grid, [(0.07, 7, 3.6), (0.05, 8.5, 6.4)])
    figs = [
        tp.plot_forms(result, 0, shown),
        tp.plot_staircase(result, 0, shown, np.array([5, 10, 20]), [1.0, 2.0, 3.0]),
        tp.plot_transition_graph([shown], ta.transitions([shown])),
        tp.plot_loss_llc(per_label, [(shown[0], shown[1], 7.0, 8.0)]),
        tp.plot_occupancy(occ, grid, theory, 50.0),
    ]
    assert all(isinstance(f, matplotlib.figure.Figure) for f in figs)
    for f in figs:
        plt.close(f)


def test_occupancy_table_crossover_and_theory():
    import pandas as pd

    occ = pd.DataFrame({"n": [10, 100, 1000], "k5": [0.5, 0.6, 0.2], "k6": [0.1, 0.2, 0.7]})
    n = float(occupancy_crossover(occ).removeprefix("about "))
    assert 100 < n < 1000
    assert occupancy_crossover(occ.assign(k6=[0.1, 0.2, 0.1])).startswith("not reached")
    assert occupancy_crossover(occ.assign(k6=[0.6, 0.7, 0.8])) == "not located"
    P = two_phase_occupancy(np.array([10.0, 1e4]), [STUDY_TABLE["5"], STUDY_TABLE["6"]])
    assert np.allclose(P.sum(0), 1) and P[0, 0] > 0.5 > P[0, 1]
    from devbook.tms.posterior import TemperedDraws

    W6, b6 = make_kgon(6, radius=1.1, vertex_bias=-0.3)  # a hexagon with L(w) < 0.1
    W = torch.stack([W6.float(), W6.float() * 0])[None, :, None].expand(2, 2, 2, 2, 6)
    b = torch.stack([b6.float(), b6.float()])[None, :, None].expand(2, 2, 2, 6)
    draws = TemperedDraws([5, 9], W, b, torch.zeros(1), torch.zeros(2, 2))  # rung 0: hexagons
    table = occupancy_table(draws)
    assert table["k6"].tolist() == [1.0, 0.0] and table["unclassified"].tolist() == [0.0, 1.0]
    assert table["draws"].tolist() == [4, 4]


# ---------------------------------------------------------------- posterior
def test_free_energy_crossing() -> None:
    n = free_energy_crossing(-0.02055, 1.5)
    assert abs(n * -0.02055 + 1.5 * math.log(n)) < 1e-6 and 400 < n < 500
    seed_n = free_energy_crossing(0.04819 - 0.06874, 1.5, 6.37767 - 3.62417)
    assert abs(seed_n - 601) < 2  # the study's 601
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
    W, b = sample_posterior(
        x, num_chains=3, num_steps=200, num_draws=3, epsilon=0.05 / 1000, init=init, seed=1
    )
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
    L = [
        float(population_loss(out.W[:, i].reshape(-1, 2, 6), out.b[:, i].reshape(-1, 6)).mean())
        for i in range(3)
    ]
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
    assert set(RUN_PRESETS) == set(SGLD_PRESETS) == set(EVAL_PRESETS) == {"smoke", "cpu", "paper"}
    assert SETTING.config("cpu")["num_seeds"] >= 50
    assert SETTING.config("smoke", num_steps=10)["num_steps"] == 10
    with pytest.raises(ValueError, match="unknown parameter"):
        SETTING.config("cpu", stepz=3)
    with pytest.raises(ValueError, match="must be of type int"):
        SETTING.config("cpu", num_steps="many")
    with pytest.raises(ValueError, match="r <= c"):
        SETTING.config("cpu", r=7)
    with pytest.raises(ValueError, match="optimiser"):
        SETTING.config("cpu", optimiser="rmsprop")
    with pytest.raises(ValueError, match="posterior_ns"):
        SETTING.eval_config("cpu", posterior_ns=[1])
    with pytest.raises(ValueError, match="posterior_ns"):
        SETTING.eval_config("cpu", posterior_ns=[100, 50])
    with pytest.raises(ValueError, match="unknown preset"):
        SETTING.config("gpu")
    with pytest.raises(NotImplementedError, match="llc_estimates"):
        SETTING.llc_sweep(None, SETTING.sgld("smoke"))
    with pytest.raises(ValueError, match="exceeds the training-set"):
        SETTING.sgld_data(SETTING.config("smoke", n=500), SETTING.sgld("smoke"))


def test_sgld_presets_are_the_former_sgld_settings() -> None:
    # the SGLDConfig the chapter built from the former "llc_*" keys, preset by preset
    former = {"smoke": (1e-3, 2, 60, 20), "cpu": (2e-4, 4, 1000, 300), "paper": (2e-4, 8, 2000, 500)}
    for preset, (eps, chains, draws, burnin) in former.items():
        sgld = SETTING.sgld(preset)
        assert sgld.nbeta == 1000.0 and sgld.resolved_nbeta == 1000.0  # n, explicit
        assert sgld.sgld_config() == SGLDConfig(
            epsilon=eps,
            gamma=10.0,
            nbeta=1000.0,
            num_chains=chains,
            num_draws=draws,
            num_burnin=burnin,
            batch_size=100,
        )
    data = SETTING.sgld_data(SETTING.config("smoke"), SETTING.sgld("smoke"))[0]
    assert data.shape == (16, 1000, 6)
