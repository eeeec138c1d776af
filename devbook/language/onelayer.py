"""The one-layer language model beside the two-layer one (paper App. C.4).

- :func:`staged_run`: the language chapter's pipeline for one run config (train through the
  run store, the LLC sweep, the stage metrics, :func:`devbook.stages.find_stages`), with the
  same calls and the same tolerance as ``book/language/stages.md``; a cached run is only read;
- :func:`one_layer_config`: the two-layer run config with ``n_layers = 1``, trained for the
  first share of its steps (:data:`ONE_LAYER_SHARE`) at the two-layer run's checkpoints;
- :func:`boundaries`, :func:`compare_boundaries`: the stage boundaries of two runs checkpoint by
  checkpoint (:class:`BoundaryComparison`);
- :func:`loss_fall_share`: how much of its total fall the loss has made by a step;
- :func:`evidence_changes`: the change of the bigram, positional and n-gram evidence over each
  stage;
- :func:`comparison_markdown`: the chapter's sentences on the comparison, built from the
  measurement;
- :func:`llc_comparison_figure`: both LLC curves with their boundaries.

Used by ``book/language/one-layer.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from devbook.calibrated import Calibrated
from devbook.language import metrics as lm
from devbook.language.data import LanguageData, language_data
from devbook.language.setting import SETTING
from devbook.minimum import Settling, settling
from devbook.stages import Stages, find_stages, stage_changes
from devbook.store import Run
from devbook.sweep import LLCSweep

#: Share of the two-layer run's steps the one-layer run trains, per preset. AdamW without a
#: schedule takes the same first steps whatever the run's length, so a shorter run is the start
#: of the full one. ``cpu``: a quarter, so that both language chapters fit their budget; the
#: paper's first boundaries (step 900 of 50k) lie far inside it.
ONE_LAYER_SHARE: dict[str, float] = {"smoke": 1.0, "cpu": 0.25, "paper": 1.0}


def one_layer_config(two_layer: dict[str, Any], share: float) -> dict[str, Any]:
    """The one-layer run config for the two-layer run config ``two_layer``.

    The same config with ``n_layers = 1``, trained up to the first of the two-layer run's
    checkpoints at or after ``share`` of its steps, and saving exactly the two-layer run's
    checkpoints up to there (``checkpoint_horizon``), so both are swept at the same steps.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    full = two_layer["num_steps"]
    steps = SETTING.checkpoint_steps(two_layer)
    end = min(s for s in steps if s >= share * full)
    horizon = full if end < full else two_layer["checkpoint_horizon"]
    return SETTING.validate({**two_layer, "n_layers": 1, "num_steps": end, "checkpoint_horizon": horizon})


@dataclass
class StagedRun:
    """One language run through the stage pipeline.

    ``calib`` is the sampler calibrated on the run, ``settle`` the leading checkpoints left out
    of stage discovery (:func:`devbook.minimum.settling`), ``res`` is
    :func:`devbook.language.metrics.evaluate_run`'s output at the sweep's steps,
    ``found`` the stages of the LLC curve, ``log`` the run's training log.
    """

    config: dict[str, Any]
    run: Run
    calib: Calibrated
    sweep: LLCSweep
    res: dict[str, np.ndarray]
    settle: Settling
    found: Stages
    log: pd.DataFrame


def staged_run(
    config: dict[str, Any], preset: str, data: LanguageData | None = None, progress: bool = True
) -> StagedRun:
    """Train (or read) a language run, sweep its LLC, evaluate its metrics and find its stages.

    Parameters
    ----------
    config : dict
        A full language run config (``SETTING.config(preset, ...)``).
    preset : str
        The preset whose calibration grid, SGLD chains and evaluation sizes are used (ε, nβ,
        γ are recommended on the run itself: :meth:`devbook.setting.Setting.calibrated_sgld`).
    data : LanguageData, optional
        The run's corpus and tokenizers (built from ``config`` when omitted).
    progress : bool
        Show progress bars.

    Returns
    -------
    StagedRun
        Everything the language chapter computes before its figures, for this config. A run, a
        sweep or an evaluation already in the run store is read, not recomputed.
    """
    data = data if data is not None else language_data(config)
    run = SETTING.train(config, progress=progress)
    calib = SETTING.calibrated_sgld(run, preset)  # ε, nβ, γ recommended on this run
    sweep = SETTING.llc_sweep(run, calib.sgld, progress=progress)
    ev = SETTING.eval_config(preset)
    md_key = {"n_eval": ev["n_eval_sequences"], "n_synthetic": ev["n_synthetic"], "seed": 0}
    md = lm.metric_data(
        data, config["n_ctx"], config["d_vocab"], md_key["n_eval"], md_key["n_synthetic"], seed=md_key["seed"]
    )
    steps = list(sweep.steps)
    res = lm.evaluate_run(run, lambda s: SETTING.load_model(run, s), md, steps, md_key, progress=progress)
    settle = settling(SETTING, run, sweep, calib.sgld)  # leading checkpoints away from a minimum
    keep = settle.mask
    found = find_stages(sweep.steps[keep], sweep.llc[keep], np.asarray(res["loss"])[keep])
    return StagedRun(config, run, calib, sweep, res, settle, found, run.metrics())


def boundaries(stages: pd.DataFrame) -> list[int]:
    """The stage boundaries (milestones) of a stage table: every stage's end but the last."""
    return [int(s) for s in stages["end"].iloc[:-1]]


@dataclass(frozen=True)
class BoundaryComparison:
    """The stage boundaries of a one-layer and a two-layer run on the same sweep checkpoints.

    ``one`` and ``two`` are the boundary steps, ``steps`` the sweep's checkpoints (both runs
    are swept at the same ones, so "the same step" means the same checkpoint).
    """

    one: tuple[int, ...]
    two: tuple[int, ...]
    steps: tuple[int, ...]

    @property
    def first_one(self) -> int | None:
        """The one-layer run's first boundary (``None`` without one)."""
        return self.one[0] if self.one else None

    @property
    def first_two(self) -> int | None:
        """The two-layer run's first boundary (``None`` without one)."""
        return self.two[0] if self.two else None

    @property
    def same_first(self) -> bool:
        """Whether both first boundaries exist and are the same checkpoint."""
        return self.first_one is not None and self.first_one == self.first_two

    @property
    def match_rank(self) -> int:
        """1-based rank of the one-layer boundary at the two-layer's first boundary; 0 if none."""
        if self.first_two is None or self.first_two not in self.one:
            return 0
        return self.one.index(self.first_two) + 1

    @property
    def first_gap(self) -> int | None:
        """Sweep checkpoints from the two-layer's first boundary to the one-layer's (signed)."""
        if self.first_one is None or self.first_two is None:
            return None
        return self.steps.index(self.first_one) - self.steps.index(self.first_two)


def compare_boundaries(
    one_stages: pd.DataFrame, two_stages: pd.DataFrame, steps: Sequence[int]
) -> BoundaryComparison:
    """Compare the boundaries of two stage tables found on the checkpoints ``steps``.

    Two-layer boundaries after the last of ``steps`` (beyond a shorter one-layer run) are not
    compared. Raises ``ValueError`` if a boundary is not one of ``steps``.
    """
    steps = tuple(int(s) for s in steps)
    one = tuple(boundaries(one_stages))
    two = tuple(b for b in boundaries(two_stages) if b <= steps[-1])
    stray = sorted(set(one + two) - set(steps))
    if stray:
        raise ValueError(f"boundaries {stray} are not sweep checkpoints")
    return BoundaryComparison(one, two, steps)


def loss_fall_share(steps: Sequence[int], loss: Sequence[float], step: int) -> float:
    """Share of its total fall (first value to its minimum) the loss has made by ``step``."""
    steps, loss = list(steps), np.asarray(loss, dtype=np.float64)
    fall = loss[0] - loss.min()
    if not fall > 0:
        raise ValueError("the loss never falls below its first value")
    return float((loss[0] - loss[steps.index(step)]) / fall)


def evidence_changes(res: Mapping[str, np.ndarray], stages: pd.DataFrame, prefix: str = "LM") -> pd.DataFrame:
    """Change over each stage of the bigram, positional and n-gram evidence (paper C.2–C.3).

    Columns: validation loss, bigram gap (bigram score − bigram entropy; negative = bigrams
    learnt), positional gap (largest loss increase from zeroing ``W_pos``; positive = positions
    used more), the 3- and 4-gram scores. One row per stage (``"LM1 (A) 0–3"``, ...).
    """
    values = pd.DataFrame(
        {
            "loss": res["loss"],
            "bigram gap": res["bigram_score"] - res["bigram_entropy"],
            "positional gap": (res["pos_loss_ablated"] - res["pos_loss"]).max(axis=1),
            "3-gram score": res["ngram_score_3"],
            "4-gram score": res["ngram_score_4"],
        },
        index=[int(s) for s in res["step"]],
    )
    table = stages.copy()
    table.insert(0, "stage", [f"{prefix}{i + 1}" for i in range(len(stages))])
    return stage_changes(table, values)


def _steps_text(steps: Sequence[int]) -> str:
    return ", ".join(f"{s:,}" for s in steps) or "none"


def comparison_markdown(cmp: BoundaryComparison, share_one: float | None, share_two: float | None) -> str:
    """The chapter's verdict on the boundaries, as markdown built from ``cmp``.

    ``share_one`` / ``share_two``: :func:`loss_fall_share` of each run at its first boundary
    (``None`` without one).
    """
    lines = [
        f"- **Boundaries.** One-layer: {_steps_text(cmp.one)}; two-layer: {_steps_text(cmp.two)}.",
    ]
    if cmp.first_one is None or cmp.first_two is None:
        lines.append(
            "- **First boundary.** At least one of the runs has no boundary, so there is nothing to compare."
        )
        return "\n".join(lines)
    if cmp.same_first:
        first = f"both at step {cmp.first_one:,}: the same checkpoint."
    else:
        gap = abs(cmp.first_gap or 0)
        first = (
            f"one-layer at step {cmp.first_one:,}, two-layer at step {cmp.first_two:,}: "
            f"{gap} sweep checkpoint{'s' if gap != 1 else ''} apart, not the same step."
        )
    lines.append(f"- **First boundary.** {first}")
    if cmp.match_rank:
        rank = "first" if cmp.match_rank == 1 else f"number {cmp.match_rank}"
        lines.append(
            f"- **The two-layer model's first boundary** (step {cmp.first_two:,}) is also a boundary of "
            f"the one-layer model, its {rank}."
        )
    else:
        lines.append(
            f"- **The two-layer model's first boundary** (step {cmp.first_two:,}) is not a boundary of "
            "the one-layer model."
        )
    if share_one is not None and share_two is not None:
        lines.append(
            f"- **How early.** By its first boundary the validation loss has made {share_one:.0%} of "
            f"its fall in the one-layer run and {share_two:.0%} in the two-layer run."
        )
    return "\n".join(lines)


def llc_comparison_figure(curves: Mapping[str, StagedRun]) -> Figure:
    """λ̂ over training of each run in ``curves`` (label → run), its boundaries as dashed lines."""
    import matplotlib.pyplot as plt

    from devbook.plots import log_time_axis

    fig, ax = plt.subplots(figsize=(8, 3.6))
    for i, (label, sr) in enumerate(curves.items()):
        colour = f"C{i}"
        table = sr.sweep.table
        ax.errorbar(
            table["step"],
            table["llc"],
            yerr=table["llc_std"],
            fmt="o-",
            ms=3,
            lw=1,
            color=colour,
            label=label,
        )
        for b in boundaries(sr.found.table):
            ax.axvline(b, color=colour, ls="--", lw=1)
    ax.set_ylabel(r"$\hat\lambda$")
    log_time_axis(ax, last=float(max(sr.sweep.steps[-1] for sr in curves.values())))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
