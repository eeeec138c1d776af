"""Benchmark: devbook.llc.estimate_llc against devinterp 1.3.2 (issue 2, item 6).

Both estimators run SGLD with the same ε (devinterp ``lr``), γ (``localization``), nβ
(``nbeta``), batch size, chains, draws and seed on the same model and data, and use the same
L_n(w*) (the full-data loss, passed to devinterp as ``init_loss``). devinterp runs its chains
sequentially (``cores=1``) from a shuffled ``DataLoader`` as its documentation shows; devbook
runs them together in one vmap. Printed per problem: both estimates (mean ± std over chains),
their difference in standard errors, and the throughput ratio in chain-steps per second,
measured in this one run, by wall clock and by this process's CPU time. Each of the three timed
runs (devinterp, devbook, the bare loop below) is repeated ``--repeats`` times, interleaved, and
the median is reported (the estimates are bitwise the same in every repeat). Both sides use the
same number of torch threads (``--threads``; default: all cores, as torch does). A third line times a bare
PyTorch loop of gather + forward + backward, one chain at a time (no sampler at all), and gives
both estimators' CPU time relative to it. For a compute-bound model (the MLP) vmap removes no
FLOPs, so on one thread this loop is nearly a floor on a chain-step; with several threads the
chains' batched matrix products keep the cores busier than one chain's do, so a vectorised
sampler can beat it. For a tiny model (the RRR) the loop is per-call overhead, which vmap
amortises.

Parameter mapping (devinterp/optim/sgld.py, 1.3.2): Δw = −(lr/2)(nbeta·∇L_m + localization·
(w − w0)) + sqrt(lr)·N(0, 1), i.e. the update of paper App. A.4 with ε = lr, γ = localization, nβ = nbeta. The
script checks this on one step with shared gradient and noise before timing anything.

Run:  .venv/bin/pip install --no-deps -r benchmarks/requirements.txt
      .venv/bin/python benchmarks/llc_vs_devinterp.py [--threads N] [--repeats K] [--quick]
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
    """Max |difference| between one devinterp SGLD step and the paper App. A.4 update, same inputs."""
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


class Clock:
    """Wall-clock and process CPU seconds of a ``with`` block (or the medians of several)."""

    @staticmethod
    def median(clocks: list[Clock]) -> Clock:
        out = Clock()
        out.wall = float(np.median([c.wall for c in clocks]))
        out.cpu = float(np.median([c.cpu for c in clocks]))
        return out

    def __enter__(self) -> Clock:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def run_devinterp(
    model: nn.Module, loss_fn, data: tuple[torch.Tensor, ...], cfg: SGLDConfig, init_loss: float, seed: int
) -> tuple[np.ndarray, Clock]:
    """devinterp's estimate_learning_coeff_with_summary; returns per-chain λ̂ and its clock."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary

    loader = DataLoader(
        TensorDataset(*data),
        batch_size=cfg.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
    )
    with Clock() as clock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = estimate_learning_coeff_with_summary(
            model,
            loader,
            evaluate=lambda m, batch: loss_fn(m, tuple(batch)),
            sampling_method=SGLD,
            optimizer_kwargs=dict(lr=cfg.epsilon, localization=cfg.gamma, nbeta=cfg.nbeta),
            num_draws=cfg.num_draws,
            num_chains=cfg.num_chains,
            num_burnin_steps=cfg.num_burnin,
            init_loss=init_loss,
            cores=1,
            seed=seed,
            device="cpu",
            verbose=False,
        )
    return np.array([out[f"llc-chain/{i}"] for i in range(cfg.num_chains)]), clock


def run_devbook(model: nn.Module, loss_fn, data, cfg: SGLDConfig, seed: int) -> tuple[LLCResult, Clock]:
    with Clock() as clock:
        res = estimate_llc(model, loss_fn, data, cfg, seed=seed)
    return res, clock


def run_bare(model: nn.Module, loss_fn, data, cfg: SGLDConfig, seed: int) -> Clock:
    """The floor: chains × steps of gather + forward + backward on a copy of ``model``, nothing else."""
    model = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    n = data[0].shape[0]
    with Clock() as clock:
        for _ in range(cfg.num_chains * cfg.num_steps):
            idx = torch.randint(n, (cfg.batch_size,), generator=gen)
            model.zero_grad()
            loss_fn(model, tuple(t.index_select(0, idx) for t in data)).backward()
    return clock


class MLP(nn.Module):
    """64 → 256 → 128 → 16 with GELU: 51,600 parameters, like the regression transformer."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 128), nn.GELU(), nn.Linear(128, 16)
        )

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
    for _ in range(train_steps):
        idx = torch.randint(n, (1024,), generator=gen)
        opt.zero_grad()
        known.mse_loss(student, (x[idx], y[idx])).backward()
        opt.step()
    return student, (x, y)


def timed(
    problem: tuple, cfg: SGLDConfig, seed: int, repeats: int
) -> tuple[np.ndarray, Clock, LLCResult, Clock, Clock]:
    """devbook, devinterp and the bare loop, each ``repeats`` times interleaved; median clocks."""
    model, loss_fn, data = problem
    clocks: dict[str, list[Clock]] = {"ref": [], "res": [], "bare": []}
    for _ in range(repeats):
        res, c = run_devbook(model, loss_fn, data, cfg, seed)
        clocks["res"].append(c)
        ref, c = run_devinterp(model, loss_fn, data, cfg, res.init_loss, seed)
        clocks["ref"].append(c)
        clocks["bare"].append(run_bare(model, loss_fn, data, cfg, seed))
    return ref, Clock.median(clocks["ref"]), res, Clock.median(clocks["res"]), Clock.median(clocks["bare"])


def report(
    name: str, cfg: SGLDConfig, ref: np.ndarray, c_ref: Clock, res: LLCResult, c_res: Clock, c_bare: Clock
) -> dict:
    steps = cfg.num_chains * cfg.num_steps
    t_ref, t_res = c_ref.wall, c_res.wall
    se = math.sqrt(ref.var(ddof=1) / ref.size + res.std**2 / cfg.num_chains)
    z = (res.mean - ref.mean()) / se
    within = abs(res.mean - ref.mean()) <= ref.std(ddof=1) + res.std
    ratio = (steps / t_res) / (steps / t_ref)
    cpu_ratio = c_ref.cpu / c_res.cpu
    print(
        f"\n## {name}  ({res.num_params} parameters; ε={cfg.epsilon:g}, γ={cfg.gamma:g}, "
        f"nβ={cfg.nbeta:.4g}, m={cfg.batch_size}, {cfg.num_chains} chains × {cfg.num_steps} steps)"
    )
    print(
        f"  devinterp 1.3.2 : λ̂ = {ref.mean():8.3f} ± {ref.std(ddof=1):6.3f}   "
        f"{steps / t_ref:9.1f} chain-steps/s ({t_ref:.1f} s wall, {c_ref.cpu:.1f} s CPU)"
    )
    print(
        f"  devbook         : λ̂ = {res.mean:8.3f} ± {res.std:6.3f}   "
        f"{steps / t_res:9.1f} chain-steps/s ({t_res:.1f} s wall, {c_res.cpu:.1f} s CPU)   diagnoses {dict((d, res.diagnosis.count(d)) for d in set(res.diagnosis))}"
    )
    print(
        f"  difference {res.mean - ref.mean():+.3f} = {z:+.2f} SE; within the spreads (|Δ| ≤ std₁ + std₂): {within}"
    )
    print(
        f"  bare fwd+bwd loop : {'':25} {steps / c_bare.wall:9.1f} chain-steps/s ({c_bare.wall:.1f} s wall, "
        f"{c_bare.cpu:.1f} s CPU; no sampler); CPU time relative to it: devbook "
        f"{c_res.cpu / c_bare.cpu:.2f}×, devinterp {c_ref.cpu / c_bare.cpu:.2f}×"
    )
    print(f"  throughput ratio devbook/devinterp: {ratio:.2f}× (wall clock), {cpu_ratio:.2f}× (CPU time)")
    return dict(name=name, ratio=ratio, cpu_ratio=cpu_ratio, z=z, within=within)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads for both sides (default 0: torch's default, all cores)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; medians reported")
    args = parser.parse_args()
    if args.threads < 0 or args.repeats < 1:
        parser.error("--threads must be >= 0 and --repeats >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    import devinterp  # noqa: F401  (fail early with a clear ImportError if not installed)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.repeats} "
        f"interleaved repeats; one-step mapping check: "
        f"max |devinterp − devbook| = {check_step_mapping():.1e} (float32 rounding)"
    )
    draws = 50 if args.quick else 200
    results = []

    case = known.reduced_rank_regression(8, 4, 8, 2, n=16384, seed=args.seed)
    model = case.model.float()
    data = tuple(t.float() for t in case.data)
    cfg = SGLDConfig(
        epsilon=1e-3,
        gamma=1.0,
        nbeta=default_nbeta(1024),
        num_chains=8,
        num_draws=draws,
        num_burnin=0,
        batch_size=1024,
    )
    ref, c_ref, res, c_res, c_bare = timed((model, case.loss_fn, data), cfg, args.seed, args.repeats)
    results.append(
        report(
            f"reduced-rank regression M=8 H=4 N=8 r=2 (Aoyagi λ = {case.true_lambda})",
            cfg,
            ref,
            c_ref,
            res,
            c_res,
            c_bare,
        )
    )

    model, data = mlp_problem(n=32768, seed=args.seed, train_steps=50 if args.quick else 300)
    cfg = SGLDConfig(
        epsilon=1e-4,
        gamma=100.0,
        nbeta=default_nbeta(1024),
        num_chains=8,
        num_draws=draws,
        num_burnin=0,
        batch_size=1024,
    )
    ref, c_ref, res, c_res, c_bare = timed((model, known.mse_loss, data), cfg, args.seed, args.repeats)
    results.append(report("MLP teacher-student regression, batch 1024", cfg, ref, c_ref, res, c_res, c_bare))

    print(
        "\nsummary: "
        + "; ".join(
            f"{r['name'].split(' (')[0]}: {r['ratio']:.2f}× faster "
            f"({r['cpu_ratio']:.2f}× by CPU time), "
            f"agree={r['within']}"
            for r in results
        )
    )


if __name__ == "__main__":
    main()
