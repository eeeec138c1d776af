"""The language chapter's verdicts, computed from the metrics and the LLC sweep (no typed numbers).

Used by the language stages chapter: :func:`largest_drop_stage` picks the stage over which a
metric falls the most (the one Figure 17 shows), :func:`formation_window` says when the best
head's score made most of its rise, :func:`verdicts` writes one markdown line per stage type.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from devbook.language import metrics as lm


def largest_drop_stage(stages: pd.DataFrame, steps: np.ndarray, values: np.ndarray) -> int:
    """Index of the stage over which ``values`` (one per step of ``steps``) falls the most."""
    idx = {int(s): i for i, s in enumerate(steps)}
    drops = [values[idx[r.end]] - values[idx[r.start]] for r in stages.itertuples()]
    return int(np.argmin(drops))


def formation_window(steps: np.ndarray, best: np.ndarray, llc_steps: np.ndarray, llc: np.ndarray) -> str:
    """When the best head's score ``best`` (per step) makes 20–80 % of its rise, with λ̂ there.

    Empty when the score rose by 0.1 or less over training.
    """
    rise = best - best[0]
    if not rise[-1] > 0.1:
        return ""
    s20 = int(steps[np.argmax(rise >= 0.2 * rise[-1])])
    s80 = int(steps[np.argmax(rise >= 0.8 * rise[-1])])
    llc_at = dict(zip(llc_steps, llc))
    return (
        f"The best score makes 20–80 % of its rise between steps {s20:,} and {s80:,}, over "
        f"which $\\hat\\lambda$ goes from {llc_at[s20]:.2f} to {llc_at[s80]:.2f} (its lowest "
        f"value after step 100: {min(v for k, v in llc_at.items() if k > 100):.2f})."
    )


def verdicts(
    res: dict[str, np.ndarray],
    stages: pd.DataFrame,
    llc_steps: np.ndarray,
    llc: np.ndarray,
    n_layers: int,
    threshold: float,
) -> list[str]:
    """One markdown line each on the stages found and on the evidence for LM1–LM4."""
    n_heads = res["prev_token"].shape[-1]
    first, last = lm.head_labels(1, n_heads), lm.head_labels(n_layers, n_heads)
    prev_final, prefix_final = res["prev_token"][-1], res["prefix_matching"][-1]
    prev_heads = [first[h] for h in range(n_heads) if prev_final[h] > threshold]
    ind_heads = [last[h] for h in range(n_heads) if prefix_final[h] > threshold]
    bigram_gap = res["bigram_score"] - res["bigram_entropy"]
    gap = res["pos_loss_ablated"] - res["pos_loss"]
    window = formation_window(res["step"], res["prev_token"].max(axis=1), llc_steps, llc)
    icl_change = float(res["icl_score"][-1] - res["icl_score"][0])
    return [
        f"- **Stages.** The LLC curve splits into {len(stages)} stages of types "
        f"{', '.join(stages['type'])} (the paper: 5, of types A, A, B, A, A).",
        f"- **Bigrams (LM1).** The gap between bigram score and bigram entropy goes from "
        f"{bigram_gap[0]:.2f} to {bigram_gap.min():.2f} nats (smallest at step "
        f"{int(res['step'][np.argmin(bigram_gap)])}).",
        f"- **Positions (LM2).** Zeroing $W_{{pos}}$ costs at most {float(gap[-1].max()):.3f} "
        f"nats at the end (at the first checkpoint: {float(gap[0].max()):.3f}); the 3-gram score "
        f"ends at {float(res['ngram_score_3'][-1]):.2f}.",
        f"- **Previous-token heads (LM3).** Best first-layer head: "
        f"{first[int(np.argmax(prev_final))]} with score {prev_final.max():.2f}; heads above "
        f"{threshold}: {', '.join(prev_heads) or 'none'}. {window}",
        f"- **Induction heads (LM4).** Best layer-{n_layers} prefix-matching head: "
        f"{last[int(np.argmax(prefix_final))]} with score {prefix_final.max():.2f}; heads above "
        f"{threshold}: {', '.join(ind_heads) or 'none'}; the ICL score moved by "
        f"{icl_change:+.3f} nats over training.",
    ]
