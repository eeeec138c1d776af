"""The scorecard: each claim of the paper the book tests, the paper's value, this build's, a verdict.

This build's values are read from what the chapters computed: the values they glued, in the
executed notebooks of the same preset (``_build/executed/<preset>/…``), never typed. Each
:class:`Claim` names its chapter, the glue keys it reads and a verdict rule; a chapter that
has not been executed at the preset gives the verdict ``not executed``. Used by
``book/scorecard.md``, which the build executes after every other chapter.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from devbook.chapters import EXECUTED
from devbook.paths import repo_root

#: The verdicts a claim can get.
VERDICTS = ("reproduced", "differs", "not reachable at this scale", "not executed")
Values = Mapping[str, Any]


def glued_values(notebook: Path) -> dict[str, Any]:
    """The values glued in an executed notebook, ``{key: value}`` (figures left out).

    Text values are parsed as Python literals where they are one (``'51,717'`` → ``"51,717"``,
    ``0.5`` → ``0.5``); markdown values are returned as their text.
    """
    values: dict[str, Any] = {}
    for cell in json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]:
        for out in cell.get("outputs", []):
            meta = out.get("metadata", {}).get("scrapbook")
            if not meta:
                continue
            prefix = meta.get("mime_prefix", "")
            data = {k.removeprefix(prefix): v for k, v in out.get("data", {}).items()}
            text = data.get("text/markdown", data.get("text/plain"))
            if text is None:
                continue
            text = "".join(text) if isinstance(text, list) else text
            try:
                values[meta["name"]] = ast.literal_eval(text) if "text/markdown" not in data else text
            except (ValueError, SyntaxError):
                values[meta["name"]] = text
    return values


@dataclass(frozen=True)
class Claim:
    """One tested claim: where the paper makes it, its value there, and how this build is judged.

    ``judge(values, preset)`` gets the chapter's glued ``keys`` and returns ``(this build's
    value as text, verdict)``, the verdict one of :data:`VERDICTS`.
    """

    claim: str
    source: str
    paper: str
    chapter: str
    keys: tuple[str, ...]
    judge: Callable[[Values, str], tuple[str, str]]


def _types(text: str) -> list[str]:
    return [t.strip() for t in str(text).split(",") if t.strip()]


def judge_known_cases(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when the exact λ lies within the estimate's tolerance on every known case."""
    within, cases = int(v["llc-n-within"]), int(v["llc-n-cases"])
    text = f"{within} of {cases} within tolerance (median error {float(v['llc-median-relerr']):.0%})"
    return text, "reproduced" if within == cases else "differs"


def judge_staircases(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when λ̂ rises at ≥ 80 % of the measured k-gon transitions."""
    measured, frac = int(v["tms-num-measured"]), float(v["tms-frac-up"])
    if measured == 0:
        return "no transition measured", "not reachable at this scale"
    text = f"λ̂ rises at {frac:.0%} of {measured} measured transitions"
    return text, "reproduced" if frac >= 0.8 else "differs"


def judge_stage_types(
    paper_types: list[str], reached_key: str | None, prefix: str
) -> Callable[[Values, str], tuple[str, str]]:
    """Stage types found vs the paper's (only the paper's stages the run can reach count)."""

    def judge(v: Values, preset: str) -> tuple[str, str]:
        ours = _types(v[f"{prefix}-stage-types"])
        reachable = paper_types
        if reached_key is not None:
            reachable = paper_types[: len(_types(v[reached_key]))]
        text = f"{len(ours)} stages: {', '.join(ours)}"
        if ours == paper_types:
            return text, "reproduced"
        if len(reachable) < len(paper_types) and ours == reachable:
            return text + f" (the paper's first {len(reachable)})", "reproduced"
        return text, "differs"

    return judge


def judge_heads(key: str, paper_missing_is: str) -> Callable[[Values, str], tuple[str, str]]:
    """A head type forms when the best head's score passes the chapter's threshold."""

    def judge(v: Values, preset: str) -> tuple[str, str]:
        best, threshold = float(v[key]), float(v["lm-head-threshold"])
        text = f"best score {best:.2f} (threshold {threshold:g})"
        if best > threshold:
            return text, "reproduced"
        return text, paper_missing_is if preset != "paper" else "differs"

    return judge


def judge_curvature_misses(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when the Hessian statistics, together, miss at least one LLC boundary."""
    n, found = int(v["hs-n-llc-ms"]), int(v["hs-found-either"])
    if n == 0:
        return "the LLC has no boundary at this preset", "not reachable at this scale"
    text = f"trace or top eigenvalue finds {found} of {n} LLC boundaries"
    return text, "reproduced" if found < n else "differs"


def judge_forms(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when every paper form this run reaches is met by a significant form."""
    reachable, found = int(v["lf-n-reachable"]), int(v["lf-n-paper-found"])
    text = f"{found} of the {reachable} paper forms this run reaches found ({v['lf-n-significant']} significant forms)"
    if reachable == 0:
        return text, "not reachable at this scale"
    return text, "reproduced" if found == reachable else "differs"


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "SGLD recovers the learning coefficient of models where it is known exactly",
        "paper App. A.1, A.4",
        "λ̂ ≈ λ (e.g. d/2 for a nondegenerate quadratic)",
        "book/theory/llc",
        ("llc-n-within", "llc-n-cases", "llc-median-relerr"),
        judge_known_cases,
    ),
    Claim(
        "Opposing staircases: at each k-gon transition the loss steps down and λ̂ steps up",
        "growth and form (TMS)",
        "λ̂ rises at every transition",
        "book/tms/growth-and-form",
        ("tms-num-measured", "tms-frac-up"),
        judge_staircases,
    ),
    Claim(
        "The regression transformer develops in five stages",
        "paper §4.2, Table 2",
        "5 stages: A, A, B, B, A",
        "book/regression/stages",
        ("lr-stage-types", "lr-reached"),
        judge_stage_types(list("AABBA"), "lr-reached", "lr"),
    ),
    Claim(
        "The Hessian's trace and top eigenvalue miss stage boundaries the LLC finds",
        "paper App. D.1.3",
        "2 of 4 LLC boundaries found",
        "book/regression/hessian",
        ("hs-n-llc-ms", "hs-found-either"),
        judge_curvature_misses,
    ),
    Claim(
        "The regression transformer's trajectory has forms at the paper's steps",
        "paper §3.2, Table 4",
        "forms at 2.5k, 34.5k, 106.1k, 168.9k steps",
        "book/regression/forms",
        ("lf-n-reachable", "lf-n-paper-found", "lf-n-significant"),
        judge_forms,
    ),
    Claim(
        "The language model develops in five stages",
        "paper §4.1, Table 1",
        "5 stages: A, A, B, A, A",
        "book/language/stages",
        ("lm-stage-types",),
        judge_stage_types(list("AABAA"), None, "lm"),
    ),
    Claim(
        "Previous-token heads form (LM3)",
        "paper §4.1, App. C.3.3",
        "heads L1H2, L1H5",
        "book/language/stages",
        ("lm-best-prev", "lm-head-threshold"),
        judge_heads("lm-best-prev", "differs"),
    ),
    Claim(
        "Induction heads form (LM4)",
        "paper §4.1, App. C.3.4",
        "heads L2H7, L2H8",
        "book/language/stages",
        ("lm-best-prefix", "lm-head-threshold"),
        judge_heads("lm-best-prefix", "not reachable at this scale"),
    ),
)


# -- calibration of the LLC estimator (book/theory/calibration, paper App. E.3)


def judge_seed_smoothing(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when the same-seed LLC curve is smoother than the fresh-seed one."""
    same, fresh = float(v["cal-rough-same"]), float(v["cal-rough-fresh"])
    text = f"roughness {same:.3f} with the same seed, {fresh:.3f} with fresh seeds"
    return text, "reproduced" if same < fresh else "differs"


def judge_early_divergence(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when more grid cells diverge at some earlier probed checkpoint than at the
    final one."""
    early, final = int(v["cal-div-earlier"]), int(v["cal-div-final"])
    text = f"cells that diverge: up to {early} at earlier checkpoints, {final} at the end"
    if early == final == 0:
        return text, "not reachable at this scale"
    return text, "reproduced" if early > final else "differs"


def judge_watanabe(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when sampling at n / log n fails to converge while a hotter nβ is ok."""
    verdict, hotter_ok = str(v["cal-t-cold-verdict"]), int(v["cal-t-n-ok-hotter"])
    text = f"at nβ = n/log n: {verdict}; {hotter_ok} hotter nβ ok"
    if hotter_ok == 0:
        return text, "not reachable at this scale"
    return text, "reproduced" if verdict != "ok" else "differs"


CALIBRATION_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "At the Watanabe temperature nβ = n/log n the step must shrink until the chains stop converging",
        "paper App. E.3.1",
        "sample above the Watanabe temperature",
        "book/theory/calibration",
        ("cal-t-cold-verdict", "cal-t-n-ok-hotter"),
        judge_watanabe,
    ),
    Claim(
        "The same seed at every checkpoint smooths the LLC curve",
        "paper App. E.3.2, Figure 39",
        "smoother, same shape",
        "book/theory/calibration",
        ("cal-rough-same", "cal-rough-fresh"),
        judge_seed_smoothing,
    ),
    Claim(
        "Sampler settings healthy at the end of training diverge at earlier checkpoints",
        "paper App. E.3.3",
        "early checkpoints diverge first",
        "book/theory/calibration",
        ("cal-div-earlier", "cal-div-final"),
        judge_early_divergence,
    ),
)
CLAIMS = CLAIMS + CALIBRATION_CLAIMS


# -- the one-layer language model (book/language/one-layer, paper App. C.4)


def judge_one_layer_boundary(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when the two-layer model's first stage boundary is also a one-layer boundary.

    ``ol-first-1l`` / ``ol-first-2l`` are the first boundaries (step, -1 for none),
    ``ol-match-rank`` the rank of the one-layer boundary at the two-layer's first (0: none).
    """
    one, two, rank = int(v["ol-first-1l"]), int(v["ol-first-2l"]), int(v["ol-match-rank"])
    if one < 0 or two < 0:
        return "a run has no stage boundary", "not reachable at this scale"
    text = f"first boundaries: one layer at step {one:,}, two layers at {two:,}"
    if not rank:
        return text + "; the two-layer's is no one-layer boundary", "differs"
    return text + f"; the two-layer's is the one-layer's boundary {rank}", "reproduced"


CLAIMS = CLAIMS + (
    Claim(
        "The one-layer language model has a stage boundary where the two-layer model's first one falls",
        "paper App. C.4",
        "both at step 900 (the one-layer model's second boundary)",
        "book/language/one-layer",
        ("ol-first-1l", "ol-first-2l", "ol-match-rank"),
        judge_one_layer_boundary,
    ),
)


# -- the language model's forms (book/language/forms, paper App. C.1.2-C.1.3)


def judge_language_forms(v: Values, preset: str) -> tuple[str, str]:
    """Reproduced when every paper form whose stage (LM3, LM5) this run reaches is met by a
    significant form (p < 0.05) in this run's stage of the same rank; not reachable when the
    run has fewer stages than the first form's."""
    reachable, found = int(v["lmf-n-reachable"]), int(v["lmf-n-paper-found"])
    text = (
        f"{found} of the {reachable} paper forms whose stage this run reaches found "
        f"({v['lmf-n-significant']} significant forms)"
    )
    if reachable == 0:
        return text, "not reachable at this scale"
    return text, "reproduced" if found == reachable else "differs"


CLAIMS = CLAIMS + (
    Claim(
        "The language model's trajectory has forms in the stages of the paper's two forms",
        "paper App. C.1.2, Table 3",
        "forms at 7k (in LM3, new words) and 17.7k (in LM5, induction patterns)",
        "book/language/forms",
        ("lmf-n-reachable", "lmf-n-paper-found", "lmf-n-significant"),
        judge_language_forms,
    ),
)


def scorecard(preset: str, claims: tuple[Claim, ...] = CLAIMS, root: Path | None = None) -> pd.DataFrame:
    """One row per claim: claim, source, paper, this build, verdict, chapter.

    Values come from the executed notebooks of ``preset`` (under ``root``, default the
    repository); a missing notebook or key gives ``not executed``.
    """
    root = root or repo_root()
    rows, cache = [], {}
    for c in claims:
        path = root / EXECUTED / preset / f"{c.chapter}.ipynb"
        if c.chapter not in cache:
            cache[c.chapter] = glued_values(path) if path.exists() else None
        values = cache[c.chapter]
        if values is None or any(k not in values for k in c.keys):
            ours, verdict = "—", "not executed"
        else:
            ours, verdict = c.judge(values, preset)
        rows.append(
            {
                "claim": c.claim,
                "source": c.source,
                "paper": c.paper,
                "this build": ours,
                "verdict": verdict,
                "chapter": c.chapter,
            }
        )
    return pd.DataFrame(rows)


def scorecard_markdown(table: pd.DataFrame) -> str:
    """The scorecard as a MyST table with a link to each chapter."""
    lines = ["| claim | paper | this build | verdict | chapter |", "| --- | --- | --- | --- | --- |"]
    for r in table.itertuples():
        link = f"{{doc}}`/{r.chapter}`"
        lines.append(f"| {r.claim} ({r.source}) | {r.paper} | {r._4} | **{r.verdict}** | {link} |")
    return "\n".join(lines)


def keys_by_chapter(claims: tuple[Claim, ...] = CLAIMS) -> dict[str, set[str]]:
    """The glue keys each chapter must provide for the scorecard."""
    out: dict[str, set[str]] = {}
    for c in claims:
        out.setdefault(c.chapter, set()).update(c.keys)
    return out
