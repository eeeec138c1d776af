"""How fast previous-token and induction heads form for a language config on this machine.

The probe behind ``devbook.language.config.CPU_PRESET_NOTE``: it trains the ``cpu`` preset
with the given overrides (AdamW as ``devbook.language.train``, fresh batch each step, nothing
cached) for a wall-clock budget and, every ``--every`` steps, prints one JSON line: steps,
tokens, seconds, a running training loss, the best first-layer previous-token score, the best
last-layer prefix-matching score (both as in ``devbook.language.metrics``, on 200 synthetic
sequences) and the ICL score on 32 validation windows, all from ``lm.evaluate``. Usage, one
thread per probe::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/language_heads.py \\
        --override '{"n_ctx": 32, "batch_size": 16}' --minutes 25 --every 1000

The note's numbers came from 25-minute runs at 512 tokens per step with n_ctx 32, 64, 128,
256 and 512 (batch 16, 8, 4, 2, 1), one core each.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from devbook.language import SETTING
from devbook.language import metrics as lm
from devbook.language.data import language_data
from devbook.language.model import loss_fn, make_model
from devbook.rng import generator


def head_scores(model: torch.nn.Module, md: lm.MetricData) -> dict[str, float]:
    """Best previous-token and prefix-matching head and the ICL score, from ``lm.evaluate``."""
    out = lm.evaluate(model, md)
    model.train()
    return {
        "prev": round(float(out["prev_token"].max()), 3),
        "prefix": round(float(out["prefix_matching"].max()), 3),
        "icl": round(float(out["icl_score"]), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--override", default="{}", help="JSON overrides of the cpu preset")
    parser.add_argument("--minutes", type=float, default=25.0)
    parser.add_argument("--every", type=int, default=1000)
    args = parser.parse_args()
    cfg = SETTING.config("cpu", **json.loads(args.override))
    data = language_data(cfg)
    md = lm.metric_data(data, cfg["n_ctx"], cfg["d_vocab"], 32, 200, seed=0)
    model = make_model(cfg)
    opt = torch.optim.AdamW(
        model.parameters(), lr=cfg["lr"], betas=(0.9, 0.999), weight_decay=cfg["weight_decay"]
    )
    batches = generator(cfg["seed"], "batches")
    start, step, running = time.perf_counter(), 0, float("nan")
    while time.perf_counter() - start < args.minutes * 60:
        loss = loss_fn(model, (data.sample("train", cfg["batch_size"], cfg["n_ctx"], batches),))
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        running = loss.item() if step == 1 else 0.98 * running + 0.02 * loss.item()
        if step % args.every == 0:
            print(
                json.dumps(
                    {
                        "step": step,
                        "tokens": step * cfg["batch_size"] * cfg["n_ctx"],
                        "seconds": round(time.perf_counter() - start),
                        "loss": round(running, 3),
                        **head_scores(model, md),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
