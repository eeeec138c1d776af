"""Behavioural and structural metrics of the language stages (paper App. C).

:class:`MetricData` fixes everything a metric evaluates on (validation windows, the empirical
bigram table, common n-grams, synthetic sequences), built once per run by
:func:`metric_data`; :func:`evaluate` computes every metric of one checkpoint:

- ``loss_by_position`` (n_ctx - 1,): validation loss at each position;
- ``bigram_score`` / ``bigram_entropy``: cross-entropy between the empirical next-token
  distribution given the current token and the model's prediction, and its floor (C.2.1);
- ``ngram_score_{n}`` (n = 3, 4): loss at position n of validation windows divided by the loss
  on the final token of the common n-grams (C.2.2; > 1 once common n-grams are learnt);
- ``icl_score``: loss at position ``round(500/1024·n_ctx)`` minus loss at ``round(50/1024·n_ctx)``
  (C.2.3, scaled to the context);
- ``pos_loss`` / ``pos_loss_ablated`` (len(positions),): loss at :func:`ablation_positions` with
  W_pos intact / zeroed (C.3.1);
- ``prev_token`` (n_heads,): attention of each layer-1 head to the previous token at the last
  position of random sequences of length 16–64 after BOS (C.3.3);
- ``prefix_matching`` (n_heads,): attention of each last-layer head from the second A to the
  token after the first A in sequences ``… A B … A …`` of length 128 (C.3.4);
- ``k_composition`` (n_heads, n_heads): K-composition of layer-1 heads (rows) into layer-2
  heads (columns) (C.3.2; zeros for one layer).

:func:`token_loss_change` gives the per-token loss change on a passage between two
checkpoints (Figure 17); :func:`induction_opportunity` how often copying from context (the
induction rule) could predict the next token, and :func:`induction_rule_share` how often the
deterministic rule (copy what followed the most recent earlier occurrence) does: properties of
the data and the context length. Used by ``book/language/stages.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from devbook.language import tokenizer as tk
from devbook.language.data import LanguageData
from devbook.language.model import token_losses
from devbook.setting import evaluate_checkpoints
from devbook.store import Run

PAPER_POSITIONS: tuple[int, ...] = (1, 2, 3, 5, 10, 20, 30, 50, 100, 200, 300, 500, 1000)


def ablation_positions(n_ctx: int) -> list[int]:
    """The paper's probe positions (C.3.1) that fit a context of ``n_ctx`` tokens."""
    return [p for p in PAPER_POSITIONS if p < n_ctx - 1]


def icl_positions(n_ctx: int) -> tuple[int, int]:
    """(early, late) loss positions of the ICL score: the paper's 50 and 500 of 1024, rescaled."""
    early = max(1, round(50 / 1024 * n_ctx))
    late = min(n_ctx - 2, max(early + 1, round(500 / 1024 * n_ctx)))
    return early, late


def bigram_counts(stream: np.ndarray, d_vocab: int) -> sp.csr_matrix:
    """Counts of (current, next) token pairs in ``stream``: a sparse ``(d_vocab, d_vocab)`` matrix."""
    a, b = stream[:-1].astype(np.int64), stream[1:].astype(np.int64)
    ones = np.ones(len(a), dtype=np.float64)
    return sp.csr_matrix((ones, (a, b)), shape=(d_vocab, d_vocab))


@dataclass
class MetricData:
    """Fixed evaluation inputs of one run (shapes in the field comments)."""

    windows: torch.Tensor  # (n_eval, n_ctx) validation windows, BOS first
    bigram: sp.csr_matrix  # (d_vocab, d_vocab) row-normalised empirical bigram table
    ngrams: dict[int, torch.Tensor]  # n -> (<=1000, n) common n-grams (5k-token ids)
    prev_seqs: list[torch.Tensor]  # batches (b, L) of random sequences, one L per batch
    prefix_seqs: torch.Tensor  # (n_synthetic, L) sequences "… A B … A …"
    prefix_query: torch.Tensor  # (n_synthetic,) position of the second A
    prefix_key: torch.Tensor  # (n_synthetic,) position of B


def metric_data(
    data: LanguageData, n_ctx: int, d_vocab: int, n_eval: int, n_synthetic: int, seed: int = 0
) -> MetricData:
    """Build the evaluation inputs (validation windows, bigram table, n-grams, synthetic data)."""
    g = torch.Generator().manual_seed(seed)
    windows = data.fixed("validation", n_eval, n_ctx, seed)
    counts = bigram_counts(data.streams["train"], d_vocab)
    rows = np.asarray(counts.sum(axis=1)).ravel()
    bigram = sp.diags(1.0 / np.maximum(rows, 1.0)) @ counts
    ngrams = {n: torch.from_numpy(tk.common_ngrams(data.tokenizer, data.large_tokenizer, n)) for n in (3, 4)}
    # previous-token data: lengths 16..64 (clipped to the context), grouped by length
    lengths = torch.randint(16, 65, (n_synthetic,), generator=g).clamp(max=n_ctx)
    prev = []
    for L in sorted(set(lengths.tolist())):
        b = int((lengths == L).sum())
        body = torch.randint(1, d_vocab, (b, L - 1), generator=g)
        prev.append(torch.cat([torch.full((b, 1), tk.BOS_ID), body], dim=1))
    # prefix matching: A in the first half, B right after it, A again in the second half
    L = min(128, n_ctx)
    a = torch.randint(1, d_vocab, (n_synthetic,), generator=g)
    b = (a + torch.randint(1, d_vocab - 1, (n_synthetic,), generator=g) - 1) % (d_vocab - 1) + 1
    lo, hi = torch.minimum(a, b)[:, None], torch.maximum(a, b)[:, None]
    seqs = torch.randint(1, d_vocab - 2, (n_synthetic, L), generator=g)  # then skip A and B:
    seqs = seqs + (seqs >= lo)
    seqs = seqs + (seqs >= hi)
    first = torch.randint(1, L // 2 - 1, (n_synthetic,), generator=g)
    second = torch.randint(L // 2, L, (n_synthetic,), generator=g)
    rows_i = torch.arange(n_synthetic)
    seqs[:, 0] = tk.BOS_ID
    seqs[rows_i, first] = a
    seqs[rows_i, first + 1] = b
    seqs[rows_i, second] = a
    return MetricData(windows, bigram.tocsr(), ngrams, prev, seqs, second, first + 1)


def _zero_pos(x: torch.Tensor, hook: object) -> torch.Tensor:
    return torch.zeros_like(x)


@torch.no_grad()
def _pattern(model: nn.Module, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """Attention pattern of ``layer``: ``(batch, n_heads, query, key)``."""
    name = f"blocks.{layer}.attn.hook_pattern"
    _, cache = model.run_with_cache(tokens, names_filter=name, stop_at_layer=layer + 1)
    return cache[name]


@torch.no_grad()
def evaluate(model: nn.Module, md: MetricData, batch_size: int = 16) -> dict[str, np.ndarray]:
    """All metrics of one checkpoint (see the module docstring); values are numpy arrays."""
    model.eval()
    n_ctx = md.windows.shape[1]
    losses, ablated, bigram_ce, bigram_h = [], [], [], []
    for start in range(0, len(md.windows), batch_size):
        tokens = md.windows[start : start + batch_size]
        logits = model(tokens, return_type="logits")[:, :-1]
        logp = torch.log_softmax(logits.double(), dim=-1)
        losses.append(-logp.gather(-1, tokens[:, 1:, None]).squeeze(-1))
        cur = tokens[:, :-1].reshape(-1).numpy()
        p = md.bigram[cur]  # (positions, vocab) sparse
        lp = logp.reshape(-1, logp.shape[-1]).numpy()
        coo = p.tocoo()
        ce = np.zeros(len(cur))
        np.add.at(ce, coo.row, -coo.data * lp[coo.row, coo.col])
        ent = np.zeros(len(cur))
        np.add.at(ent, coo.row, -coo.data * np.log(coo.data))
        has = np.asarray(p.sum(axis=1)).ravel() > 0  # tokens never seen in training: skipped
        bigram_ce.append(ce[has])
        bigram_h.append(ent[has])
        logits_abl = model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", _zero_pos)])
        lp_abl = torch.log_softmax(logits_abl[:, :-1].double(), dim=-1)
        ablated.append(-lp_abl.gather(-1, tokens[:, 1:, None]).squeeze(-1))
    by_pos = torch.cat(losses).mean(0).numpy()
    by_pos_abl = torch.cat(ablated).mean(0).numpy()
    positions = ablation_positions(n_ctx)
    early, late = icl_positions(n_ctx)
    out: dict[str, np.ndarray] = {
        "loss": np.asarray(by_pos.mean()),
        "loss_by_position": by_pos,
        "bigram_score": np.asarray(np.concatenate(bigram_ce).mean()),
        "bigram_entropy": np.asarray(np.concatenate(bigram_h).mean()),
        "icl_score": np.asarray(by_pos[late - 1] - by_pos[early - 1]),
        "pos_loss": by_pos[np.asarray(positions) - 1],
        "pos_loss_ablated": by_pos_abl[np.asarray(positions) - 1],
    }
    # loss_by_position[i] is the loss of predicting token i+1 from tokens 0..i
    for n, grams in md.ngrams.items():
        seqs = torch.cat([torch.full((len(grams), 1), tk.BOS_ID), grams], dim=1)
        ngram_loss = token_losses(model, seqs)[:, -1].mean().item()
        out[f"ngram_loss_{n}"] = np.asarray(ngram_loss)
        out[f"ngram_score_{n}"] = np.asarray(by_pos[n - 1] / ngram_loss)
    prev = [_pattern(model, s, 0)[:, :, -1, -2] for s in md.prev_seqs]
    out["prev_token"] = torch.cat(prev).mean(0).numpy()
    last = model.cfg.n_layers - 1
    scores = []
    for start in range(0, len(md.prefix_seqs), batch_size):
        sl = slice(start, start + batch_size)
        pat = _pattern(model, md.prefix_seqs[sl], last)
        rows = torch.arange(pat.shape[0])
        scores.append(pat[rows, :, md.prefix_query[sl], md.prefix_key[sl]])
    out["prefix_matching"] = torch.cat(scores).mean(0).numpy()
    n_heads = model.cfg.n_heads
    if model.cfg.n_layers > 1:
        out["k_composition"] = model.all_composition_scores("K")[0, :, 1, :].detach().numpy()
    else:
        out["k_composition"] = np.zeros((n_heads, n_heads))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


@torch.no_grad()
def token_loss_change(
    before: nn.Module, after: nn.Module, tokens: torch.Tensor, tokenizer: object
) -> tuple[list[str], np.ndarray]:
    """Per-token loss change ``after − before`` on a passage (Figure 17).

    ``tokens``: one window ``(n,)`` or consecutive windows ``(k, n)`` (as from
    ``LanguageData.passage``), each starting with BOS. Returns the predicted tokens' strings
    and the changes (negative = learnt), ``k · (n − 1)`` of each, in reading order.
    """
    seq = tokens if tokens.ndim == 2 else tokens[None]
    delta = token_losses(after, seq) - token_losses(before, seq)
    words = [tokenizer.decode([int(t)]) for t in seq[:, 1:].reshape(-1)]
    return words, delta.reshape(-1).numpy()


def induction_opportunity(windows: torch.Tensor) -> float:
    """Fraction of next-token targets that the induction rule ``… A B … A → B`` gets right.

    ``windows`` (batch, n): for each position i ≥ 1 with a target, whether some j < i has
    ``tokens[j] == tokens[i]`` and ``tokens[j + 1] == tokens[i + 1]``. Positions 0 and n-1
    are not counted (no earlier token / no target).
    """
    if windows.ndim != 2 or windows.shape[1] < 3:
        raise ValueError(f"windows must have shape (batch, n) with n >= 3, got {tuple(windows.shape)}")
    n = windows.shape[1]
    same = windows[:, :-1, None] == windows[:, None, :-1]  # [b, i, j]: tokens[i] == tokens[j]
    follow = windows[:, 1:, None] == windows[:, None, 1:]  # tokens[i+1] == tokens[j+1]
    earlier = torch.ones(n - 1, n - 1, dtype=torch.bool).tril(-1)  # j < i
    hit = (same & follow & earlier).any(-1)[:, 1:]
    return float(hit.float().mean())


def induction_rule_share(tokens: np.ndarray | torch.Tensor, n_ctx: int) -> float:
    """Share of next tokens that the induction rule "… A B … A → B" predicts in windows.

    In each window ``x_0 … x_{n_ctx-1}`` and at each position ``1 <= t <= n_ctx - 2``, the rule
    finds the most recent earlier occurrence ``s < t`` of ``x_t`` (``x_s == x_t``) and predicts
    ``x_{s+1}``; a position with no earlier occurrence counts as not predicted.

    Parameters
    ----------
    tokens : numpy.ndarray or torch.Tensor of integers
        Windows ``(N, n_ctx)`` (as from ``LanguageData.fixed``), or one stream ``(n,)`` cut into
        ``n // n_ctx`` consecutive windows (the rest dropped).
    n_ctx : int
        Window length, at least 3 (the number of columns of a 2-D ``tokens``).

    Returns
    -------
    float
        Right predictions / ``N · (n_ctx − 2)`` positions, in [0, 1].
    """
    x = tokens.detach().cpu().numpy() if isinstance(tokens, torch.Tensor) else np.asarray(tokens)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"tokens must be integer token ids, got dtype {x.dtype}")
    if isinstance(n_ctx, bool) or not isinstance(n_ctx, int | np.integer) or n_ctx < 3:
        raise ValueError(f"n_ctx must be an integer >= 3 (a window with a target after t = 1), got {n_ctx!r}")
    if x.ndim == 1:
        x = x[: len(x) // n_ctx * n_ctx].reshape(-1, n_ctx)
    elif x.ndim != 2 or x.shape[1] != n_ctx:
        raise ValueError(f"tokens must have shape (n,) or (N, n_ctx = {n_ctx}), got {x.shape}")
    if len(x) == 0:
        raise ValueError(f"no window of {n_ctx} tokens in tokens of shape {tokens.shape}")
    rows = np.arange(len(x))[:, None]
    order = np.argsort(x, axis=1, kind="stable")  # positions grouped by token, increasing
    ranked = np.take_along_axis(x, order, axis=1)
    prev = np.full(x.shape, -1, dtype=np.int64)  # most recent earlier position of the same token
    prev[rows, order[:, 1:]] = np.where(ranked[:, 1:] == ranked[:, :-1], order[:, :-1], -1)
    s = prev[:, 1:-1]  # positions t = 1 … n_ctx - 2
    hit = (s >= 0) & (x[rows, np.maximum(s, 0) + 1] == x[:, 2:])
    return float(hit.mean())


def evaluate_run(
    run: Run,
    build_model: Callable[[int], nn.Module],
    md: MetricData,
    steps: list[int],
    md_key: dict,
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """:func:`evaluate` at every checkpoint in ``steps``, cached per step in the run store.

    ``build_model(step)`` loads a checkpoint; ``md_key`` (JSON) identifies how ``md`` was built
    (part of the cache key). Returns ``{"step": (S,), metric: (S, ...)}`` stacked over steps.
    """
    results = evaluate_checkpoints(
        run, "lm-metrics", md_key, steps, lambda step: evaluate(build_model(step), md), progress=progress
    )
    out = {"step": np.asarray(steps)}
    for key in results[0]:
        out[key] = np.stack([r[key] for r in results])
    return out


def common_ngrams_preview(data: LanguageData, n: int, count: int) -> np.ndarray:
    """The first ``count`` common n-grams of ``data``'s tokenizers, ``(count, n)`` token ids."""
    return tk.common_ngrams(data.tokenizer, data.large_tokenizer, n, count)


def head_labels(layer: int, n_heads: int) -> list[str]:
    """Paper-style head names, 1-based: ``L{layer}H{h}`` (layer 1 is the first layer)."""
    return [f"L{layer}H{h + 1}" for h in range(n_heads)]
