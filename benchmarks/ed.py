"""Benchmark of essential dynamics: the whole ``devbook.ed.find_forms`` pipeline at paper size.

5,000 checkpoints × 80,000 dimensions (the size of the paper's regression proxy, App. E.2.5)
in float32: a planted form (:func:`devbook.ed.synthetic.cusp_form`'s curve, stationary at the
middle checkpoint) plus a random walk in 80,000 dimensions and per-entry Gaussian noise. The
pipeline runs with the paper's σ schedule (1 over the first fifth, rising to 60) and the null
test with ``--surrogates`` surrogates per family (random walks and phase-randomised scores);
a walk surrogate is drawn in T − 1 dimensions (its Gram matrix has the walk's distribution,
:mod:`devbook.ed.null`) and every surrogate is judged in its own PC space, so neither the lift
residual nor the flatness costs a pass over the 80,000 dimensions.
Prints the wall time of each part, the process's peak memory (``ru_maxrss``) and whether the
planted form came out. Usage (``make bench`` runs the defaults)::

    .venv/bin/python benchmarks/ed.py [--checkpoints 5000] [--dim 80000] [--surrogates 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time

import numpy as np

from devbook.ed import find_forms, sigma_schedule


def peak_gib() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def proxies(n: int, dim: int, seed: int) -> tuple[np.ndarray, int]:
    """float32 (n, dim): planted 3-D curve + slow random walk + noise, built block by block."""
    rng = np.random.default_rng(seed)
    u = np.linspace(-1.0, 1.0, n)
    curve = np.column_stack([u**2, 1.5 * u**3, 0.6 * np.cos(np.pi * u)]).astype(np.float32)
    frame = np.linalg.qr(rng.standard_normal((dim, 3)))[0].T.astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    walk = np.zeros(dim, dtype=np.float32)
    rows = 64
    for i in range(0, n, rows):
        block = x[i : i + rows]
        rng.standard_normal(out=block, dtype=np.float32)
        steps = block.copy()
        steps *= 5e-6
        steps = np.cumsum(steps, axis=0) + walk
        walk = steps[-1].copy()
        block *= 1e-3
        block += steps + curve[i : i + rows] @ frame
    return x, n // 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=80_000)
    parser.add_argument("--surrogates", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}")
    start = time.perf_counter()
    x, planted = proxies(args.checkpoints, args.dim, args.seed)
    made = time.perf_counter() - start
    print(
        f"proxies {x.shape} {x.dtype} ({x.nbytes / 2**30:.2f} GiB) built in {made:.1f} s; "
        f"peak memory so far {peak_gib():.2f} GiB"
    )
    sigma = sigma_schedule(args.checkpoints, 1.0, 60.0, flat=0.2)
    steps = np.arange(args.checkpoints) * 100.0
    start, cpu = time.perf_counter(), time.process_time()
    res = find_forms(x, steps, sigma=sigma, n_surrogates=args.surrogates, seed=args.seed)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(
        f"find_forms (PCA, smoothing, {len(res.planes)} planes, lift, potentials, "
        f"{len(res.null)} surrogates): {wall:.1f} s wall, {cpu:.1f} s CPU "
        f"(the machine may be shared: CPU time is what the pipeline itself cost)"
    )
    print(f"peak memory of the process: {peak_gib():.2f} GiB")
    table = res.table
    print(
        f"{len(table)} candidate forms, {int((table.p_value <= 0.05).sum())} with p <= 0.05; "
        "the five with the smallest p-value:"
    )
    columns = ["step", "start", "end", "kind", "residual", "flatness", "p_walk", "p_phase", "features"]
    print(table.nsmallest(5, "p_value")[columns].round(4).to_string())
    tol = 2 * sigma[planted] + 1
    hit = table[(table["index"] - planted).abs() <= tol]
    hit = hit[hit.features == "C C C"]
    print(
        f"planted form at checkpoint {planted} (±{tol:.0f}): "
        + ("found, p = " + ", ".join(f"{p:.3f}" for p in hit.p_value) if len(hit) else "not found")
    )


if __name__ == "__main__":
    main()
