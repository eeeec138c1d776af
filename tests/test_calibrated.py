"""devbook.calibrated: the calibration grid presets, and the sampler a chapter uses
(Setting.calibrated_sgld: the recommendation on its run, or the preset when no cell is healthy)."""

from __future__ import annotations

import pandas as pd
import pytest

from devbook import calibrated
from devbook.calibration import Recommendation
from devbook.setting import SGLDPreset

TABLE = {"smoke": {"epsilon": [1e-3], "nbeta": [None, 20.0], "gamma": [10.0], "chains": 2, "probes": [1.0]}}


def _preset() -> SGLDPreset:
    return SGLDPreset(epsilon=1e-3, gamma=100.0, num_chains=4, num_draws=10, batch_size=32, num_samples=64)


def test_calibration_config_checks_its_values():
    assert calibrated.calibration_config(TABLE, "smoke")["chains"] == 2
    for bad, match in (
        ({"epsilon": []}, "must not be empty"),
        ({"gamma": [0.0]}, "> 0"),
        ({"nbeta": [-1.0]}, "> 0 or None"),
        ({"probes": [1.5]}, "fractions"),
        ({"chains": 0}, "chains"),
    ):
        with pytest.raises(ValueError, match=match):
            calibrated.calibration_config(TABLE, "smoke", **bad)
    with pytest.raises(ValueError, match="lacks"):
        calibrated.calibration_config({"smoke": {"epsilon": [1e-3]}}, "smoke")
    with pytest.raises(ValueError, match="valid"):
        calibrated.calibration_config(TABLE, "smoke", chainz=3)


def test_grid_resolves_nbeta_none_and_cells_keep_the_batch():
    sgld = _preset()
    g = calibrated.grid(calibrated.calibration_config(TABLE, "smoke"), sgld)
    assert len(g) == 2 and g.nbeta[0] == pytest.approx(sgld.resolved_nbeta) and g.nbeta[1] == 20.0
    cells = calibrated.cell_preset(sgld, {"chains": 2})
    assert cells.num_chains == 2 and cells.batch_size == sgld.batch_size


def test_comparison_reports_what_changed():
    sgld = _preset()
    rec = Recommendation(sgld.sgld_config(), {}, pd.DataFrame())
    moved = SGLDPreset.from_dict({**sgld.to_dict(), "nbeta": 66.7, "gamma": 30.0})
    c = calibrated.Calibrated(moved, sgld, rec, pd.DataFrame(), [1], "")
    table = c.comparison()
    assert list(table.index) == ["ε", "nβ", "γ"] and list(table["same"]) == [True, False, False]
    assert table.loc["nβ", "preset"] == pytest.approx(sgld.resolved_nbeta)
    assert table.loc["nβ", "sampled with"] == 66.7 and c.recommended
    fallback = calibrated.Calibrated(sgld, sgld, None, pd.DataFrame(), [1], "no cell")
    assert fallback.comparison()["same"].all() and not fallback.recommended


def test_setting_calibrated_sgld_is_the_recommendation_or_the_preset(tmp_path):
    from devbook.regression import SETTING

    run = SETTING.train(SETTING.config("smoke"), root=tmp_path, progress=False)
    found = SETTING.calibrated_sgld(run, "smoke")
    preset = SETTING.sgld("smoke")
    assert found.preset == preset and found.probes and set(found.table["step"]) == set(found.probes)
    if found.recommended:
        values = found.recommendation.values
        assert (found.sgld.epsilon, found.sgld.nbeta, found.sgld.gamma) == (
            values["epsilon"],
            values["nbeta"],
            values["gamma"],
        )
        assert "**ε**" in found.message
    else:
        assert found.sgld == preset and "No recommendation" in found.message
    # chains, draws, batch and data are the preset's; overrides apply after calibrating
    assert found.sgld.num_chains == preset.num_chains and found.sgld.batch_size == preset.batch_size
    again = SETTING.calibrated_sgld(run, "smoke", every=1)
    assert again.sgld.every == 1 and again.sgld.epsilon == found.sgld.epsilon
    pd.testing.assert_frame_equal(again.table, found.table)  # the same cached grid


def test_settings_without_calibration_presets_say_so():
    from devbook.tms import SETTING

    with pytest.raises(ValueError, match="no calibration presets"):
        SETTING.calibration_config("smoke")
