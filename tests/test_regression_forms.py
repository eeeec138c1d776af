"""Tests of devbook.regression.forms: the functional proxy, reference predictors, time maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from devbook.ed import find_forms
from devbook.regression import SETTING
from devbook.regression import forms as fm
from devbook.regression.compare import paper_equivalent
from devbook.regression.data import Batch, RegressionData, readout, tokenise


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    return SETTING.train(SETTING.config("smoke"), root=tmp_path_factory.mktemp("runs"), progress=False)


def test_proxy_is_the_full_output_and_is_cached(smoke_run) -> None:
    steps = SETTING.ed_steps(smoke_run.config)[:4]
    x = fm.functional_proxy(SETTING, smoke_run, steps, 8)
    batch = fm.proxy_batch(smoke_run.config, 8)
    k, d = smoke_run.config["num_examples"], smoke_run.config["task_dim"]
    assert x.shape == (4, 8 * 2 * k * (d + 1)) and x.dtype == np.float32
    model = SETTING.load_model(smoke_run, steps[2])
    with torch.no_grad():
        out = model(tokenise(batch.xs, batch.ys))
    np.testing.assert_allclose(x[2], out.numpy().reshape(-1), rtol=1e-6)
    np.testing.assert_allclose(fm.proxy_predictions(x[2], batch)[0], readout(out).numpy(), rtol=1e-6)
    again = fm.functional_proxy(SETTING, smoke_run, steps, 8)  # read back from the run store
    np.testing.assert_array_equal(x, again)
    np.testing.assert_array_equal(x, fm.functional_proxy(SETTING, smoke_run, steps, 8, chunk=3))
    other = fm.functional_proxy(SETTING, smoke_run, steps, 8, seed=1)
    assert not np.allclose(x, other)
    with pytest.raises(ValueError, match="proxy rows of length"):
        fm.proxy_predictions(x[:, :-1], batch)
    with pytest.raises(ValueError, match="n_sequences"):
        fm.proxy_batch(smoke_run.config, 0)


def _noiseless_batch(n: int = 16, k: int = 8, d: int = 3, seed: int = 0) -> tuple[Batch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tasks = torch.randn(n, d, generator=g)
    xs = torch.randn(n, k, d, generator=g)
    return Batch(xs, torch.einsum("bkd,bd->bk", xs, tasks), tasks), tasks


def test_reference_predictors_against_exact_answers() -> None:
    batch, tasks = _noiseless_batch()
    d = batch.xs.shape[-1]
    refs = fm.reference_predictions(batch, RegressionData(task_dim=d, num_examples=8, noise_var=0.0))
    truth = torch.einsum("bkd,bd->bk", batch.xs, tasks).numpy()
    # From D pairs on, noiseless least squares (and ridge with no noise) recovers the task.
    np.testing.assert_allclose(refs["least squares"][:, d:], truth[:, d:], atol=1e-5)
    np.testing.assert_allclose(refs["zero"], 0.0)
    np.testing.assert_allclose(refs["task prior"], 0.0)  # infinite tasks: t̄ = 0
    # With noise, ridge shrinks: at the first token it predicts the prior mean, later it is
    # between zero and least squares in norm of the task.
    noisy = fm.reference_predictions(batch, RegressionData(task_dim=d, num_examples=8, noise_var=0.5))
    np.testing.assert_allclose(noisy["ridge (Bayes)"][:, 0], 0.0)
    assert np.abs(noisy["ridge (Bayes)"][:, d:]).mean() < np.abs(noisy["least squares"][:, d:]).mean()
    # The ridge estimate is the Gaussian posterior mean: check one case against the formula.
    x, y = batch.xs[0, :5].double(), batch.ys[0, :5].double()
    t_hat = torch.linalg.solve(x.T @ x + 0.5 * torch.eye(d, dtype=x.dtype), x.T @ y)
    assert noisy["ridge (Bayes)"][0, 5] == pytest.approx(float(batch.xs[0, 5].double() @ t_hat), rel=1e-10)


def test_discrete_tasks_have_a_nonzero_task_prior() -> None:
    data = RegressionData(task_dim=3, num_examples=8, noise_var=0.1, num_tasks=4, task_seed=2)
    batch, _ = _noiseless_batch(d=3)
    refs = fm.reference_predictions(batch, data)
    expected = (batch.xs.double() @ data.task_prior_mean().double()).numpy()
    np.testing.assert_allclose(refs["task prior"], expected)
    assert np.abs(refs["task prior"]).max() > 0


def test_predictor_distances_are_median_squares() -> None:
    preds = np.stack([np.zeros((2, 3)), np.ones((2, 3))])
    d = fm.predictor_distances(preds, {"zero": np.zeros((2, 3)), "two": np.full((2, 3), 2.0)}, [0, 10])
    assert d.loc[10, "zero"] == 1.0 and d.loc[0, "two"] == 4.0 and list(d.index) == [0, 10]
    outlier = np.zeros((1, 3, 3))
    outlier[0, 0, 0] = 1e6  # one heavy-tailed prediction does not move the median
    assert fm.predictor_distances(outlier, {"zero": np.zeros((3, 3))}).iloc[0, 0] == 0.0


def test_run_equivalent_inverts_paper_equivalent() -> None:
    steps = np.array([0, 100, 500, 5_000, 15_000])
    paper = paper_equivalent(steps, 20_000, 0.003)
    back = fm.run_equivalent(np.round(paper).astype(int), 20_000, 0.003)
    np.testing.assert_allclose(back, steps, atol=2.0)
    assert np.isnan(fm.run_equivalent([400_000], 20_000, 0.003)[0])
    on_run = fm.paper_forms_on_run(20_000, 0.003)
    assert on_run["run_step"].notna().sum() == 2  # the cpu run reaches the first two forms


def test_compare_forms_and_survival() -> None:
    paper = pd.DataFrame(
        {"run_step": [50.0, np.nan], "run_start": [40.0, np.nan], "run_end": [60.0, np.nan]},
        index=pd.Index(["F1", "F2"], name="paper form"),
    )
    ours = pd.DataFrame(
        {"step": [55.0, 300.0], "start": [52.0, 280.0], "end": [70.0, 320.0], "p_value": [0.01, 0.01]}
    )
    v = fm.compare_forms(ours, paper)
    assert (
        list(v["verdict"]) == ["found", "beyond this run"]
        and v.loc["F1", "candidates (p)"] == "1 at 55 (0.01)"
    )
    assert fm.compare_forms(ours.iloc[1:], paper).loc["F1", "verdict"] == "not found"
    weak = fm.compare_forms(ours.assign(p_value=[0.2, 0.01]), paper)  # overlapping but not significant
    assert weak.loc["F1", "verdict"] == "not found" and weak.loc["F1", "candidates (p)"] == "1 at 55 (0.20)"


def test_survival_of_a_planted_form() -> None:
    from devbook.ed.synthetic import cusp_form

    planted = cusp_form(601, 50, noise=1e-3, seed=0)
    ref = find_forms(planted.proxies, planted.steps, sigma=8.0, n_surrogates=0)
    other = find_forms(planted.proxies, planted.steps, sigma=10.0, n_surrogates=0)
    table = fm.survival(ref, {"σ = 10": other})
    assert len(table) == len(ref.table) >= 1
    true_form = table.index[int(np.argmin(np.abs(table["step"] - planted.steps[planted.index])))]
    assert table.loc[true_form, "σ = 10"] != "—"
    assert abs(float(table.loc[true_form, "σ = 10"].replace(",", "")) - planted.steps[planted.index]) < 50


def test_sigma_schedules_are_checked() -> None:
    assert fm.sigmas(10, [1.0, 2.0, 0.0])[-1] == 2.0
    with pytest.raises(ValueError, match="start, stop, flat"):
        fm.sigmas(10, [1.0, 2.0])
    with pytest.raises(ValueError, match="valid"):
        fm.forms_preset("cpu", sequence=3)


def test_prior_to_ridge_finds_the_minimum_and_the_crossing() -> None:
    d = pd.DataFrame(
        {"task prior": [0.3, 0.1, 0.01, 0.2, 0.4], "ridge (Bayes)": [0.9, 0.6, 0.5, 0.3, 0.1]},
        index=[0, 10, 20, 30, 40],
    )
    out = fm.prior_to_ridge(d)
    assert out == {"prior_step": 20.0, "prior_distance": 0.01, "ridge_step": 40.0}
    assert np.isnan(fm.prior_to_ridge(d.assign(**{"ridge (Bayes)": 1.0}))["ridge_step"])
