"""Benchmark: a calibration grid with devbook.calibration against devinterp 1.3.2's EpsilonBetaAnalyzer.

Both sweep the same ε × nβ grid (γ fixed: the analyzer sweeps ε and β only) on the same model,
data, chains, draws and seed, with the same L_n(w*) (the full-data loss, passed to devinterp
as ``init_loss``). devinterp's analyzer runs one cell after another, each cell's chains one
after another (``estimate_learning_coeff_with_summary``, ``cores=1``, ``online=True`` for the
per-chain traces it needs); devbook runs every chain of every cell in one vmap
(:func:`devbook.llc.estimate_llc_grid`). Printed per problem: the wall-clock time of each and
their ratio (medians of ``--repeats`` interleaved repeats), and per cell both estimates
(mean ± std over chains) and whether they agree within the spreads (|Δ| ≤ std₁ + std₂;
cells where either side diverged, non-finite, are listed apart). Parameter mapping as in
benchmarks/llc_vs_devinterp.py (ε = lr, γ = localization, nβ = nbeta). devinterp abandons a
cell at its first NaN loss (the analyzer skips it), while devbook runs every chain to the end
and records the divergence, so in grids with diverging cells devinterp does less work. On a
compute-bound model on one CPU thread (the regression transformer) vmap removes no arithmetic,
so the ratio there is near 1; on a small model it is the per-call overhead that vmap saves.

Run:  .venv/bin/pip install --no-deps -r benchmarks/requirements.txt
      .venv/bin/python benchmarks/calibration_vs_devinterp.py [--threads N] [--repeats K] [--quick]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))

from llc_vs_devinterp import Clock  # noqa: E402

from devbook import known  # noqa: E402
from devbook.calibration import Grid  # noqa: E402
from devbook.llc import SGLDConfig, estimate_llc_grid  # noqa: E402
from devbook.regression import SETTING  # noqa: E402


def run_analyzer(model, loss_fn, data, cfg: SGLDConfig, grid: Grid, init_loss: float, seed: int):
    """devinterp's EpsilonBetaAnalyzer over the grid's ε × nβ; returns {(ε, nβ): per-chain λ̂}."""
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.vis_utils import EpsilonBetaAnalyzer

    def estimator(epsilon: float, beta: float, **kwargs) -> dict:
        loader = DataLoader(
            TensorDataset(*data),
            batch_size=cfg.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            drop_last=True,
        )
        return estimate_learning_coeff_with_summary(
            model,
            loader,
            evaluate=lambda m, batch: loss_fn(m, tuple(batch)),
            sampling_method=SGLD,
            optimizer_kwargs=dict(lr=epsilon, localization=cfg.gamma, nbeta=beta),
            num_draws=cfg.num_draws,
            num_chains=cfg.num_chains,
            num_burnin_steps=cfg.num_burnin,
            init_loss=init_loss,
            cores=1,
            seed=seed,
            device="cpu",
            verbose=False,
            online=True,
        )

    analyzer = EpsilonBetaAnalyzer()
    eps, betas = sorted(set(grid.epsilon)), sorted(set(grid.nbeta))
    with Clock() as clock, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analyzer.configure_sweep(estimator, {}, epsilon_range=eps, beta_range=betas)
        analyzer.sweep()
    df = analyzer.sweep_df
    # devinterp's "llc/trace" is nβ·(L_t − L_n(w*)) per draw (not a running mean): λ̂_c is its mean
    out = {
        (float(e), float(b)): np.asarray(t).mean(axis=1)
        for e, b, t in zip(df["epsilon"], df["beta"], df["llc/trace"])
    }
    return out, clock


def compare(name: str, model, loss_fn, data, cfg: SGLDConfig, grid: Grid, seed: int, repeats: int) -> float:
    """Time both sides ``repeats`` times interleaved, print the per-cell comparison, return the ratio."""
    ours_clocks, ref_clocks = [], []
    for _ in range(repeats):
        with Clock() as c:
            ours = estimate_llc_grid(model, loss_fn, data, cfg, grid, seed=seed)
        ours_clocks.append(c)
        ref, c_ref = run_analyzer(model, loss_fn, data, cfg, grid, ours[0].init_loss, seed)
        ref_clocks.append(c_ref)
    t_ours, t_ref = Clock.median(ours_clocks).wall, Clock.median(ref_clocks).wall
    n_params = ours[0].num_params
    print(
        f"\n## {name} ({n_params} parameters; {len(grid)} cells (ε × nβ) at γ={cfg.gamma:g}, "
        f"m={cfg.batch_size}, {cfg.num_chains} chains × {cfg.num_steps} steps each)"
    )
    agree, finite = 0, 0
    for res in ours:
        key = (res.config.epsilon, res.config.nbeta)
        theirs = ref.get(key)
        kept = res.per_chain[res.kept] if res.kept.any() else np.array([np.nan])
        both = theirs is not None and np.isfinite(theirs).all() and res.kept.all()
        line = (
            f"  ε={key[0]:<8g} nβ={key[1]:<8.4g} devbook {np.mean(kept):9.3f} ± {np.std(kept, ddof=1):7.3f}"
        )
        if theirs is None:
            print(line + "   devinterp: skipped (error)")
            continue
        line += f"   devinterp {np.mean(theirs):9.3f} ± {np.std(theirs, ddof=1):7.3f}"
        if both:
            finite += 1
            ok = abs(np.mean(kept) - np.mean(theirs)) <= np.std(kept, ddof=1) + np.std(theirs, ddof=1)
            agree += ok
            line += f"   agree={ok}"
        else:
            line += "   (diverged on at least one side)"
        print(line)
    ratio = t_ref / t_ours
    print(
        f"  devinterp EpsilonBetaAnalyzer {t_ref:.1f} s, devbook grid {t_ours:.1f} s: {ratio:.2f}× faster; "
        f"{agree} of {finite} finite cells agree within spreads"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer draws (a smoke run)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default 0: torch's default)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; medians reported")
    args = parser.parse_args()
    if args.threads < 0 or args.repeats < 1:
        parser.error("--threads must be >= 0 and --repeats >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    import devinterp  # noqa: F401  (fail early with a clear ImportError if not installed)

    draws = 20 if args.quick else 60
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), median of {args.repeats} repeats")
    ratios = []

    case = known.reduced_rank_regression(8, 4, 8, 2, n=16384, seed=args.seed)
    data = tuple(t.float() for t in case.data)
    cfg = SGLDConfig(epsilon=1e-3, gamma=1.0, nbeta=1.0, num_chains=4, num_draws=draws, batch_size=256)
    grid = Grid.product([1e-4, 3e-4, 1e-3], [30.0, 100.0, 300.0], [1.0])
    ratios.append(
        compare(
            "reduced-rank regression M=8 H=4 N=8 r=2",
            case.model.float(),
            case.loss_fn,
            data,
            cfg,
            grid,
            args.seed,
            args.repeats,
        )
    )

    config = SETTING.config("smoke")
    model = SETTING.make_model(config).eval()
    sgld = SETTING.sgld("cpu")
    data = SETTING.sgld_data(config, sgld)
    cfg = SGLDConfig(
        epsilon=1e-3, gamma=100.0, nbeta=1.0, num_chains=4, num_draws=draws, batch_size=sgld.batch_size
    )
    grid = Grid.product([3e-4, 1e-3, 3e-3], [sgld.resolved_nbeta, 30.0, 66.7], [100.0])
    ratios.append(
        compare(
            "regression transformer (initialisation), SGLD batch 64",
            model,
            SETTING.loss_fn,
            data,
            cfg,
            grid,
            args.seed,
            args.repeats,
        )
    )
    print(
        "\nsummary: "
        + ", ".join(f"{r:.2f}×" for r in ratios)
        + " (devbook grid vs EpsilonBetaAnalyzer, wall clock)"
    )


if __name__ == "__main__":
    main()
