"""Benchmark of the regression setting: training speed and the LLC sweep's SGLD throughput.

Measured in one process, one after the other, on the same machine state:

1. training steps per second of the paper's regression transformer at batch 256 (Adam +
   OneCycleLR, fresh batch each step, as ``devbook.regression.train``);
2. SGLD chain-steps per second of ``devbook.llc.estimate_llc`` at the SGLD settings of the
   chosen preset, with all chains vectorised (``torch.func.vmap``) against one chain at a time
   (``vectorize=False``), on the same model, data and seed; both paths must give the same
   estimate, which is checked. Checkpoints are not batched (the sweep runs them one by one).

Printed as a table with ratios. Usage (``make bench`` runs the defaults)::

    .venv/bin/python benchmarks/regression.py [--preset cpu] [--train-steps 100]
        [--chains 8] [--draws 40] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from devbook.llc import estimate_llc
from devbook.regression import SETTING, loss_fn, make_trainer
from devbook.training import parameter_count


def train_speed(steps: int, warmup: int) -> tuple[float, int]:
    """Training steps/s of the paper-size model at batch 256 (after ``warmup`` steps)."""
    config = SETTING.config("paper")
    trainer = make_trainer(config)
    for s in range(warmup):
        trainer.train_step(s)
    start = time.perf_counter()
    for s in range(warmup, warmup + steps):
        trainer.train_step(s)
    return steps / (time.perf_counter() - start), parameter_count(trainer.model)


def sgld_speed(preset: str, chains: int, draws: int) -> dict[str, float]:
    """Chain-steps/s of estimate_llc vectorised vs sequential on one trained-ish model."""
    preset_sgld = SETTING.sgld(preset, num_chains=chains, num_draws=draws, num_burnin=0)
    run_config = SETTING.config("paper")
    model = make_trainer(run_config).model
    data = SETTING.sgld_data(run_config, preset_sgld)
    sgld = preset_sgld.sgld_config()
    # warm-up both paths (allocation, vmap tracing)
    warm = SETTING.sgld(preset, num_chains=chains, num_draws=2, num_burnin=0).sgld_config()
    estimate_llc(model, loss_fn, data, warm, seed=0, vectorize=True)
    estimate_llc(model, loss_fn, data, warm, seed=0, vectorize=False)
    vec = estimate_llc(model, loss_fn, data, sgld, seed=0, vectorize=True)
    seq = estimate_llc(model, loss_fn, data, sgld, seed=0, vectorize=False)
    if not vec.vectorized:
        raise RuntimeError("the vectorised path fell back to sequential; nothing to compare")
    if not np.allclose(vec.per_chain, seq.per_chain, rtol=1e-3, atol=1e-3):
        raise RuntimeError(f"vectorised and sequential estimates differ: {vec.per_chain} vs {seq.per_chain}")
    total = chains * sgld.num_steps
    return {
        "vectorised": total / vec.seconds,
        "sequential": total / seq.seconds,
        "batch_size": sgld.batch_size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu", help="SGLD settings: smoke, cpu or paper")
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--chains", type=int, default=8)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"regression benchmark: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"
    )
    steps_per_s, n_params = train_speed(args.train_steps, args.warmup)
    print(
        f"training ({n_params:,} parameters, batch 256): {steps_per_s:.1f} steps/s "
        f"({1000 / steps_per_s:.1f} ms/step; 500k steps ≈ {500_000 / steps_per_s / 3600:.1f} h)"
    )
    s = sgld_speed(args.preset, args.chains, args.draws)
    print(
        f"LLC SGLD ({args.preset} settings, batch {s['batch_size']}, {args.chains} chains × "
        f"{args.draws} draws):"
    )
    print(f"  {'path':<32}{'chain-steps/s':>14}{'ratio':>8}")
    print(f"  {'one chain at a time':<32}{s['sequential']:>14.1f}{1.0:>8.2f}")
    print(
        f"  {'chains vectorised (vmap)':<32}{s['vectorised']:>14.1f}{s['vectorised'] / s['sequential']:>8.2f}"
    )
    print(
        f"  SGLD step vs training step: {s['vectorised'] / steps_per_s:.2f} chain-steps per "
        "training step time"
    )


if __name__ == "__main__":
    main()
