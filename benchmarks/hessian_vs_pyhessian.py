"""Benchmark: devbook.hessian against PyHessian 0.1, the paper's tool (App. D.1.3; issue 14).

Both compute the Hutchinson trace (Rademacher probes) and the top eigenvalue of the loss
Hessian of the regression transformer on the same fixed batch (the Hessian chapter's,
``devbook.regression.curvature.hessian_batch``) at two checkpoints of the trained run of the
chosen preset (an early one and the last), with the same number of probes. Printed per
checkpoint: both trace estimates with their standard errors (std of the probes / √n) and their
difference in combined standard errors; the trace throughput (probes per second, setup
included: PyHessian's gradient graph, devbook's operator) by wall clock and by CPU time, the
median of ``--repeats`` interleaved runs, and the ratio; the top eigenvalue of each (PyHessian:
power iteration, defaults maxIter=100, tol=1e-3, and maxIter=300, tol=1e-6; devbook: Lanczos,
tol=1e-3) with the Hessian-vector products used and the wall time, against a tight Lanczos
reference (tol 1e-8).

PyHessian 0.1 as released misbehaves in ways this script shows and works around, here only:

- ``hessian.trace(maxIter, tol)`` stops when ``|mean − previous| / (previous + 1e-6) < tol``;
  with a negative running trace the ratio is negative, so it stops after two probes, and with
  a positive one it stops at the first small change, so the number of probes is not fixed.
  The script reports how many probes the defaults used, then calls it with ``tol=-inf``, which
  makes it run exactly ``maxIter`` probes. It returns the list of probe values (averaged here).
- ``hessian.density()`` calls ``torch.eig``, removed in torch 2: it raises (shown, not used).
- ``hessian.eigenvalues()`` is power iteration: it returns the eigenvalue of largest
  magnitude, which is the top one only while λ_max > |λ_min| (checked against Lanczos).
- It needs ``model(inputs)`` and ``criterion(outputs, targets)``; the regression loss is
  wrapped so (tokens in, predictions read out) and PyHessian gets its own copy of the model
  (its constructor calls ``backward``).

Usage (``make bench`` runs the defaults)::

    .venv/bin/pip install --no-deps -r benchmarks/requirements.txt
    .venv/bin/python benchmarks/hessian_vs_pyhessian.py [--preset cpu] [--batch N]
        [--probes 100] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from devbook.hessian import hessian_trace, top_eigenvalues
from devbook.regression import SETTING, loss_fn, readout, tokenise
from devbook.regression.curvature import hessian_batch, hessian_preset


class TokensModel(nn.Module):
    """The regression transformer as PyHessian wants it: ``model(tokens) -> outputs``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(model)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.inner(tokens)


def criterion(outputs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The regression loss on the model's outputs (the same as ``devbook.regression.loss_fn``)."""
    return ((readout(outputs) - ys) ** 2).mean()


class CountingHVP:
    """Wraps ``pyhessian.hessian.hessian_vector_product`` to count its calls."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401 - its package attribute `hessian` is the class, not the module

        ph = sys.modules["pyhessian.hessian"]
        self.module, self.inner, self.calls = ph, ph.hessian_vector_product, 0

    def __enter__(self) -> CountingHVP:
        def counted(*args: Any) -> Any:
            self.calls += 1
            return self.inner(*args)

        self.module.hessian_vector_product = counted
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.hessian_vector_product = self.inner


def pyhessian_of(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> Any:
    """A ``pyhessian.hessian`` on a copy of ``model`` for ``batch = (xs, ys)``, on the CPU."""
    from pyhessian import hessian

    xs, ys = batch
    with warnings.catch_warnings():  # backward(create_graph=True) warns about a reference cycle
        warnings.simplefilter("ignore", UserWarning)
        return hessian(TokensModel(model), criterion, data=(tokenise(xs, ys), ys), cuda=False)


def mean_se(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else float("nan")


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall-clock seconds and its CPU seconds (this process)."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def trace_comparison(model: nn.Module, batch: tuple, probes: int, repeats: int) -> dict[str, Any]:
    """Both traces with ``probes`` probes, ``repeats`` interleaved times; medians of the times."""
    runs: dict[str, list] = {"pyhessian": [], "devbook": []}
    for _ in range(repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            runs["pyhessian"].append(
                timed(lambda: pyhessian_of(model, batch).trace(maxIter=probes, tol=-math.inf))
            )
        runs["devbook"].append(timed(lambda: hessian_trace(model, loss_fn, batch, num_probes=probes, seed=0)))
    ph = mean_se(runs["pyhessian"][0][0])
    db = tuple(runs["devbook"][0][0])
    out = {"pyhessian": ph, "devbook": db, "z": abs(ph[0] - db[0]) / math.hypot(ph[1], db[1])}
    for name, rs in runs.items():
        out[f"{name}_wall"] = statistics.median(x[1] for x in rs)
        out[f"{name}_cpu"] = statistics.median(x[2] for x in rs)
    return out


def pyhessian_defaults(model: nn.Module, batch: tuple) -> dict[str, Any]:
    """What PyHessian's defaults do (probes used by trace(), power iteration, density()) and its
    power iteration at maxIter=300, tol=1e-6."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        h = pyhessian_of(model, batch)
        default_probes = len(h.trace())
        torch.manual_seed(0)  # PyHessian draws its start vectors from the global generator
        with CountingHVP() as count:
            (eigs, _), wall, _ = timed(lambda: h.eigenvalues())
        with CountingHVP() as tight_count:
            (tight, _), tight_wall, _ = timed(lambda: h.eigenvalues(maxIter=300, tol=1e-6))
        try:
            h.density(iter=2, n_v=1)
            density = "ran"
        except (AttributeError, RuntimeError) as err:  # torch.eig is gone from torch 2
            density = f"{type(err).__name__}: {str(err).splitlines()[0]}"
    return {
        "default_probes": default_probes,
        "power": float(eigs[0]),
        "power_hvps": count.calls,
        "power_wall": wall,
        "tight": float(tight[0]),
        "tight_hvps": tight_count.calls,
        "tight_wall": tight_wall,
        "density": density,
    }


def eigen_comparison(model: nn.Module, batch: tuple, tol: float) -> dict[str, Any]:
    """devbook's Lanczos top eigenvalue at ``tol`` and a tight reference (tol 1e-8)."""
    eig, wall, _ = timed(lambda: top_eigenvalues(model, loss_fn, batch, tol=tol))
    ref = top_eigenvalues(model, loss_fn, batch, tol=1e-8, most_negative=True)
    return {
        "lanczos": float(eig.top[0]),
        "lanczos_hvps": eig.hvps,
        "lanczos_wall": wall,
        "reference": float(ref.top[0]),
        "most_negative": ref.most_negative,
    }


def report(step: int, tr: dict[str, Any], ph: dict[str, Any], ei: dict[str, Any], probes: int) -> None:
    (a, sa), (b, sb) = tr["pyhessian"], tr["devbook"]
    print(f"\n== checkpoint {step:,}")
    print(
        f"trace, {probes} probes:  PyHessian {a:.5g} ± {sa:.2g}   devbook {b:.5g} ± {sb:.2g}   "
        f"difference {tr['z']:.2f} combined s.e."
    )
    for clock in ("wall", "cpu"):
        p, d = probes / tr[f"pyhessian_{clock}"], probes / tr[f"devbook_{clock}"]
        print(
            f"  probes/s by {clock:4s}: PyHessian {p:7.2f}   devbook {d:7.2f}   "
            f"ratio devbook/PyHessian {d / p:.2f}x"
        )
    print(
        f"  PyHessian trace() with its defaults (maxIter=100, tol=1e-3) stopped after "
        f"{ph['default_probes']} probes"
    )
    ref = ei["reference"]
    print(
        f"top eigenvalue (reference: Lanczos tol 1e-8 = {ref:.6g}; most negative {ei['most_negative']:.4g}):"
    )
    print(
        f"  PyHessian power iteration {ph['power']:.6g} (rel. error "
        f"{abs(ph['power'] - ref) / abs(ref):.1e}, {ph['power_hvps']} HVPs, "
        f"{ph['power_wall']:.2f} s)"
    )
    print(
        f"  PyHessian power iteration maxIter=300, tol=1e-6: {ph['tight']:.6g} (rel. error "
        f"{abs(ph['tight'] - ref) / abs(ref):.1e}, {ph['tight_hvps']} HVPs, {ph['tight_wall']:.2f} s)"
    )
    print(
        f"  devbook Lanczos tol 1e-3  {ei['lanczos']:.6g} (rel. error "
        f"{abs(ei['lanczos'] - ref) / abs(ref):.1e}, {ei['lanczos_hvps']} HVPs, "
        f"{ei['lanczos_wall']:.2f} s)"
    )
    print(f"PyHessian density(): {ph['density']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cpu", help="the trained regression run: smoke, cpu")
    parser.add_argument(
        "--batch", type=int, default=0, help="sequences in the batch (0: the chapter's eval_n at this preset)"
    )
    parser.add_argument("--probes", type=int, default=100, help="Hutchinson probes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hp = hessian_preset(args.preset)
    config = SETTING.config(args.preset)
    run = SETTING.train(config, progress=False)
    batch = hessian_batch(config, args.batch or hp["eval_n"])
    ckpts = SETTING.llc_steps(config)
    steps = [ckpts[len(ckpts) // 3], ckpts[-1]]
    print(
        f"PyHessian 0.1 vs devbook.hessian: regression run {run.key} ({args.preset}), batch of "
        f"{batch[0].shape[0]} sequences, {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, medians of {args.repeats} interleaved repeats"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        at_init = pyhessian_of(SETTING.load_model(run, 0), batch).trace()
    print(
        f"at initialisation (step 0) PyHessian trace() with its defaults (maxIter=100, "
        f"tol=1e-3) stopped after {len(at_init)} probes; running mean before the last: "
        f"{np.mean(at_init[:-1]):.4g}, after: {np.mean(at_init):.4g}"
    )
    for step in steps:
        model = SETTING.load_model(run, step)
        tr = trace_comparison(model, batch, args.probes, args.repeats)
        report(step, tr, pyhessian_defaults(model, batch), eigen_comparison(model, batch, 1e-3), args.probes)


if __name__ == "__main__":
    main()
