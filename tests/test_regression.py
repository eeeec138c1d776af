"""devbook.regression: data, tokens, model, schedule, training through the store, metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from devbook.regression import (
    PAPER_PARAMETER_COUNT,
    SETTING,
    RegressionData,
    RegressionTransformer,
    fixed_dataset,
    loss_fn,
    make_optimizer,
    make_trainer,
    one_cycle_lr,
    readout,
    tokenise,
)
from devbook.regression import metrics as M
from devbook.rng import generator
from devbook.store import open_run
from devbook.training import checkpoint_schedule, parameter_count, train_run

regression_config = SETTING.config
train = SETTING.train
load_model = SETTING.load_model
llc_checkpoint_steps = SETTING.llc_steps
ed_checkpoint_steps = SETTING.ed_steps


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return train(regression_config("smoke"), root=tmp_path_factory.mktemp("runs"), progress=False)


def test_presets_and_validation():
    paper = regression_config("paper")
    assert (paper["num_steps"], paper["batch_size"], paper["seed"]) == (500_000, 256, 1)
    assert (paper["task_dim"], paper["num_examples"], paper["noise_var"]) == (4, 8, 0.125)
    assert regression_config("paper", seed=0)["seed"] == 0
    assert regression_config("cpu")["num_steps"] < paper["num_steps"]
    with pytest.raises(ValueError, match="valid parameters"):
        regression_config("cpu", sed=1)
    with pytest.raises(ValueError, match="n_heads"):
        regression_config("cpu", n_heads=5)
    with pytest.raises(ValueError, match="num_steps"):
        regression_config("cpu", num_steps=2)


def test_parameter_count_matches_the_paper():
    model = RegressionTransformer()
    assert parameter_count(model) == PAPER_PARAMETER_COUNT == 51_717
    sizes = {k: v.numel() for k, v in model.state_dict().items()}
    assert sizes["token_embedding.weight"] == 5 * 64 and sizes["pos_embedding"] == 16 * 64
    assert sizes["blocks.0.attn.qkv.weight"] == 64 * 192 and "blocks.0.attn.qkv.bias" not in sizes
    assert sizes["unembedding.weight"] == 64 * 5 and sizes["unembedding.bias"] == 5


def test_sampler_is_seeded_and_has_the_right_law():
    data = RegressionData()
    a = data.sample(4096, generator(1, "x"))
    b = data.sample(4096, generator(1, "x"))
    c = data.sample(4096, generator(2, "x"))
    assert a.xs.shape == (4096, 8, 4) and a.ys.shape == (4096, 8) and a.tasks.shape == (4096, 4)
    assert torch.equal(a.xs, b.xs) and torch.equal(a.ys, b.ys) and not torch.equal(a.xs, c.xs)
    resid = a.ys - torch.einsum("bkd,bd->bk", a.xs, a.tasks)
    assert abs(resid.var().item() - 0.125) < 0.01
    assert abs(a.tasks.var().item() - 1) < 0.05 and abs(a.xs.var().item() - 1) < 0.05
    big = data.sample(4096, generator(1, "x"), input_scale=3.0, task_scale=2.0)
    assert abs(big.xs.std().item() - 3) < 0.1 and abs(big.tasks.std().item() - 2) < 0.1
    assert torch.equal(
        fixed_dataset(
            {"task_dim": 4, "num_examples": 8, "noise_var": 0.125, "num_tasks": 0, "seed": 5}, 8
        ).xs,
        fixed_dataset(
            {"task_dim": 4, "num_examples": 8, "noise_var": 0.125, "num_tasks": 0, "seed": 6}, 8
        ).xs,
    )


def test_discrete_tasks():
    data = RegressionData(num_tasks=3, task_seed=7)
    tasks = data.sample(500, generator(0, "d")).tasks
    assert {tuple(t.tolist()) for t in tasks} == {tuple(t.tolist()) for t in data.task_set}
    assert torch.allclose(data.task_prior_mean(), data.task_set.mean(0))
    assert torch.equal(RegressionData(num_tasks=3, task_seed=7).task_set, data.task_set)
    gauss = data.sample(500, generator(0, "d"), gaussian_tasks=True).tasks
    assert len({tuple(t.tolist()) for t in gauss}) == 500


def test_tokens_and_readout():
    xs = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    ys = -torch.arange(6, dtype=torch.float32).reshape(2, 3) - 1
    tok = tokenise(xs, ys)
    assert tok.shape == (2, 6, 3)
    assert tok[0, 0].tolist() == [0, 0, 1] and tok[0, 1].tolist() == [-1, 0, 0]
    assert tok[1, 4].tolist() == [0, 10, 11] and tok[1, 5].tolist() == [-6, 0, 0]
    assert torch.equal(readout(tok), torch.zeros(2, 3))  # x tokens have first component 0
    with pytest.raises(ValueError, match="xs"):
        tokenise(xs, ys[:, :2])


def test_causal_masking_and_patterns():
    model = RegressionTransformer(generator=generator(0, "init")).eval()
    b = RegressionData().sample(3, generator(0, "c"))
    tok = tokenise(b.xs, b.ys)
    out, patterns = model(tok, return_attn=True)
    for j in (3, 9, 15):
        tok2 = tok.clone()
        tok2[:, j] += torch.randn(5)
        out2 = model(tok2)
        assert torch.equal(out[:, :j], out2[:, :j])
        assert not torch.allclose(out[:, j], out2[:, j])
    for A in patterns:
        assert A.shape == (3, 4, 16, 16)
        assert torch.allclose(A.sum(-1), torch.ones(3, 4, 16))
        assert torch.all(A.triu(1) == 0)
    assert torch.equal(model.predict(b.xs, b.ys), readout(out))


def test_checkpoint_schedule_and_lr_schedule():
    steps = checkpoint_schedule(500_000)
    assert len(steps) == 190 and steps[0] == 0 and steps[-1] == 500_000
    assert steps == sorted(set(steps)) and steps[:5] == [0, 1, 2, 3, 4]
    assert 252_525 in steps  # a linear-spaced step (500k * 51 / 99, rounded)
    T = 1000
    model = RegressionTransformer()
    opt, sched = make_optimizer(model, T, 3e-3)
    lrs = []
    for _ in range(T):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert math.isclose(lrs[0], 3e-3 / (T / 2 - 1))
    assert int(np.argmax(lrs)) == T // 2 - 1 and math.isclose(max(lrs), 3e-3)
    assert math.isclose(lrs[T // 4], (lrs[0] + 3e-3) / 2, rel_tol=0.01)  # linear warm-up
    assert lrs[-1] < lrs[0] and opt.param_groups[0]["betas"] == (0.9, 0.999)


def test_training_reduces_loss_and_resumes_bitwise(smoke_run, tmp_path):
    config = smoke_run.config
    assert smoke_run.complete
    batch = fixed_dataset(config, 512, "test")
    first = loss_fn(load_model(smoke_run, 0), (batch.xs, batch.ys))
    last = loss_fn(load_model(smoke_run, config["num_steps"]), (batch.xs, batch.ys))
    assert last < 0.8 * first
    assert list(smoke_run.metrics().columns) == ["step", "loss", "lr"]

    class Crash(Exception):
        pass

    def crashing():
        trainer = make_trainer(config)
        inner = trainer.loss_fn

        def loss(tr, step):
            if step == 77:
                raise Crash
            return inner(tr, step)

        trainer.loss_fn = loss
        return trainer

    run = open_run(config, tmp_path)
    steps = sorted(set(llc_checkpoint_steps(config)) | set(ed_checkpoint_steps(config)))
    with pytest.raises(Crash):
        train_run(run, crashing, config["num_steps"], steps, log_every=config["log_every"], progress=False)
    resumed = train(config, root=tmp_path, progress=False)
    a, b = smoke_run.load_weights(config["num_steps"]), resumed.load_weights(config["num_steps"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_attention_scores_on_hand_made_patterns():
    T = 8
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1  # always the previous token
    uniform = torch.tril(torch.ones(T, T)) / torch.arange(1, T + 1).unsqueeze(1)
    A = torch.stack([prev, uniform]).unsqueeze(0).expand(5, 2, T, T)  # heads 1, 2
    s = M.attention_scores([A])
    for q in "xy":
        assert s[f"attn_prev_token_b1h1{q}"] == pytest.approx(1)
        assert s[f"attn_entropy_b1h1{q}"] == pytest.approx(0)
        assert s[f"attn_entropy_b1h2{q}"] == pytest.approx(1)
        assert s[f"attn_variability_b1h1{q}"] == pytest.approx(0)
    assert s["attn_to_y_b1h1x"] == pytest.approx(1)  # x-queries' previous token is a y
    assert s["attn_to_x_b1h1y"] == pytest.approx(1)
    labels = M.classify_heads(s).set_index("head")["label"]
    assert labels["b1h1x"] == "prev_token" and labels["b1h2x"] == "mixed"
    # two samples that disagree: half the mass moves, variability = 1/2
    first = torch.zeros(T, T)
    first[:, 0] = 1
    selfish = torch.eye(T)
    s = M.attention_scores([torch.stack([first, selfish]).unsqueeze(1)])
    assert s["attn_variability_b1h1x"] == pytest.approx(0.5)
    assert s["attn_self_b1h1y"] == pytest.approx(0.5)


def test_structure_metrics_on_hand_made_weights():
    model = RegressionTransformer(generator=generator(0, "init"))
    with torch.no_grad():
        model.token_embedding.weight.zero_()
        model.token_embedding.weight[:5, :5] = torch.diag(torch.tensor([5.0, 4, 3, 2, 1]))
        model.pos_embedding.zero_()
        model.pos_embedding[:, :5] = torch.randn(16, 5)  # inside the embedding's span
        model.ln_final.weight[:16] = 0.0
        model.blocks[0].ln1.weight[:] = 0.01
    s, v = M.structure_metrics(model)
    assert [s[f"emb_sv{i}"] for i in range(5)] == pytest.approx([5, 4, 3, 2, 1])
    assert s["emb_pos_alignment"] == pytest.approx(1)
    assert s["ln_collapse_final"] == 0.25 and s["ln_collapse_b1.ln1"] == 1
    assert s["ln_collapse_b2.ln2"] == 0
    with torch.no_grad():
        model.pos_embedding.zero_()
        model.pos_embedding[:, 10:15] = torch.randn(16, 5)  # orthogonal to it
    assert M.structure_metrics(model)[0]["emb_pos_alignment"] == pytest.approx(0, abs=1e-6)
    # effective unembedding: read-out = w_eff · standardised residual + b_eff
    resid = torch.randn(7, 64)
    with torch.no_grad():
        out = model.unembedding(model.ln_final(resid))[:, 0]
    z = (resid - resid.mean(-1, keepdim=True)) / torch.sqrt(
        resid.var(-1, unbiased=False, keepdim=True) + 1e-5
    )
    s, v = M.structure_metrics(model)
    assert torch.allclose(
        out.double(), z.double() @ torch.from_numpy(v["unemb_eff_weight"]) + s["unemb_eff_bias"], atol=1e-5
    )


def test_behaviour_metrics_of_a_zero_predictor():
    config = regression_config("smoke")
    model = RegressionTransformer.from_config(config, generator(0, "init"))
    with torch.no_grad():
        model.unembedding.weight.zero_()
        model.unembedding.bias.zero_()
    probes = M.make_probes(config, 2048, gains=(2.0,))
    s, _ = M.checkpoint_metrics(model, probes)
    ys = probes.eval.ys
    assert s["prior_dist_zero"] == 0 and s["prior_dist_task_prior"] == 0
    assert s["loss"] == pytest.approx(float((ys**2).mean()))
    assert s["icl_1_D"] == pytest.approx(s["loss_k4"] - s["loss_k1"])
    # E y² = E|t|²|x|²/D·D + σ² = D + σ²; OOD inputs with gain g: (g² D + σ²) / g²
    assert s["loss"] == pytest.approx(4.125, rel=0.08)
    assert s["ood_inputs_g2"] == pytest.approx(4 + 0.125 / 4, rel=0.08)
    assert s["ood_tasks_g2"] == pytest.approx(4 + 0.125 / 4, rel=0.08)


def test_evaluate_run_is_cached(smoke_run, monkeypatch):
    res = M.evaluate_run(
        smoke_run, llc_checkpoint_steps(smoke_run.config), n=128, gains=(2.0,), progress=False
    )
    assert list(res.table["step"]) == llc_checkpoint_steps(smoke_run.config)
    assert set(llc_checkpoint_steps(smoke_run.config)) | set(ed_checkpoint_steps(smoke_run.config)) == set(
        smoke_run.checkpoint_steps()
    )
    assert res.vectors["unemb_weight"].shape == (len(res.table), 64)
    assert res.vectors["ln_weight_final"].shape == (len(res.table), 64)
    assert res.table["loss"].iloc[-1] < res.table["loss"].iloc[0]
    monkeypatch.setattr(M, "checkpoint_metrics", lambda *a, **k: pytest.fail("recomputed"))
    again = M.evaluate_run(
        smoke_run, llc_checkpoint_steps(smoke_run.config), n=128, gains=(2.0,), progress=False
    )
    pd.testing.assert_frame_equal(res.table, again.table, check_exact=True)
    heads = M.classify_heads(res.table.iloc[-1])
    assert len(heads) == 2 * 4 * 2 and set(heads["query"]) == {"x", "y"}


def test_one_cycle_lr_matches_torchs_scheduler():
    for n in (10, 37, 400):
        opt, sched = make_optimizer(torch.nn.Linear(1, 1), n, 0.003)
        lrs = []
        for _ in range(n):
            lrs.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        np.testing.assert_allclose(one_cycle_lr(n, 0.003), lrs, rtol=1e-7)


def test_paper_equivalent_maps_the_paper_onto_itself():
    from devbook.regression import compare

    steps = [0, 1_000, 40_000, 250_000, 500_000]
    np.testing.assert_allclose(compare.paper_equivalent(steps, 500_000, 0.003), steps, atol=1e-6)
    # a run compressed 25x reaches a later paper step at its end than its share of steps
    end = compare.paper_equivalent([20_000], 20_000, 0.003)[0]
    assert 20_000 < end < 500_000


def test_sgld_preset_resolves_nbeta_to_m_over_log_m():
    sgld = SETTING.sgld("cpu")
    assert sgld.nbeta is None
    assert sgld.sgld_config().nbeta == pytest.approx(64 / math.log(64))
    assert SETTING.sgld("paper").sgld_config().nbeta == 66.7
    with pytest.raises(ValueError, match="valid parameters"):
        SETTING.sgld("cpu", epsilonn=1.0)
    with pytest.raises(ValueError, match="nbeta"):
        SETTING.sgld("cpu", nbeta=-1.0)
