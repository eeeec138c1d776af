"""Essential dynamics and forms of the language transformer (paper App. C.1.2–C.1.3, B.6).

- :func:`forms_preset`: the chapter's sizes (surrogates, smoothing schedule, extreme tokens);
- :func:`load_proxy`: the proxy recorded during training (:mod:`devbook.language.proxy`): the
  logit of the true next token at N fixed tokens-in-context, at linearly spaced steps;
- :func:`search_forms`: :func:`devbook.ed.forms.find_forms` on it (PCA, smoothing, osculating
  circles, forms with their B.6 checks, form potentials and surrogate p-values);
- :func:`new_words` / :func:`induction_patterns`: the two kinds of tokens-in-context of paper
  App. C.1.3 — the true next token begins with a space; the true next token B follows an
  earlier A B in the context, A being the current token;
- :func:`extremes`, :func:`form_contents`: for each form, the K tokens-in-context whose
  normalised form logit ``(f − mean f) / std f`` is largest and smallest, rendered as text,
  and the shares of both kinds among them beside their shares over all N (the base rate);
- :data:`PAPER_FORMS`, :func:`compare_forms`: the paper's forms at 7k and 17.7k, each placed
  in the paper stage it falls in, against the forms found in this run's stage of the same rank.

Used by ``book/language/forms.md``; figures in :mod:`devbook.language.form_plots`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray
from tokenizers import Tokenizer

from devbook import presets
from devbook.ed import FormSearch, find_forms
from devbook.ed.forms import describe_shown as describe_shown
from devbook.ed.smoothing import schedule_sigmas as schedule_sigmas
from devbook.language.proxy import ProxySpec, proxy_pairs, proxy_spec, recorded_proxy
from devbook.language.tokenizer import BOS_ID
from devbook.store import Run

#: The chapter's sizes: ``surrogates`` per null family (20 is the fewest with which p can fall
#: below 0.05); ``sigma`` (start, stop, flat fraction) in records — the paper's code smoothed
#: its 2,000 checkpoints with σ from 1 to 50, 2.5 % of the trajectory, kept here;
#: ``k_extreme`` tokens-in-context on each side of a form's normalised logits.
FORMS_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"surrogates": 5, "sigma": [1.0, 2.0, 0.2], "k_extreme": 8},
    "cpu": {"surrogates": 20, "sigma": [1.0, 20.0, 0.02], "k_extreme": 15},
    "paper": {"surrogates": 50, "sigma": [1.0, 50.0, 0.02], "k_extreme": 15},
}

#: The paper's stages of the language model (paper §4, Table 2): start and end steps.
PAPER_STAGES = pd.DataFrame(
    {"start": [0, 900, 6_500, 8_500, 17_000], "end": [900, 6_500, 8_500, 17_000, 50_000]},
    index=pd.Index(["LM1", "LM2", "LM3", "LM4", "LM5"], name="stage"),
)

#: The paper's forms of the language model (paper App. C.1.2, Table 3): vertex step, influence
#: range and content.
PAPER_FORMS = pd.DataFrame(
    {
        "step": [7_000, 17_700],
        "start": [6_500, 17_500],
        "end": [10_000, 25_000],
        "content": ["new words", "induction patterns"],
    },
    index=pd.Index(["F1", "F2"], name="paper form"),
)

#: σ per record for a preset's ``(start, stop, flat)`` (shared with the regression forms).
sigmas = schedule_sigmas


def forms_preset(preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
    """The chapter's sizes at ``preset`` with ``overrides`` (checked by name and type)."""
    return presets.resolve(FORMS_PRESETS, preset, overrides)


def load_proxy(
    run: Run, n_sequences: int | None = None
) -> tuple[NDArray[np.int64], NDArray[np.float32], ProxySpec]:
    """The recorded proxy of ``run``: steps ``(T,)``, logits ``(T, N)`` and its spec.

    ``n_sequences`` asks for another N than the run's spec (:func:`devbook.language.proxy.proxy_spec`);
    a run that did not record it raises :class:`devbook.language.proxy.ProxyNotRecorded`, a
    non-positive N ``ValueError``.
    """
    spec = proxy_spec(run.config, **({} if n_sequences is None else {"n_sequences": int(n_sequences)}))
    steps, logits = recorded_proxy(run, spec)
    return steps, logits, spec


def search_forms(
    steps: NDArray[np.int64], logits: NDArray[np.float32], hp: dict[str, Any], seed: int = 0
) -> FormSearch:
    """:func:`devbook.ed.forms.find_forms` on the proxy with the chapter's σ schedule and surrogates
    (the same pipeline and null as the regression forms)."""
    sigma = sigmas(len(steps), hp["sigma"])
    return find_forms(logits, steps, sigma=sigma, n_surrogates=hp["surrogates"], seed=seed)


def new_word_tokens(tokenizer: Tokenizer) -> NDArray[np.bool_]:
    """``(vocab,)``: whether each token begins with a space (byte-level BPE marks it ``Ġ``)."""
    vocab = tokenizer.get_vocab_size()
    out = np.zeros(vocab, dtype=bool)
    for i in range(vocab):
        tok = tokenizer.id_to_token(i) or ""
        out[i] = tok.startswith("Ġ") or tok.startswith(" ")
    return out


def new_words(windows: torch.Tensor, positions: torch.Tensor, tokenizer: Tokenizer) -> NDArray[np.bool_]:
    """``(N,)``: whether the true next token ``windows[i, p + 1]`` begins with a space."""
    rows = torch.arange(len(positions))
    nxt = windows[rows, positions + 1].numpy()
    return new_word_tokens(tokenizer)[nxt]


def induction_patterns(windows: torch.Tensor, positions: torch.Tensor) -> NDArray[np.bool_]:
    """``(N,)``: whether pair ``i`` is an induction pattern [A][B] … [A] → [B].

    With A = ``windows[i, p]`` (the current token) and B = ``windows[i, p + 1]`` (the true
    next one): some ``j < p`` has ``windows[i, j] = A`` and ``windows[i, j + 1] = B``.
    """
    w = windows.numpy()
    out = np.zeros(len(positions), dtype=bool)
    for i, p in enumerate(positions.tolist()):
        a, b = w[i, p], w[i, p + 1]
        out[i] = bool(np.any((w[i, :p] == a) & (w[i, 1 : p + 1] == b)))
    return out


def _piece(tokenizer: Tokenizer, token: int) -> str:
    if token == BOS_ID:
        return "⟨eot⟩"  # <|endoftext|>: the window's start and every document boundary
    return tokenizer.decode([int(token)]).replace("\n", "⏎")


def render(window: torch.Tensor, position: int, tokenizer: Tokenizer, width: int = 12) -> str:
    """A token-in-context as text: the last ``width`` tokens up to the current one separated by
    ``/`` (as the paper prints them), the current token in brackets, then ``→`` the true next
    token (a leading space shown as ``␣``)."""
    start = max(0, position - width + 1)
    pieces = [_piece(tokenizer, t) for t in window[start : position + 1].tolist()]
    nxt = _piece(tokenizer, int(window[position + 1]))
    nxt = "␣" + nxt[1:] if nxt.startswith(" ") else nxt
    context = "/".join(pieces[:-1]) + "/" if len(pieces) > 1 else ""
    return f"{'…' if start > 0 else ''}{context}[{pieces[-1]}] → {nxt}"


def normalised(point: NDArray[np.floating]) -> NDArray[np.float64]:
    """``(f − mean f) / std f`` over the N tokens-in-context of a form's logits ``f``."""
    f = np.asarray(point, dtype=np.float64)
    return (f - f.mean()) / max(float(f.std()), 1e-300)


def extremes(point: NDArray[np.floating], k: int) -> dict[str, NDArray[np.int64]]:
    """Indices of the ``k`` largest (``"positive"``) and smallest (``"negative"``) normalised
    entries of ``point``, most extreme first."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    order = np.argsort(normalised(point), kind="stable")
    k = min(k, len(order))
    return {"positive": order[::-1][:k], "negative": order[:k]}


def extreme_examples(
    point: NDArray[np.floating],
    windows: torch.Tensor,
    positions: torch.Tensor,
    tokenizer: Tokenizer,
    k: int,
    kinds: dict[str, NDArray[np.bool_]],
) -> pd.DataFrame:
    """The ``k`` most extreme tokens-in-context on each side: side, normalised logit, text and
    whether each is of the ``kinds`` (name → ``(N,)`` bool)."""
    z = normalised(point)
    rows = []
    for side, idx in extremes(point, k).items():
        for i in idx:
            text = render(windows[i], int(positions[i]), tokenizer)
            rows.append(
                {
                    "side": side,
                    "z": z[i],
                    "token in context": text,
                    **{n: bool(v[i]) for n, v in kinds.items()},
                }
            )
    return pd.DataFrame(rows)


def form_contents(search: FormSearch, kinds: dict[str, NDArray[np.bool_]], k: int) -> pd.DataFrame:
    """Per form (numbered from 1) and side, the share of each kind among its ``k`` most extreme
    tokens-in-context, with the base rate (the share over all N) as a last row."""
    rows = []
    for n, form in enumerate(search.forms):
        for side, idx in extremes(form.point, k).items():
            rows.append(
                {
                    "form": n + 1,
                    "step": form.step,
                    "side": side,
                    **{m: float(v[idx].mean()) for m, v in kinds.items()},
                }
            )
    base = {
        "form": "all N",
        "step": np.nan,
        "side": "base rate",
        **{m: float(v.mean()) for m, v in kinds.items()},
    }
    return pd.DataFrame([*rows, base], columns=["form", "step", "side", *kinds])


def kinds_of(
    config: dict[str, Any], spec: ProxySpec, tokenizer: Tokenizer
) -> tuple[torch.Tensor, torch.Tensor, dict[str, NDArray[np.bool_]]]:
    """The recorded pairs of a run and the two kinds of each: ``windows``, ``positions`` and
    ``{"new words": …, "induction patterns": …}``."""
    windows, positions = proxy_pairs(config, spec)
    kinds = {
        "new words": new_words(windows, positions, tokenizer),
        "induction patterns": induction_patterns(windows, positions),
    }
    return windows, positions, kinds


def stage_of(step: float, stages: pd.DataFrame) -> int:
    """Index of the stage of ``stages`` (columns ``start``, ``end``) holding ``step`` (-1: none);
    a boundary belongs to the stage it ends."""
    for i, (a, b) in enumerate(zip(stages["start"], stages["end"])):
        if a <= step <= b:
            return i
    return -1


def compare_forms(
    table: pd.DataFrame, stages: pd.DataFrame, contents: pd.DataFrame | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """For each paper form: the paper stage it falls in, this run's stage of the same rank, the
    candidate forms inside it with their p-values, and a verdict.

    ``beyond this run`` when this run has fewer stages; ``found`` when a candidate in the stage
    has ``p_value < alpha``, else ``not found``. With ``contents`` (:func:`form_contents`), the
    column ``content agrees`` says whether a significant form there has more of the paper's kind
    among its extreme tokens (either side) than the base rate.
    """
    rows = []
    for name, p in PAPER_FORMS.iterrows():
        rank = stage_of(p["step"], PAPER_STAGES)
        row: dict[str, Any] = {
            "paper form": name,
            "paper stage": PAPER_STAGES.index[rank],
            "content": p["content"],
        }
        if rank >= len(stages):
            rows.append(
                {
                    **row,
                    "run stage": "—",
                    "candidates (p)": "",
                    "verdict": "beyond this run",
                    "content agrees": "",
                }
            )
            continue
        a, b = float(stages["start"].iloc[rank]), float(stages["end"].iloc[rank])
        hit = table[(table["step"] >= a) & (table["step"] <= b)]
        good = hit[hit["p_value"] < alpha]
        listed = ", ".join(f"{i + 1} at {r.step:,.0f} ({r.p_value:.2f})" for i, r in hit.iterrows())
        rows.append(
            {
                **row,
                "run stage": f"LM{rank + 1} ({a:,.0f}–{b:,.0f})",
                "candidates (p)": listed,
                "verdict": "found" if len(good) else "not found",
                "content agrees": _agrees(good, contents, p["content"]),
            }
        )
    return pd.DataFrame(rows).set_index("paper form")


def _agrees(good: pd.DataFrame, contents: pd.DataFrame | None, kind: str) -> str:
    if contents is None or not len(good):
        return ""
    base = float(contents.loc[contents["side"] == "base rate", kind].iloc[0])
    mine = contents[contents["form"].isin([i + 1 for i in good.index])]
    return "yes" if bool((mine[kind] > base).any()) else "no"


def describe_contents(contents: pd.DataFrame, k: int) -> str:
    """One markdown line per form: its shares of the two kinds on each side against the base rate."""
    base = contents[contents["side"] == "base rate"].iloc[0]
    forms = contents[contents["side"] != "base rate"]
    if forms.empty:
        return "No form was found, so there is nothing to interpret."
    lines = []
    for n, part in forms.groupby("form", sort=True):
        pos, neg = (part[part["side"] == s].iloc[0] for s in ("positive", "negative"))
        lines.append(
            f"- Form {n} (step {pos['step']:,.0f}): among its {k} largest normalised logits "
            f"{pos['new words']:.0%} are new words and {pos['induction patterns']:.0%} induction "
            f"patterns; among its {k} smallest, {neg['new words']:.0%} and "
            f"{neg['induction patterns']:.0%} (over all pairs: {base['new words']:.0%} and "
            f"{base['induction patterns']:.0%})."
        )
    return "\n".join(lines)
