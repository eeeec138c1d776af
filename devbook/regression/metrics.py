"""Behavioural and structural metrics of the regression transformer (paper App. D.2–D.3).

Everything is evaluated from a checkpoint's weights on fixed, seeded held-out batches
(:func:`devbook.regression.data.fixed_dataset`), so every checkpoint sees the same inputs.

:func:`checkpoint_metrics` ``(model, probes)`` returns ``(scalars, vectors)`` for one model;
:func:`evaluate_run` ``(run)`` evaluates every checkpoint and caches, in the run store, a
:class:`RunMetrics`: ``table`` (a DataFrame, one row per checkpoint, column ``step`` first) and
``vectors`` (``{name: array (n_checkpoints, ...)}``). Scalar columns (``K``-indexed from 1):

- ``loss``: test MSE; ``loss_k{k}``: per-token loss ℓ_k = E (ŷ_k − y_k)²;
  ``icl_1_D`` = ℓ_D − ℓ_1 and ``icl_D_K`` = ℓ_K − ℓ_D (D.2.2; negative = learning in context).
- ``prior_dist_zero`` = E (ŷ_k)², ``prior_dist_task_prior`` = E (ŷ_k − t̄·x_k)² with t̄ the
  mean training task (D.2.1).
- ``ood_inputs_g{g}``: MSE / g² with x ~ N(0, g² I); ``ood_tasks_g{g}``: MSE / g² with
  t ~ N(0, g² I) (D.2.3).
- ``emb_sv{i}`` (D+1 values) and ``pos_sv{i}`` (min(2K, d) values): singular values of the token
  embedding ``(d, D+1)`` and positional embedding ``(2K, d)``, descending (D.3.1–2);
  ``emb_pos_cos{i}``: cosines of the principal angles between the token-embedding column space
  and the top-(D+1) right-singular subspace of the positional embedding (both in R^d);
  ``emb_pos_alignment`` their mean (1 = the same subspace).
- ``unemb_bias`` (the read-out component's bias), ``unemb_eff_bias`` = W₀·β + b₀ (D.3.3).
- ``ln_collapse_{ln}``: fraction of LayerNorm weights with |γ| < ``ln_threshold`` for
  ``ln`` in ``b{i}.ln1``, ``b{i}.ln2``, ``final`` (D.3.4).
- per head ``b{l}h{h}{q}`` (blocks and heads from 1, ``q`` = ``x`` or ``y``: queries at x- or
  y-tokens, positions 1 … 2K−2, i.e. without the first and the untrained final token):
  ``attn_entropy_*``: entropy of the pattern row over the i+1 visible tokens / log(i+1) (D.3.5);
  ``attn_variability_*``: ½ Σ_j |A_ij − E A_ij| averaged over samples (in [0, 1]);
  ``attn_self_*`` (j = i), ``attn_prev_token_*`` (j = i−1), ``attn_prev_x_*`` /
  ``attn_prev_y_*`` (the latest x- / y-token before i−1), ``attn_to_x_*`` / ``attn_to_y_*``
  (total attention to x- / y-tokens) (D.3.6); see :func:`classify_heads`.

``vectors``: ``unemb_weight`` (W₀, (n, d)), ``unemb_eff_weight`` (W₀ ⊙ γ_final),
``ln_weight_{ln}`` / ``ln_bias_{ln}`` ((n, d) each), ``emb_sv`` and ``pos_sv``.

Used by ``book/regression/stages.md`` (behavioural and structural evidence of the stages).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from devbook.regression.data import Batch, RegressionData, fixed_dataset, readout, tokenise
from devbook.regression.model import RegressionTransformer
from devbook.regression.setting import SETTING
from devbook.setting import evaluate_checkpoints
from devbook.store import Run

DEFAULT_GAINS: tuple[float, ...] = (0.5, 2.0, 4.0, 8.0)
HEAD_LABELS = ("self", "prev_token", "prev_x", "prev_y")


@dataclass(frozen=True)
class Probes:
    """The fixed held-out batches of one run: ``eval`` plus one batch per OOD gain and family."""

    eval: Batch
    ood_inputs: dict[float, Batch]
    ood_tasks: dict[float, Batch]
    task_prior_mean: Tensor  # (D,)


def make_probes(
    config: dict[str, Any], n: int = 1024, gains: Sequence[float] = DEFAULT_GAINS, seed: int = 0
) -> Probes:
    """Seeded held-out batches of ``n`` sequences for ``config`` (identical on every call)."""
    return Probes(
        eval=fixed_dataset(config, n, "eval", seed),
        ood_inputs={g: fixed_dataset(config, n, f"ood-inputs-{g}", seed, input_scale=g) for g in gains},
        ood_tasks={
            g: fixed_dataset(config, n, f"ood-tasks-{g}", seed, task_scale=g, gaussian_tasks=True)
            for g in gains
        },
        task_prior_mean=RegressionData.from_config(config).task_prior_mean(),
    )


def per_token_losses(model: RegressionTransformer, batch: Batch) -> Tensor:
    """ℓ_k for k = 1..K, shape ``(K,)``: mean over the batch of (ŷ_k − y_k)²."""
    with torch.no_grad():
        return ((model.predict(batch.xs, batch.ys) - batch.ys) ** 2).mean(0)


def icl_scores(losses: Tensor, task_dim: int) -> tuple[float, float]:
    """``(ICL_{1:D}, ICL_{D:K}) = (ℓ_D − ℓ_1, ℓ_K − ℓ_D)`` from per-token losses ``(K,)``."""
    return float(losses[task_dim - 1] - losses[0]), float(losses[-1] - losses[task_dim - 1])


def attention_scores(patterns: Sequence[Tensor]) -> dict[str, float]:
    """Per-head entropy, variability and position scores from patterns ``[(B, H, T, T)]``.

    Queries at positions 1 … T−2 (0-based), split by parity into x-queries (even) and y-queries
    (odd); see the module docstring for the definitions.
    """
    out: dict[str, float] = {}
    T = patterns[0].shape[-1]
    idx = torch.arange(T)
    queries = {
        "x": [i for i in range(1, T - 1) if i % 2 == 0],
        "y": [i for i in range(1, T - 1) if i % 2 == 1],
    }
    for layer, A in enumerate(patterns, start=1):
        A = A.double()
        plogp = torch.where(A > 0, A * A.clamp_min(1e-300).log(), torch.zeros_like(A))
        entropy = -plogp.sum(-1) / torch.log(idx + 1.0).clamp_min(1e-12)  # (B, H, T); i=0 unused
        variability = 0.5 * (A - A.mean(0, keepdim=True)).abs().sum(-1).mean(0)  # (H, T)
        x_mask = (idx % 2 == 0).double()
        for q, rows in queries.items():
            if not rows:
                continue
            r = torch.tensor(rows)
            prev_x = torch.tensor([max((j for j in range(i - 1) if j % 2 == 0), default=-1) for i in rows])
            prev_y = torch.tensor([max((j for j in range(i - 1) if j % 2 == 1), default=-1) for i in rows])
            Ar = A[:, :, r, :]  # (B, H, R, T)

            def gather(cols: Tensor, A: Tensor = A, Ar: Tensor = Ar, rows: list = rows) -> Tensor:
                """Mean over samples and rows of A[row, cols[row]] (rows without such a column
                are left out); shape (H,)."""
                valid = cols >= 0
                if not valid.any():
                    return torch.zeros(A.shape[1], dtype=A.dtype)
                picked = Ar[:, :, torch.arange(len(rows))[valid], cols[valid]]
                return picked.mean((0, 2))

            scores = {
                "attn_entropy": entropy[:, :, r].mean((0, 2)),
                "attn_variability": variability[:, r].mean(-1),
                "attn_self": gather(r),
                "attn_prev_token": gather(r - 1),
                "attn_prev_x": gather(prev_x),
                "attn_prev_y": gather(prev_y),
                "attn_to_x": (Ar * x_mask).sum(-1).mean((0, 2)),
                "attn_to_y": (Ar * (1 - x_mask)).sum(-1).mean((0, 2)),
            }
            for name, per_head in scores.items():
                for h, v in enumerate(per_head.tolist(), start=1):
                    out[f"{name}_b{layer}h{h}{q}"] = v
    return out


def _ln_modules(model: RegressionTransformer) -> dict[str, torch.nn.LayerNorm]:
    lns = {}
    for i, block in enumerate(model.blocks, start=1):
        lns[f"b{i}.ln1"], lns[f"b{i}.ln2"] = block.ln1, block.ln2
    lns["final"] = model.ln_final
    return lns


def structure_metrics(
    model: RegressionTransformer, ln_threshold: float = 0.1
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Weight-only metrics: embedding spectra/alignment, unembedding, layer-norm collapse."""
    scalars: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        W_E = model.token_embedding.weight.double()  # (d, D+1)
        P = model.pos_embedding.double()  # (2K, d)
        U_E, s_E, _ = torch.linalg.svd(W_E, full_matrices=False)
        _, s_P, Vh_P = torch.linalg.svd(P, full_matrices=False)
        r = W_E.shape[1]
        cos = torch.linalg.svdvals(U_E.T @ Vh_P[:r].T).clamp(max=1.0)
        vectors["emb_sv"], vectors["pos_sv"] = s_E.numpy(), s_P.numpy()
        scalars.update({f"emb_sv{i}": float(v) for i, v in enumerate(s_E)})
        scalars.update({f"pos_sv{i}": float(v) for i, v in enumerate(s_P)})
        scalars.update({f"emb_pos_cos{i}": float(v) for i, v in enumerate(cos)})
        scalars["emb_pos_alignment"] = float(cos.mean())
        W0 = model.unembedding.weight[0].double()
        gamma, beta = model.ln_final.weight.double(), model.ln_final.bias.double()
        vectors["unemb_weight"], vectors["unemb_eff_weight"] = W0.numpy(), (W0 * gamma).numpy()
        scalars["unemb_bias"] = float(model.unembedding.bias[0])
        scalars["unemb_eff_bias"] = float(W0 @ beta + model.unembedding.bias[0].double())
        for name, ln in _ln_modules(model).items():
            vectors[f"ln_weight_{name}"] = ln.weight.double().numpy().copy()
            vectors[f"ln_bias_{name}"] = ln.bias.double().numpy().copy()
            scalars[f"ln_collapse_{name}"] = float((ln.weight.abs() < ln_threshold).double().mean())
    return scalars, vectors


def checkpoint_metrics(
    model: RegressionTransformer, probes: Probes, ln_threshold: float = 0.1
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """All metrics of one model: ``(scalars, vectors)`` (see the module docstring)."""
    model.eval()
    D = model.task_dim
    b = probes.eval
    with torch.no_grad():
        out, patterns = model(tokenise(b.xs, b.ys), return_attn=True)
        pred = readout(out)
    losses = ((pred - b.ys) ** 2).mean(0)
    scalars: dict[str, float] = {"loss": float(losses.mean())}
    scalars.update({f"loss_k{k}": float(v) for k, v in enumerate(losses, start=1)})
    scalars["icl_1_D"], scalars["icl_D_K"] = icl_scores(losses, D)
    prior_pred = b.xs @ probes.task_prior_mean
    scalars["prior_dist_zero"] = float((pred**2).mean())
    scalars["prior_dist_task_prior"] = float(((pred - prior_pred) ** 2).mean())
    for family, batches in (("inputs", probes.ood_inputs), ("tasks", probes.ood_tasks)):
        for g, batch in batches.items():
            scalars[f"ood_{family}_g{g:g}"] = float(per_token_losses(model, batch).mean() / g**2)
    scalars.update(attention_scores(patterns))
    s, vectors = structure_metrics(model, ln_threshold)
    scalars.update(s)
    return scalars, vectors


@dataclass(frozen=True)
class RunMetrics:
    """Metrics over a run's checkpoints: ``table`` (one row per step) and stacked ``vectors``."""

    table: pd.DataFrame
    vectors: dict[str, np.ndarray]


def evaluate_run(
    run: Run,
    steps: Sequence[int],
    n: int = 1024,
    gains: Sequence[float] = DEFAULT_GAINS,
    seed: int = 0,
    ln_threshold: float = 0.1,
    progress: bool = True,
) -> RunMetrics:
    """:func:`checkpoint_metrics` at ``steps``, each checkpoint cached in the store.

    The cache key is the evaluation config (n, gains, seed, ln_threshold) and the step, so a
    second call reads the stored rows and an interrupted evaluation resumes.
    """
    steps = sorted(int(s) for s in steps)
    eval_config = {"n": n, "gains": [float(g) for g in gains], "seed": seed, "ln_threshold": ln_threshold}
    probes = make_probes(run.config, n, gains, seed)

    def compute(step: int) -> dict[str, np.ndarray]:
        scalars, vectors = checkpoint_metrics(SETTING.load_model(run, step), probes, ln_threshold)
        return {
            **{f"table:{k}": np.asarray(v) for k, v in scalars.items()},
            **{f"vec:{k}": np.asarray(v) for k, v in vectors.items()},
        }

    results = evaluate_checkpoints(run, "regression-metrics", eval_config, steps, compute, progress=progress)
    table = pd.DataFrame(
        [
            {"step": step, **{k.removeprefix("table:"): r[k].item() for k in r if k.startswith("table:")}}
            for step, r in zip(steps, results)
        ]
    )
    vectors = {
        k.removeprefix("vec:"): np.stack([r[k] for r in results]) for k in results[0] if k.startswith("vec:")
    }
    return RunMetrics(table, vectors)


def classify_heads(
    row: pd.Series | dict[str, float], threshold: float = 0.5, max_variability: float = 0.2
) -> pd.DataFrame:
    """Label each (block, head, query type) from one metrics row (D.3.6).

    The label is the largest of ``attn_self``/``attn_prev_token``/``attn_prev_x``/``attn_prev_y``
    when it exceeds ``threshold`` and the pattern is consistent (variability at most
    ``max_variability``); otherwise ``"mixed"``. Returns columns ``head`` (e.g. ``b1h3y``),
    ``block``, ``index``, ``query``, ``label``, ``score``, ``entropy``, ``variability``.
    """
    row = dict(row)
    heads = sorted({k.removeprefix("attn_self_") for k in row if k.startswith("attn_self_")})
    out = []
    for head in heads:
        scores = {lab: row[f"attn_{lab}_{head}"] for lab in HEAD_LABELS}
        best = max(scores, key=lambda lab: scores[lab])
        ok = scores[best] > threshold and row[f"attn_variability_{head}"] <= max_variability
        block, rest = head[1:].split("h")
        out.append(
            {
                "head": head,
                "block": int(block),
                "index": int(rest[:-1]),
                "query": rest[-1],
                "label": best if ok else "mixed",
                "score": scores[best],
                "entropy": row[f"attn_entropy_{head}"],
                "variability": row[f"attn_variability_{head}"],
            }
        )
    return pd.DataFrame(out)
