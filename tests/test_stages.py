"""Stage discovery (devbook.stages) on synthetic LLC curves with known milestones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from devbook.stages import find_stages
from devbook.training import checkpoint_schedule

STEPS = np.array(checkpoint_schedule(500_000))  # the paper's LLC checkpoints (190)


def sig(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Logistic step in log time centred at step ``centre`` with width ``width`` (in ln units)."""
    return 1.0 / (1.0 + np.exp(-(np.log(t + 1.0) - np.log(centre)) / width))


def noisy(y: np.ndarray, scale: float, seed: int) -> np.ndarray:
    return y + np.random.default_rng(seed).normal(0.0, scale, size=y.shape)


def abA() -> np.ndarray:
    """Rise at 300 steps, fall at 30k, rise at 150k: milestones between the transitions."""
    return 20 * sig(STEPS, 300, 0.4) - 10 * sig(STEPS, 30_000, 0.3) + 6 * sig(STEPS, 150_000, 0.2)


def test_paper_checkpoint_grid() -> None:
    assert STEPS[0] == 0 and STEPS[-1] == 500_000
    assert 185 <= len(STEPS) <= 200
    assert np.all(np.diff(STEPS) > 0)


@pytest.mark.parametrize("noise", [0.0, 0.4])
def test_type_changes_found_at_zero_crossings(noise: float) -> None:
    llc = noisy(abA(), noise, seed=1)
    losses = 5.0 - 0.5 * np.log1p(STEPS)
    table = find_stages(STEPS, llc, losses).table
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["start", "end", "type", "dloss", "dllc"]
    assert list(table["type"]) == ["A", "B", "A"]
    assert table["start"].iloc[0] == 0 and table["end"].iloc[-1] == 500_000
    assert np.all(table["start"].iloc[1:].to_numpy() == table["end"].iloc[:-1].to_numpy())
    m1, m2 = table["end"].iloc[:2]
    assert 1_500 < m1 < 15_000, m1  # plateau between the rise at 300 and the fall at 30k
    assert 45_000 < m2 < 110_000, m2  # plateau between the fall at 30k and the rise at 150k
    assert table["dloss"].sum() == pytest.approx(losses[-1] - losses[0])
    assert table["dllc"].iloc[0] > 15 and table["dllc"].iloc[1] < -7


@pytest.mark.parametrize("noise", [0.0, 0.25])
def test_same_type_stages_split_at_near_plateau(noise: float) -> None:
    # two rises separated by a near-plateau (a small positive drift keeps the slope above 0)
    llc = 5 * sig(STEPS, 100, 0.3) + 5 * sig(STEPS, 40_000, 0.3) + 0.05 * np.log1p(STEPS)
    llc = noisy(llc, noise, seed=2)
    result = find_stages(STEPS, llc)
    table, fit = result.table, result.fit
    assert list(table["type"]) == ["A", "A"]
    assert 600 < table["end"].iloc[0] < 8_000
    # the milestone is where |slope| is locally minimal and below the tolerance
    i = int(np.argmin(np.abs(fit.grid_steps - table["end"].iloc[0])))
    assert abs(fit.slope[i]) < fit.tolerance
    if noise == 0.0:  # no zero crossing: only the tolerance rule can find this milestone
        between = (fit.grid_steps > 300) & (fit.grid_steps < 20_000)
        assert np.all(fit.slope[between] > 0)
        # with a zero tolerance the near-plateau is not a milestone
        assert len(find_stages(STEPS, llc, tolerance=0.0).table) == 1


@pytest.mark.parametrize("noise", [0.0, 0.3])
@pytest.mark.parametrize("sign", [1, -1])
def test_flat_start_and_end_make_no_stages(noise: float, sign: int) -> None:
    llc = noisy(sign * 10 * sig(STEPS, 2_000, 0.5), noise, seed=3)
    table = find_stages(STEPS, llc).table
    assert len(table) == 1
    assert table["type"].iloc[0] == ("A" if sign > 0 else "B")
    assert np.isnan(table["dloss"].iloc[0])


def test_relaxing_tolerance_adds_substages() -> None:
    llc = 5 * sig(STEPS, 100, 0.3) + 5 * sig(STEPS, 40_000, 0.3) + 0.3 * np.log1p(STEPS)
    counts = [len(find_stages(STEPS, llc, rel_tolerance=r).table) for r in (0.02, 0.1, 0.3, 0.5)]
    assert counts[0] == 1 and counts[2] == 2
    assert counts == sorted(counts)  # relaxing the tolerance only adds milestones


def test_linear_time_and_step_zero() -> None:
    steps = np.linspace(0, 1_000, 101)
    llc = np.sin(np.pi * steps / 1_000)  # up then down: one milestone at 500
    table = find_stages(steps, llc, time="linear").table
    assert list(table["type"]) == ["A", "B"]
    assert table["end"].iloc[0] == pytest.approx(500, abs=20)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"llc": np.ones(4)}, "has 4 values"),
        ({"steps": STEPS[::-1]}, "strictly increasing"),
        ({"llc": np.r_[np.nan, np.ones(len(STEPS) - 1)]}, "NaN"),
        ({"time": "sqrt"}, "valid: log, linear"),
        ({"kernel": "cubic"}, "valid kernels"),
        ({"tolerance": -1.0}, "tolerance"),
        ({"steps": STEPS[:3], "llc": np.ones(3)}, "at least 5"),
    ],
)
def test_bad_input_is_named(kwargs: dict, message: str) -> None:
    args = {"steps": STEPS, "llc": np.ones(len(STEPS))} | kwargs
    with pytest.raises(ValueError, match=message):
        find_stages(args.pop("steps"), args.pop("llc"), **args)


def test_stage_of_and_stage_changes() -> None:
    from devbook.stages import stage_changes, stage_of

    table = pd.DataFrame(
        {
            "stage": ["S1", "S2"],
            "start": [0, 10],
            "end": [10, 30],
            "type": ["A", "B"],
            "dloss": [0.0, 0.0],
            "dllc": [1.0, -1.0],
        }
    )
    assert stage_of(table, 10) == "S1 (A)" and stage_of(table, 11) == "S2 (B)"
    assert stage_of(table, 31) == "none"
    values = pd.DataFrame({"v": [1.0, 4.0, 2.0]}, index=[0, 10, 30])
    changes = stage_changes(table, values)
    assert list(changes["v"]) == [3.0, -2.0]
    assert list(changes.index) == ["S1 (A) 0–10", "S2 (B) 10–30"]
