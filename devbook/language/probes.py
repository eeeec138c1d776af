"""The induction-head probes behind the ``cpu`` language preset (paper §4, LM4): what was tried.

Each row is one measured probe run (one thread pinned to one core, a fixed wall-clock budget),
made with ``benchmarks/language_heads.py`` or the same loop with the levers named in
``levers``: the configuration, the training tokens it reached, the best first-layer
previous-token score, the best second-layer prefix-matching score (Olsson et al.'s probe:
BOS + 25 random tokens repeated 4 times; chance ≈ 0.016 on those sequences; the last row
uses the language chapter's own probe instead) and the training
loss at the end. These are records of earlier measurements, shown in the language chapter's
preset note so a reader sees why the ``cpu`` preset is what it is; the chapter's own numbers
are computed by the chapter.
"""

from __future__ import annotations

import pandas as pd

#: When and how the probes were measured.
PROBE_SOURCE = (
    "measured on this book's 2-core machine before the cpu preset was fixed (the last five "
    "on 2026-12-01 and 2026-12-02), one thread per probe, with benchmarks/language_heads.py or its loop with "
    "the levers named: 2 layers, attention only, shortformer positions"
)

#: One row per probe run.
PROBE_RUNS: tuple[dict[str, object], ...] = (
    {
        "configuration": "n_ctx 32 × batch 16, d_model 128, 8 heads × 16, lr 3e-3 (the cpu preset's shape)",
        "levers": "books only, random windows",
        "tokens": "3.1M",
        "previous-token": 0.30,
        "prefix-matching": None,
        "loss": None,
    },
    {
        "configuration": "n_ctx 64 × batch 8, same model",
        "levers": "books only, random windows",
        "tokens": "4.1M",
        "previous-token": 0.19,
        "prefix-matching": None,
        "loss": None,
    },
    {
        "configuration": "n_ctx 128 × batch 4, same model",
        "levers": "books only, random windows",
        "tokens": "3.1M",
        "previous-token": 0.11,
        "prefix-matching": None,
        "loss": None,
    },
    {
        "configuration": "n_ctx 256 × 2 and 512 × 1, same model",
        "levers": "books only, random windows",
        "tokens": "2.6–3.1M",
        "previous-token": 0.04,
        "prefix-matching": None,
        "loss": None,
    },
    {
        "configuration": "n_ctx 128 × batch 8, d_model 128, 4 heads × 32, lr 1e-3",
        "levers": "20 % code, document-aligned windows with BOS, 500-step warm-up, clipping 1.0",
        "tokens": "11.6M",
        "previous-token": 0.039,
        "prefix-matching": 0.015,
        "loss": "3.5–4.2",
    },
    {
        "configuration": "n_ctx 128 × batch 4, same",
        "levers": "30 % code, document-aligned windows with BOS, 500-step warm-up, clipping 1.0",
        "tokens": "12.0M",
        "previous-token": 0.045,
        "prefix-matching": 0.016,
        "loss": "3.1–4.2",
    },
    {
        "configuration": "curriculum: 32 × 16 (8 heads × 16, lr 3e-3) for 6k steps, then 128 × 4",
        "levers": "books only, document-aligned windows with BOS",
        "tokens": "9.6M",
        "previous-token": 0.168,
        "prefix-matching": 0.018,
        "loss": "3.5–4.3",
    },
    {
        "configuration": "the same curriculum",
        "levers": "30 % code, document-aligned windows with BOS",
        "tokens": "9.7M",
        "previous-token": 0.108,
        "prefix-matching": 0.019,
        "loss": "3.1–4.6",
    },
    {
        "configuration": "n_ctx 32 × batch 8 (256 tokens per step), the cpu preset's model",
        "levers": (
            "20 % code (this corpus), random windows; 40,000 steps (32 min), past the ~8M tokens "
            "the published fit 10^5.7 · √(batch · context) predicts"
        ),
        "tokens": "10.2M",
        "previous-token": "0.34 (at 16k steps; 0.285 at the end)",
        "prefix-matching": (
            "0.061 at most (at 6k steps; 0.050 at the end) on this chapter's probe: one repeat "
            "in 32 tokens, chance ≈ 0.05"
        ),
        "loss": "4.20",
    },
)


def probe_table() -> pd.DataFrame:
    """:data:`PROBE_RUNS` as a table (``None`` where a probe did not record the value)."""
    return pd.DataFrame(list(PROBE_RUNS)).astype(object).fillna("—")
