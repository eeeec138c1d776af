"""devbook.hessian: exact Hessian-vector products, Hutchinson trace and Lanczos eigenvalues
checked against ``torch.func.hessian``, reverse mode and finite differences (toy model of
superposition, a small MLP, a small regression transformer, quadratics with known spectra);
the model is left untouched; bad input gets a clear error. Also the small helpers of
devbook.regression.curvature (presets, boundary matching, co-movement, exponents).

Tolerances: traces within 3 standard errors of the exact trace (seed 0, 300 probes);
eigenvalues to 1e-4 relative (float32 models) or 1e-8 (float64 quadratics).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian

from devbook.hessian import (
    HessianOperator,
    full_hessian,
    hessian_trace,
    rademacher_probes,
    top_eigenvalues,
)
from devbook.regression import SETTING, RegressionTransformer, loss_fn
from devbook.regression import curvature as C
from devbook.stages import StageFit
from devbook.tms.model import TMSModel, tms_loss_fn


def _tms() -> tuple[nn.Module, tuple[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    model = TMSModel(torch.randn(2, 6, generator=gen), 0.1 * torch.randn(6, generator=gen))
    idx = torch.randint(0, 6, (512,), generator=gen)
    x = torch.zeros(512, 6).scatter_(1, idx[:, None], torch.rand(512, 1, generator=gen))
    return model, (x,)


def _mlp() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    x = torch.randn(256, 3, generator=gen)
    return model, (x, torch.randn(256, 2, generator=gen))


def mse(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    x, y = batch
    return ((model(x) - y) ** 2).mean()


class Quadratic(nn.Module):
    """L(w) = ½ (w − c)ᵀ A (w − c) with A = Q diag(spectrum) Qᵀ: the Hessian is A."""

    def __init__(self, spectrum: list[float], seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        d = len(spectrum)
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
        self.register_buffer("A", q @ torch.diag(torch.tensor(spectrum, dtype=torch.float64)) @ q.T)
        self.w = nn.Parameter(torch.randn(d, generator=gen, dtype=torch.float64))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        r = self.w - c.mean(0)
        return 0.5 * r @ self.A @ r


def quad_loss(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return model(batch[0])


QUAD_BATCH = (torch.zeros(4, 1, dtype=torch.float64),)


def exact_hessian(model: nn.Module, loss: object, batch: tuple) -> torch.Tensor:
    """torch.func.hessian of the loss in the flat parameters (named_parameters order)."""
    names = [k for k, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    numels = [p.numel() for _, p in model.named_parameters()]
    w0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, b: tuple) -> torch.Tensor:
            return loss(self.model, b)

    wrap = Wrap()

    def f(w: torch.Tensor) -> torch.Tensor:
        parts = {f"model.{n}": v.reshape(s) for n, v, s in zip(names, torch.split(w, numels), shapes)}
        return functional_call(wrap, parts, (batch,))

    return hessian(f)(w0).detach()


CASES = {"tms": (_tms, tms_loss_fn), "mlp": (_mlp, mse)}


@pytest.mark.parametrize("case", list(CASES))
def test_products_and_dense_hessian_are_exact(case: str) -> None:
    make, loss = CASES[case]
    model, batch = make()
    H = exact_hessian(model, loss, batch)
    op = HessianOperator(model, loss, batch, chunk_size=3)
    V = torch.randn(7, op.dim, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(op.matmat(V), V @ H.T, rtol=1e-4, atol=1e-5 * float(H.abs().max()))
    torch.testing.assert_close(op.matmat(V[0]), H @ V[0], rtol=1e-4, atol=1e-5 * float(H.abs().max()))
    torch.testing.assert_close(full_hessian(model, loss, batch, chunk_size=5), H, rtol=1e-4, atol=1e-6)
    assert op.hvps == 8 and op.dim == H.shape[0]
    assert op.loss == pytest.approx(float(loss(model, batch).detach()), rel=1e-6)


def test_regression_transformer_products_match_reverse_mode_and_finite_differences() -> None:
    """Through layer norm, masked attention and ReLU (where forward-over-forward fails)."""
    config = {**SETTING.config("smoke"), "d_model": 8, "d_mlp": 8}
    model = RegressionTransformer.from_config(config, torch.Generator().manual_seed(0)).double()
    batch = tuple(t.double() for t in C.hessian_batch(config, 8))
    op = HessianOperator(model, loss_fn, batch)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    params = list(model.parameters())
    g = torch.autograd.grad(loss_fn(model, batch), params, create_graph=True)
    vs = [x.reshape(p.shape) for x, p in zip(torch.split(v, [p.numel() for p in params]), params)]
    reverse = torch.cat([h.reshape(-1) for h in torch.autograd.grad(g, params, grad_outputs=vs)])
    hv = op.matmat(v)
    torch.testing.assert_close(hv, reverse, rtol=1e-9, atol=1e-9)
    grad = torch.func.grad(op._loss_of)
    h = 1e-6
    fd = (grad(op.w0 + h * v) - grad(op.w0 - h * v)) / (2 * h)
    assert float((fd - hv).abs().max() / hv.abs().max()) < 1e-5
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("case", list(CASES))
def test_trace_within_three_standard_errors(case: str) -> None:
    make, loss = CASES[case]
    model, batch = make()
    exact = float(torch.trace(exact_hessian(model, loss, batch)))
    est, se = hessian_trace(model, loss, batch, num_probes=300, seed=0)
    assert se > 0 and abs(est - exact) <= 3 * se, (est, se, exact)
    assert se < 0.2 * abs(exact)  # the estimate is informative, not just wide


def test_rademacher_trace_of_a_diagonal_hessian_is_exact() -> None:
    """vᵀDv = tr D for every ±1 vector: Gaussian probes would not pass this."""
    model = Quadratic([5.0, -2.0, 0.5, 3.0, 0.0, 1.0])
    with torch.no_grad():
        model.A.copy_(torch.diag(torch.tensor([5.0, -2.0, 0.5, 3.0, 0.0, 1.0], dtype=torch.float64)))
    est, se = hessian_trace(model, quad_loss, QUAD_BATCH, num_probes=5, seed=3)
    assert est == pytest.approx(7.5, abs=1e-12) and se == pytest.approx(0.0, abs=1e-12)


def test_probes_are_fixed_by_the_seed_whatever_the_chunking() -> None:
    model, batch = _mlp()
    a = hessian_trace(model, mse, batch, num_probes=10, seed=4, chunk_size=3)
    b = hessian_trace(model, mse, batch, num_probes=10, seed=4, chunk_size=10)
    c = hessian_trace(model, mse, batch, num_probes=10, seed=5)
    assert a.estimate == pytest.approx(b.estimate, rel=1e-6) and a.stderr == pytest.approx(b.stderr, rel=1e-5)
    assert c.estimate != pytest.approx(a.estimate, rel=1e-6)
    P = rademacher_probes(50, 6, seed=4)
    assert set(P.unique().tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(rademacher_probes(50, 3, seed=4, start=3), P[3:])
    assert math.isnan(hessian_trace(model, mse, batch, num_probes=1, seed=0).stderr)


SPECTRA = {
    "positive definite": [9.0, 4.0, 2.5] + [1.0 - 0.03 * i for i in range(27)],
    "indefinite": [6.0, 3.0, 2.0] + [0.5 - 0.1 * i for i in range(26)] + [-4.0],
    "negative dominates": [2.0, 1.5, 1.0] + [0.1 * i - 1.0 for i in range(20)] + [-30.0, -10.0],
}


@pytest.mark.parametrize("name", list(SPECTRA))
def test_lanczos_recovers_known_spectra(name: str) -> None:
    spectrum = SPECTRA[name]
    model = Quadratic(spectrum, seed=1)
    eig = top_eigenvalues(model, quad_loss, QUAD_BATCH, k=3, most_negative=True, tol=1e-10)
    np.testing.assert_allclose(eig.top, sorted(spectrum, reverse=True)[:3], rtol=1e-8)
    assert eig.most_negative == pytest.approx(min(spectrum), rel=1e-8)
    assert eig.hvps > 0
    assert math.isnan(top_eigenvalues(model, quad_loss, QUAD_BATCH).most_negative)


@pytest.mark.parametrize("case", list(CASES))
def test_lanczos_matches_the_exact_spectrum_of_small_models(case: str) -> None:
    make, loss = CASES[case]
    model, batch = make()
    exact = np.linalg.eigvalsh(exact_hessian(model, loss, batch).double().numpy())
    eig = top_eigenvalues(model, loss, batch, k=3, most_negative=True, tol=1e-8)
    np.testing.assert_allclose(eig.top, exact[::-1][:3], rtol=1e-4)
    assert eig.most_negative == pytest.approx(exact[0], rel=1e-4, abs=1e-4 * exact[-1])


def test_all_eigenvalues_of_a_tiny_model_come_from_the_dense_hessian() -> None:
    model = Quadratic([3.0, -1.0, 2.0])
    eig = top_eigenvalues(model, quad_loss, QUAD_BATCH, k=3, most_negative=True)
    np.testing.assert_allclose(eig.top, [3.0, 2.0, -1.0], rtol=1e-10)
    assert eig.most_negative == pytest.approx(-1.0) and eig.hvps == 3


def test_model_is_left_exactly_as_given() -> None:
    model, batch = _mlp()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hessian_trace(model, mse, batch, num_probes=4, seed=0)
    top_eigenvalues(model, mse, batch, k=2, most_negative=True)
    full_hessian(model, mse, batch)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert all(p.grad is None and p.requires_grad for p in model.parameters()) and model.training


def test_bad_input_gets_a_clear_error() -> None:
    model, batch = _mlp()
    with pytest.raises(ValueError, match="scalar"):
        hessian_trace(model, lambda m, b: (m(b[0]) - b[1]) ** 2, batch, num_probes=2, seed=0)
    with pytest.raises(ValueError, match="tuple of tensors"):
        HessianOperator(model, mse, list(batch))
    with pytest.raises(ValueError, match="tuple of tensors"):
        HessianOperator(model, mse, batch[0])
    with pytest.raises(ValueError, match="first dimension"):
        HessianOperator(model, mse, (batch[0], batch[1][:10]))
    with pytest.raises(ValueError, match="failed on this batch"):
        HessianOperator(model, mse, (batch[0],))  # mse unpacks (x, y)
    with pytest.raises(ValueError, match="failed on this batch"):
        HessianOperator(model, mse, (batch[1], batch[1]))  # 2 features where 3 are expected
    with pytest.raises(ValueError, match="k=54 eigenvalues"):
        top_eigenvalues(model, mse, batch, k=54)
    with pytest.raises(ValueError, match="k must be"):
        top_eigenvalues(model, mse, batch, k=0)
    with pytest.raises(ValueError, match="ncv"):
        top_eigenvalues(model, mse, batch, k=2, ncv=2)
    with pytest.raises(ValueError, match="num_probes"):
        hessian_trace(model, mse, batch, num_probes=0, seed=0)
    with pytest.raises(ValueError, match="chunk_size"):
        HessianOperator(model, mse, batch, chunk_size=0)
    with pytest.raises(ValueError, match="shape"):
        HessianOperator(model, mse, batch).matmat(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="not finite"):
        HessianOperator(model, lambda m, b: mse(m, b) * float("nan"), batch)
    with pytest.raises(ValueError, match="requires_grad"):
        HessianOperator(model.requires_grad_(False), mse, batch)


# -- devbook.regression.curvature


def test_hessian_presets_resolve_and_refuse_unknown_names() -> None:
    for preset in ("smoke", "cpu", "paper"):
        hp = C.hessian_preset(preset)
        assert hp["num_probes"] >= 2 and set(hp["dense_d_models"]) and set(hp["scaling_d_models"])
        assert all(d % 4 == 0 for d in hp["scaling_d_models"] + hp["dense_d_models"])  # 4 heads
    assert C.hessian_preset("cpu", num_probes=7)["num_probes"] == 7
    with pytest.raises(ValueError, match="unknown parameter"):
        C.hessian_preset("cpu", probes=7)


def test_boundary_matches_within_a_factor() -> None:
    assert C.boundary_matches([1000, 10_000], [1400, 30_000, 9000], 1.5) == [1400, 9000]
    assert C.boundary_matches([1000, 10_000], [1600], 1.5) == [None, None]
    assert C.boundary_matches([1000], [], 2.0) == [None]
    with pytest.raises(ValueError):
        C.boundary_matches([1], [1], 1.0)


def _fit(slope: np.ndarray, tolerance: float = 0.1) -> StageFit:
    grid = np.exp(np.linspace(0, np.log(1e4), slope.size)) - 1
    return StageFit(
        grid_steps=grid,
        mean=np.cumsum(slope),
        std=np.zeros_like(slope),
        slope=slope,
        milestones=np.array([]),
        tolerance=tolerance,
        kernel="",
    )


def test_comovement_finds_where_two_curves_agree_and_part() -> None:
    n = 1000
    a = np.ones(n)  # rising throughout
    b = np.r_[np.ones(400), -np.ones(300), np.ones(300)]
    b[399:402] = 0.0  # a short flat patch is absorbed
    out = C.comovement(_fit(a), _fit(b))
    assert list(out["b"]) == ["rising", "falling", "rising"]
    assert list(out["together"]) == [True, False, True]
    assert out["start"].iloc[0] == 0 and out["end"].iloc[-1] == 9999
    with pytest.raises(ValueError, match="grid"):
        C.comovement(_fit(a), _fit(b[:500]))


def test_paper_phases_are_found_in_order() -> None:
    rows = [
        ("flat", "flat"),
        ("rising", "rising"),
        ("flat", "flat"),
        ("rising", "rising"),
        ("rising", "falling"),
        ("falling", "falling"),
    ]
    ends = [49, 146, 368, 1069, 3692, 20000]
    table = pd.DataFrame(
        {"start": [0] + ends[:-1], "end": ends, "a": [r[0] for r in rows], "b": [r[1] for r in rows]}
    )
    table["together"] = (table["a"] == table["b"]) & (table["a"] != "flat")
    # phase 1 is the last joint rise before the parting, not the first one
    assert C.paper_phases(table) == [(368, 1069), (1069, 3692), (3692, 20000), None]
    late = pd.concat(
        [
            table,
            pd.DataFrame([{"start": 20000, "end": 30000, "a": "falling", "b": "rising", "together": False}]),
        ],
        ignore_index=True,
    )
    assert C.paper_phases(late)[3] == (20000, 30000)
    assert C.paper_phases(table.iloc[[0, 5]]) == [None, None, (3692, 20000), None]


def test_fit_exponent_of_power_laws() -> None:
    d = np.array([1e4, 1e5, 1e6])
    assert C.fit_exponent(d, 3e-6 * d) == pytest.approx(1.0)
    assert C.fit_exponent(d, 1e-9 * d**2) == pytest.approx(2.0)
    assert C.fit_exponent(d, [1.0, float("nan"), 100.0]) == pytest.approx(1.0)
    assert math.isnan(C.fit_exponent(d, [1.0, float("nan"), float("nan")]))
