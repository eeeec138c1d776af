"""Benchmark: devbook.llc.estimate_llc against devinterp 1.3.2 (issue 2, item 6).

Both estimators run SGLD with the same ε (devinterp ``lr``), γ (``localization``), nβ
(``nbeta``), batch size, chains, draws and seed on the same model and data, and use the same
L_n(w*) (the full-data loss, passed to devinterp as ``init_loss``). devinterp runs its chains
sequentially (``cores=1``) from a shuffled ``DataLoader`` as its documentation shows; devbook
runs them together in one vmap. Printed per problem: both estimates (mean ± std over chains),
their difference in standard errors, and the throughput ratio in chain-steps per second,
measured in this one run.

Parameter mapping (devinterp/optim/sgld.py, 1.3.2): Δw = −(lr/2)(nbeta·∇L_m + localization·
(w − w0)) + sqrt(lr)·N(0, 1), i.e. SPEC §1 with ε = lr, γ = localization, nβ = nbeta. The
script checks this on one step with shared gradient and noise before timing anything.

Run:  .venv/bin/pip install --no-deps -r benchmarks/requirements.txt
      OMP_NUM_THREADS=1 .venv/bin/python benchmarks/llc_vs_devinterp.py [--quick]
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from devbook import known
from devbook.llc import LLCResult, SGLDConfig, default_nbeta, estimate_llc


def check_step_mapping() -> float:
    """Max |difference| between one devinterp SGLD step and the SPEC §1 update, same inputs."""
    from devinterp.optim.sgld import SGLD

    eps, gamma, nbeta = 1e-3, 5.0, 30.0
    w0 = torch.randn(50, generator=torch.Generator().manual_seed(0))
    grad = torch.randn(50, generator=torch.Generator().manual_seed(1))
    p = nn.Parameter(w0.clone())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        opt = SGLD([p], lr=eps, localization=gamma, nbeta=nbeta)  # stores w0 as the centre
    with torch.no_grad():
        p.add_(0.1)
    p.grad = grad.clone()
    opt.step(noise_generator=torch.Generator().manual_seed(2))
    noise = torch.normal(0.0, 1.0, size=(50,), generator=torch.Generator().manual_seed(2))
    w = w0 + 0.1
    ours = w + (eps / 2) * (-nbeta * grad - gamma * (w - w0)) + math.sqrt(eps) * noise
    return float((p.detach() - ours).abs().max())


def run_devinterp(model: nn.Module, loss_fn, data: tuple[torch.Tensor, ...], cfg: SGLDConfig,
                  init_loss: float, seed: int) -> tuple[np.ndarray, float]:
    """devinterp's estimate_learning_coeff_with_summary; returns per-chain λ̂ and seconds."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    loader = DataLoader(TensorDataset(*data), batch_size=cfg.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), drop_last=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = estimate_learning_coeff_with_summary(
            model, loader, evaluate=lambda m, batch: loss_fn(m, tuple(batch)), sampling_method=SGLD,
            optimizer_kwargs=dict(lr=cfg.epsilon, localization=cfg.gamma, nbeta=cfg.nbeta),
            num_draws=cfg.num_draws, num_chains=cfg.num_chains, num_burnin_steps=cfg.num_burnin,
            init_loss=init_loss, cores=1, seed=seed, device="cpu", verbose=False)
    seconds = time.perf_counter() - start
    return np.array([out[f"llc-chain/{i}"] for i in range(cfg.num_chains)]), seconds


def run_devbook(model: nn.Module, loss_fn, data, cfg: SGLDConfig, seed: int) -> tuple[LLCResult, float]:
    start = time.perf_counter()
    res = estimate_llc(model, loss_fn, data, cfg, seed=seed)
    return res, time.perf_counter() - start


class MLP(nn.Module):
    """64 → 256 → 128 → 16 with GELU: 51,600 parameters, like the regression transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 128), nn.GELU(), nn.Linear(128, 16))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_problem(n: int, seed: int, train_steps: int) -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    """Teacher-student regression; the student starts at the teacher and is trained briefly
    (Adam, batches of 1024) towards the empirical minimum, so w* is near a minimum of L_n."""
    torch.manual_seed(seed)
    teacher = MLP()
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 64, generator=gen)
    with torch.no_grad():
        y = teacher(x) + 0.1 * torch.randn(n, 16, generator=gen)
    student = copy.deepcopy(teacher)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for step in range(train_steps):
        idx = torch.randint(n, (1024,), generator=gen)
        opt.zero_grad()
        known.mse_loss(student, (x[idx], y[idx])).backward()
        opt.step()
    return student, (x, y)


def report(name: str, cfg: SGLDConfig, ref: np.ndarray, t_ref: float, res: LLCResult, t_res: float) -> dict:
    steps = cfg.num_chains * cfg.num_steps
    se = math.sqrt(ref.var(ddof=1) / ref.size + res.std**2 / cfg.num_chains)
    z = (res.mean - ref.mean()) / se
    within = abs(res.mean - ref.mean()) <= ref.std(ddof=1) + res.std
    ratio = (steps / t_res) / (steps / t_ref)
    print(f"\n## {name}  ({res.num_params} parameters; ε={cfg.epsilon:g}, γ={cfg.gamma:g}, "
          f"nβ={cfg.nbeta:.4g}, m={cfg.batch_size}, {cfg.num_chains} chains × {cfg.num_steps} steps)")
    print(f"  devinterp 1.3.2 : λ̂ = {ref.mean():8.3f} ± {ref.std(ddof=1):6.3f}   "
          f"{steps / t_ref:9.1f} chain-steps/s ({t_ref:.1f} s)")
    print(f"  devbook         : λ̂ = {res.mean:8.3f} ± {res.std:6.3f}   "
          f"{steps / t_res:9.1f} chain-steps/s ({t_res:.1f} s)   diagnoses {dict((d, res.diagnosis.count(d)) for d in set(res.diagnosis))}")
    print(f"  difference {res.mean - ref.mean():+.3f} = {z:+.2f} SE; within the spreads (|Δ| ≤ std₁ + std₂): {within}")
    print(f"  throughput ratio devbook/devinterp: {ratio:.2f}×")
    return dict(name=name, ratio=ratio, z=z, within=within)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import devinterp  # noqa: F401  (fail early with a clear ImportError if not installed)

    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); one-step mapping check: "
          f"max |devinterp − SPEC| = {check_step_mapping():.1e} (float32 rounding)")
    draws = 50 if args.quick else 200
    results = []

    case = known.reduced_rank_regression(8, 4, 8, 2, n=16384, seed=args.seed)
    model = case.model.float()
    data = tuple(t.float() for t in case.data)
    cfg = SGLDConfig(epsilon=1e-3, gamma=1.0, nbeta=default_nbeta(1024), num_chains=8, num_draws=draws,
                     num_burnin=0, batch_size=1024)
    res, t_res = run_devbook(model, case.loss_fn, data, cfg, args.seed)
    ref, t_ref = run_devinterp(model, case.loss_fn, data, cfg, res.init_loss, args.seed)
    results.append(report(f"reduced-rank regression M=8 H=4 N=8 r=2 (Aoyagi λ = {case.true_lambda})",
                          cfg, ref, t_ref, res, t_res))

    model, data = mlp_problem(n=32768, seed=args.seed, train_steps=50 if args.quick else 300)
    cfg = SGLDConfig(epsilon=1e-4, gamma=100.0, nbeta=default_nbeta(1024), num_chains=8, num_draws=draws,
                     num_burnin=0, batch_size=1024)
    res, t_res = run_devbook(model, known.mse_loss, data, cfg, args.seed)
    ref, t_ref = run_devinterp(model, known.mse_loss, data, cfg, res.init_loss, args.seed)
    results.append(report("MLP teacher-student regression, batch 1024", cfg, ref, t_ref, res, t_res))

    print("\nsummary: " + "; ".join(f"{r['name'].split(' (')[0]}: {r['ratio']:.2f}× faster, "
                                    f"agree={r['within']}" for r in results))


if __name__ == "__main__":
    main()
