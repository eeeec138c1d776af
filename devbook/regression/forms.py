"""Essential dynamics of the regression transformer (paper §3.2, App. B.6, D.1.2, E.2.5).

- :func:`forms_preset`: the chapter's sizes (proxy batch, surrogates, smoothing schedules);
- :func:`functional_proxy`: the full model outputs on a fixed batch of input sequences at the
  dense, linear-spaced checkpoints of a run (every output token and every component, before
  the read-out of the prediction, E.2.5), cached per checkpoint in the run store;
- :func:`reference_predictions` and :func:`predictor_distances`: what the network's predictions
  are near over training: zero, the task prior t̄·x, ridge regression with the true prior and
  noise (the Bayes-optimal predictor for Gaussian tasks) and least squares at each context
  length;
- :data:`PAPER_FORMS`, :func:`paper_forms_on_run`, :func:`compare_forms`, :func:`survival`: the
  paper's four forms on this run's time axis, and which forms survive other smoothing
  schedules and proxy batches.

Used by ``book/regression/forms.md``; figures in :mod:`devbook.regression.form_plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from numpy.typing import ArrayLike, NDArray

from devbook import presets
from devbook.ed import FormSearch
from devbook.ed.forms import describe_shown as describe_shown
from devbook.ed.smoothing import schedule_sigmas as schedule_sigmas
from devbook.progress import progress as progress_bar
from devbook.regression.compare import PAPER_MAX_LR, PAPER_STEPS, cumulative_lr
from devbook.regression.data import Batch, RegressionData, fixed_dataset, readout, tokenise
from devbook.setting import Setting
from devbook.store import Run

Tensor = torch.Tensor

#: The chapter's sizes. ``sequences``: the proxy batch (the paper's is 1,000 sequences, 80,000
#: numbers per checkpoint); ``sigma``: the main smoothing schedule (start, stop, flat fraction)
#: in checkpoints, ``sigma_alt`` the robustness one; ``surrogates`` per null family. σ ends
#: at 6 % of the checkpoints, as the paper's text (0.1 to 300 of 5,000; its code stopped at 60):
#: with fewer, the SGD noise of the late checkpoints makes a vertex of every wiggle.
FORMS_PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {"sequences": 32, "surrogates": 5, "sigma": [1.0, 2.0, 0.2], "sigma_alt": [1.5, 3.0, 0.2]},
    "cpu": {"sequences": 500, "surrogates": 20, "sigma": [1.0, 120.0, 0.02], "sigma_alt": [2.0, 60.0, 0.05]},
    "paper": {
        "sequences": 1000,
        "surrogates": 50,
        "sigma": [1.0, 300.0, 0.02],
        "sigma_alt": [2.0, 150.0, 0.05],
    },
}

#: The paper's forms of the regression transformer (seed 1; paper §3.2, Table 4): step and
#: influence range.
PAPER_FORMS = pd.DataFrame(
    {
        "step": [2_500, 34_500, 106_100, 168_900],
        "start": [1_800, 30_000, 90_000, 150_000],
        "end": [2_600, 40_000, 125_000, 190_000],
    },
    index=pd.Index(["F1", "F2", "F3", "F4"], name="paper form"),
)

PREDICTORS = ("zero", "task prior", "ridge (Bayes)", "least squares")

#: σ per checkpoint for a preset's ``(start, stop, flat)`` (shared with the language forms).
sigmas = schedule_sigmas


def forms_preset(preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
    """The chapter's sizes at ``preset`` with ``overrides`` (checked by name and type)."""
    return presets.resolve(FORMS_PRESETS, preset, overrides)


def proxy_batch(config: dict[str, Any], n_sequences: int, seed: int = 0) -> Batch:
    """The fixed input sequences of the functional proxy (their own held-out stream)."""
    if n_sequences < 1:
        raise ValueError(f"n_sequences must be >= 1, got {n_sequences}")
    return fixed_dataset(config, n_sequences, "ed-proxy", seed)


def functional_proxy(
    setting: Setting,
    run: Run,
    steps: Sequence[int],
    n_sequences: int,
    seed: int = 0,
    progress: bool = False,
    chunk: int = 100,
) -> NDArray[np.float32]:
    """The functional proxy ``(len(steps), n_sequences · 2K · (D+1))`` of ``run`` (E.2.5).

    Row ``i`` is the model's full output at checkpoint ``steps[i]`` on :func:`proxy_batch`:
    every token, every component, before :func:`devbook.regression.data.readout` picks the
    predictions. Rows are computed once and cached in the run store ``chunk`` checkpoints at a
    time (an interrupted extraction resumes from its last complete chunk).
    """
    batch = proxy_batch(run.config, n_sequences, seed)
    tokens = tokenise(batch.xs, batch.ys)
    steps = [int(s) for s in steps]
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")

    def compute(part: list[int]) -> dict[str, np.ndarray]:
        rows = []
        for step in part:
            model = setting.load_model(run, step)
            with torch.no_grad():
                rows.append(model(tokens).numpy().astype(np.float32).reshape(-1))
        return {"outputs": np.stack(rows)}

    parts = [steps[i : i + chunk] for i in range(0, len(steps), chunk)]
    config = {"n_sequences": int(n_sequences), "seed": int(seed)}
    out = [
        run.cached("ed-proxy", {**config, "steps": part}, lambda p=part: compute(p))["outputs"]
        for part in progress_bar(parts, desc="proxy", disable=not progress)
    ]
    return np.concatenate(out) if out else np.zeros((0, tokens.numel()), np.float32)


def proxy_predictions(proxies: ArrayLike, batch: Batch) -> NDArray[np.float64]:
    """The predictions ``(T, B, K)`` contained in proxy rows ``(T, B·2K·(D+1))`` (or one row)."""
    b, k, d = batch.xs.shape
    x = np.asarray(proxies, dtype=np.float64)
    if x.shape[-1] != b * 2 * k * (d + 1):
        raise ValueError(f"proxy rows of length {b * 2 * k * (d + 1)} expected, got {x.shape[-1]}")
    out = torch.from_numpy(x.reshape(-1, b, 2 * k, d + 1))
    return readout(out.reshape(-1, 2 * k, d + 1)).reshape(-1, b, k).numpy()


def _posterior_means(xs: Tensor, ys: Tensor, prior_mean: Tensor, ridge: float) -> Tensor:
    """Per context length j = 0..K−1, the task estimate from the first j pairs: ridge
    ``t̄ + (XᵀX + ridge·I)⁻¹ Xᵀ(y − X t̄)``, or least squares (min-norm) when ``ridge = 0``."""
    b, k, d = xs.shape
    out = [prior_mean.expand(b, d)]
    for j in range(1, k):
        x, r = xs[:, :j], ys[:, :j] - xs[:, :j] @ prior_mean
        if ridge > 0:
            gram = x.transpose(1, 2) @ x + ridge * torch.eye(d, dtype=xs.dtype)
            delta = torch.linalg.solve(gram, (x.transpose(1, 2) @ r.unsqueeze(-1))).squeeze(-1)
        else:
            delta = (torch.linalg.pinv(x) @ r.unsqueeze(-1)).squeeze(-1)
        out.append(prior_mean + delta)
    return torch.stack(out, dim=1)  # (B, K, D)


def reference_predictions(batch: Batch, data: RegressionData) -> dict[str, NDArray[np.float64]]:
    """Predictions ``(B, K)`` of the known predictors on ``batch``: ``zero``; ``task prior``
    t̄·x_k; ``ridge (Bayes)``, the posterior mean of the task under the prior N(t̄, I) and the
    noise σ² from the pairs before x_k (Bayes-optimal for Gaussian tasks); ``least squares``,
    the min-norm least-squares task from the same pairs."""
    xs, ys = batch.xs.double(), batch.ys.double()
    prior = data.task_prior_mean().double()
    ridge = _posterior_means(xs, ys, prior, float(data.noise_var))
    lsq = _posterior_means(xs, ys, torch.zeros_like(prior), 0.0)
    return {
        "zero": np.zeros(tuple(ys.shape)),
        "task prior": (xs @ prior).numpy(),
        "ridge (Bayes)": torch.einsum("bkd,bkd->bk", xs, ridge).numpy(),
        "least squares": torch.einsum("bkd,bkd->bk", xs, lsq).numpy(),
    }


def predictor_distances(
    predictions: ArrayLike, references: Mapping[str, ArrayLike], index: ArrayLike | None = None
) -> pd.DataFrame:
    """Median squared difference between ``predictions`` ``(T, B, K)`` and each reference
    ``(B, K)`` over the batch's sequences and positions: one row per checkpoint (``index``), one
    column per predictor.

    The median, not the mean: least squares at context length D (as many pairs as unknowns)
    solves a square random system, whose predictions are heavy-tailed (its risk diverges there),
    so a handful of sequences would dominate a mean.
    """
    p = np.asarray(predictions, dtype=np.float64)
    cols = {
        name: np.median(((p - np.asarray(ref)[None]) ** 2).reshape(p.shape[0], -1), axis=1)
        for name, ref in references.items()
    }
    return pd.DataFrame(cols, index=None if index is None else pd.Index(index, name="step"))


def run_equivalent(paper_steps: ArrayLike, total_steps: int, max_lr: float) -> NDArray[np.float64]:
    """The steps of this run whose cumulative learning rate equals that of the paper's
    ``paper_steps`` (the inverse of :func:`devbook.regression.compare.paper_equivalent`); NaN
    beyond the end of this run."""
    paper = cumulative_lr(PAPER_STEPS, PAPER_MAX_LR)
    run = cumulative_lr(total_steps, max_lr)
    target = paper[np.clip(np.asarray(paper_steps, dtype=int), 0, PAPER_STEPS)]
    out = np.interp(target, run, np.arange(total_steps + 1))
    return np.where(target <= run[-1], out, np.nan)


def paper_forms_on_run(total_steps: int, max_lr: float) -> pd.DataFrame:
    """:data:`PAPER_FORMS` with their step and influence range mapped onto this run's axis."""
    mapped = {c: run_equivalent(PAPER_FORMS[c], total_steps, max_lr) for c in ("step", "start", "end")}
    return PAPER_FORMS.assign(**{f"run_{c}": v for c, v in mapped.items()})


def compare_forms(table: pd.DataFrame, paper_on_run: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """For each paper form: this run's candidate forms whose influence range overlaps its mapped
    range, with their p-values, and a verdict.

    ``table`` is the ``table`` of a :class:`devbook.ed.forms.FormSearch` (rows numbered from 1 in
    ``candidates``).
    A paper form beyond the run's end is ``beyond this run``; otherwise ``found`` when an
    overlapping candidate has ``p_value < alpha``, else ``not found``.
    """
    rows = []
    for name, p in paper_on_run.iterrows():
        if not np.isfinite(p["run_step"]):
            rows.append({"paper form": name, "verdict": "beyond this run", "candidates (p)": ""})
            continue
        end = p["run_end"] if np.isfinite(p["run_end"]) else np.inf
        hit = table[(table["start"] <= end) & (table["end"] >= p["run_start"])]
        listed = ", ".join(f"{i + 1} at {r.step:,.0f} ({r.p_value:.2f})" for i, r in hit.iterrows())
        found = bool((hit["p_value"] < alpha).any())
        rows.append(
            {"paper form": name, "verdict": "found" if found else "not found", "candidates (p)": listed}
        )
    return pd.DataFrame(rows).set_index("paper form")


def survival(reference: FormSearch, variants: Mapping[str, FormSearch]) -> pd.DataFrame:
    """Which forms of ``reference`` survive in each variant: a variant's form whose step lies
    inside the reference form's influence range (the step of the nearest such form, else "—").
    Rows are the reference's forms, numbered from 1."""
    rows = []
    for _, f in reference.table.iterrows():
        row: dict[str, Any] = {
            "step": f["step"],
            "start": f["start"],
            "end": f["end"],
            "p_value": f["p_value"],
        }
        for label, search in variants.items():
            s = search.table["step"].to_numpy(float)
            inside = s[(s >= f["start"]) & (s <= f["end"])]
            row[label] = f"{inside[np.argmin(np.abs(inside - f['step']))]:,.0f}" if inside.size else "—"
        rows.append(row)
    index = pd.RangeIndex(1, len(rows) + 1, name="form")
    return pd.DataFrame(rows, columns=["step", "start", "end", "p_value", *variants], index=index)


def form_contents(
    search: FormSearch, batch: Batch, references: Mapping[str, ArrayLike], distances: pd.DataFrame
) -> pd.DataFrame:
    """What each form is: the median squared distance (as :func:`predictor_distances`) from the
    form's predictions (its point of function space, read out) to each reference predictor, the
    nearest one, and the nearest predictor of the network itself at the form's step."""
    rows = []
    for form in search.forms:
        pred = proxy_predictions(form.point, batch)[0]
        d = {name: float(np.median((pred - np.asarray(ref)) ** 2)) for name, ref in references.items()}
        at = distances.iloc[int(np.argmin(np.abs(distances.index.to_numpy() - form.step)))]
        rows.append(
            {"step": form.step, **d, "form nearest": min(d, key=d.get), "network nearest": at.idxmin()}
        )
    return pd.DataFrame(rows, columns=["step", *references, "form nearest", "network nearest"])


def describe_contents(contents: pd.DataFrame) -> str:
    """One markdown line per row of :func:`form_contents` (forms numbered index + 1)."""
    if contents.empty:
        return "No form was found, so there is nothing to compare."
    lines = []
    for i, row in contents.iterrows():
        near = row["form nearest"]
        lines.append(
            f"- Form {int(i) + 1} (step {row['step']:,.0f}): its point is nearest to **{near}** "
            f"(median squared distance {row[near]:.3f}); the network at that step is nearest to "
            f"**{row['network nearest']}**."
        )
    return "\n".join(lines)


def prior_to_ridge(distances: pd.DataFrame) -> dict[str, float]:
    """When the network is nearest the task prior (the step and median squared distance of the
    minimum of the ``task prior`` column) and the first step after it at which ridge regression
    is nearer than the task prior (NaN if never)."""
    prior = distances["task prior"]
    at = prior.idxmin()
    after = distances.loc[distances.index > at]
    crossed = after.index[after["ridge (Bayes)"] < after["task prior"]]
    return {
        "prior_step": float(at),
        "prior_distance": float(prior.loc[at]),
        "ridge_step": float(crossed[0]) if len(crossed) else float("nan"),
    }
