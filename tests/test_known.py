"""devbook.known: exact learning coefficients, Aoyagi's formula, and starting points that are
exact minima of the empirical loss (paper App. A.1; Aoyagi and Watanabe 2005)."""

from __future__ import annotations

import pytest
import torch

from devbook import known


@pytest.mark.parametrize(("mhnr", "lam"), [((5, 3, 5, 0), 6.5), ((4, 3, 8, 0), 6.0), ((3, 8, 4, 0), 6.0)])
def test_aoyagi_examples(mhnr: tuple[int, int, int, int], lam: float) -> None:
    assert known.aoyagi_lambda(*mhnr) == lam


def test_aoyagi_branches() -> None:
    assert known.aoyagi_lambda(4, 2, 2, 1) == (2 * 2 - 2 + 4) / 2  # N + H < M + r
    assert known.aoyagi_lambda(2, 2, 4, 1) == (2 * 2 - 2 + 4) / 2  # M + H < N + r (symmetric)
    assert known.aoyagi_lambda(2, 4, 2, 1) == 2.0  # M + N < H + r: λ = MN/2
    assert known.aoyagi_lambda(3, 3, 3, 1) == 4.0  # else, M+H+N+r even
    assert known.aoyagi_lambda(3, 2, 3, 1) == 3.5  # else, odd: + 1/8
    # H = r = full rank: regular, λ = d/2 minus the GL(H) symmetry dimension
    assert known.aoyagi_lambda(3, 1, 3, 1) == (3 + 3 - 1) / 2


@pytest.mark.parametrize("args", [(0, 1, 1, 0), (2, 2, 2, 3), (2, 2, 2, -1), (2.0, 2, 2, 0), (2, 2, 2, True)])
def test_aoyagi_bad_args(args: tuple) -> None:
    with pytest.raises(ValueError):
        known.aoyagi_lambda(*args)


def _grad_norm(case: known.KnownCase) -> float:
    case.model.zero_grad()
    case.loss_fn(case.model, case.data).backward()
    return max(float(p.grad.abs().max()) for p in case.model.parameters())


@pytest.mark.parametrize("orthogonal", [True, False])
@pytest.mark.parametrize("mhnr", [(3, 1, 3, 1), (4, 2, 2, 1), (2, 4, 2, 1), (5, 2, 3, 1), (3, 3, 3, 1)])
def test_rrr_starts_at_exact_empirical_minimum(mhnr: tuple[int, int, int, int], orthogonal: bool) -> None:
    M, H, N, r = mhnr
    case = known.reduced_rank_regression(M, H, N, r, n=2000, seed=1, orthogonal_noise=orthogonal)
    assert case.true_lambda == known.aoyagi_lambda(M, H, N, r)
    assert _grad_norm(case) < 1e-10  # stationary point of L_n ...
    x, y = case.data
    c_hat = case.model.B.detach() @ case.model.A.detach()
    if orthogonal:  # ... at the true rank-r parameter: the OLS fit itself
        assert torch.linalg.matrix_rank(c_hat).item() == r
        c_ols = torch.linalg.lstsq(x, y).solution.T
        assert torch.allclose(c_hat, c_ols, atol=1e-10)
    # ... and a minimum: no rank-<=H perturbation lowers the loss
    with torch.no_grad():
        loss0 = float(case.loss_fn(case.model, case.data))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(20):
            A = case.model.A + 1e-3 * torch.randn(case.model.A.shape, generator=gen, dtype=torch.float64)
            B = case.model.B + 1e-3 * torch.randn(case.model.B.shape, generator=gen, dtype=torch.float64)
            assert float(0.5 * ((y - x @ A.T @ B.T) ** 2).sum(-1).mean()) >= loss0


def test_polynomial_model_at_exact_minimum() -> None:
    case = known.polynomial_model((1, 2), n=500)
    assert case.true_lambda == 0.25
    x, y = case.data
    assert abs(float((x * y).sum())) < 1e-10  # noise ⟂ x: w = 0 minimises L_n exactly
    assert _grad_norm(case) == 0.0


def test_potentials() -> None:
    assert known.quadratic((1.0, 10.0, 100.0)).true_lambda == 1.5
    assert known.power_sum((1, 2)).true_lambda == 0.75  # w1² + w2⁴ (the chapter's example)
    assert known.power_sum((1, 2, 0)).true_lambda == 0.75  # unused coordinate adds 0
    assert known.normal_crossing((1, 2, 3)).true_lambda == pytest.approx(1 / 6)
    case = known.power_sum((1, 2, 0))
    with torch.no_grad():
        case.model.w.copy_(torch.tensor([0.5, 0.5, 7.0], dtype=torch.float64))
    with torch.no_grad():
        assert float(case.loss_fn(case.model, case.data)) == pytest.approx(0.25 + 0.0625)
    for bad in [(), (1.5,), (-1,)]:
        with pytest.raises(ValueError):
            known.power_sum(bad)
    with pytest.raises(ValueError):
        known.power_sum((0, 0))
    with pytest.raises(ValueError):
        known.quadratic((1.0, 0.0))
    with pytest.raises(ValueError):
        known.normal_crossing((0, 1))


def test_known_cases_are_consistent() -> None:
    cases = known.known_cases()
    assert len({c.name for c in cases}) == len(cases) >= 8
    for c in cases:
        assert c.config().num_chains >= 1 and c.true_lambda > 0
        assert all(torch.equal(c.w_star[k], p) for k, p in c.model.named_parameters())
