"""Tests of the language proxy recorded during training and of devbook.language.forms."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from devbook.language import SETTING
from devbook.language import forms as fm
from devbook.language import proxy as px
from devbook.language.data import language_data
from devbook.store import open_run
from devbook.training import train_run


@pytest.fixture(scope="module")
def smoke_config() -> dict:
    return SETTING.config("smoke")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, smoke_config):
    return SETTING.train(smoke_config, root=tmp_path_factory.mktemp("runs"), progress=False)


def _train_plain(config: dict, root: Path):
    """The same run trained without any recorder."""
    run = open_run(config, root)
    steps = SETTING.checkpoint_steps(config)
    return train_run(
        run,
        lambda: SETTING.make_trainer(config),
        config["num_steps"],
        steps,
        log_every=config["log_every"],
        progress=False,
    )


def test_recording_leaves_training_bitwise_unchanged(recorded, smoke_config, tmp_path) -> None:
    plain = _train_plain(smoke_config, tmp_path)
    assert recorded.checkpoint_steps() == plain.checkpoint_steps()
    for step in plain.checkpoint_steps():
        a, b = recorded.load_weights(step), plain.load_weights(step)
        assert all(torch.equal(a[k], b[k]) for k in a), step
    pd.testing.assert_frame_equal(recorded.metrics(), plain.metrics(), check_exact=True)
    assert not (plain.path / "proxy").exists()
    with pytest.raises(px.ProxyNotRecorded, match="trained without recording"):
        fm.load_proxy(plain)
    px.replay_proxy(SETTING, plain, progress=False)  # record it afterwards, by replaying
    s1, x1, _ = fm.load_proxy(recorded)
    s2, x2, _ = fm.load_proxy(plain)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(x1, x2)


def test_recorded_proxy_shapes_and_values(recorded, smoke_config) -> None:
    steps, logits, spec = fm.load_proxy(recorded)
    assert spec == px.proxy_spec(smoke_config) == px.ProxySpec(**px.PROXY_PRESETS["smoke"])
    assert steps.tolist() == list(range(smoke_config["num_steps"] + 1))
    assert logits.shape == (len(steps), spec.n_sequences) and logits.dtype == np.float32
    windows, positions = px.proxy_pairs(smoke_config, spec)
    assert (
        windows.shape == (spec.n_sequences, smoke_config["n_ctx"])
        and (positions <= smoke_config["n_ctx"] - 2).all()
    )
    model = SETTING.load_model(recorded, 15)
    with torch.no_grad():
        full = model(windows)  # the full forward: logit of the true next token at each pair
    rows = torch.arange(len(positions))
    expected = full[rows, positions, windows[rows, positions + 1]].numpy()
    np.testing.assert_allclose(logits[15], expected, rtol=1e-4, atol=1e-4)
    assert not np.allclose(logits[0], logits[-1])
    # the pairs are validation windows, not training ones, and are their own stream
    stream = language_data(smoke_config).streams["validation"]
    body = windows[0, 1:].numpy()
    hits = np.flatnonzero(np.all(np.lib.stride_tricks.sliding_window_view(stream, len(body)) == body, axis=1))
    assert hits.size >= 1


def test_bad_n_and_specs(recorded, smoke_config) -> None:
    with pytest.raises(ValueError, match="n_sequences >= 1"):
        fm.load_proxy(recorded, n_sequences=0)
    with pytest.raises(px.ProxyNotRecorded, match="holds 0 of the 31"):
        fm.load_proxy(recorded, n_sequences=7)
    with pytest.raises(ValueError, match="unknown proxy settings"):
        px.proxy_spec(smoke_config, size=3)
    assert px.proxy_spec(SETTING.config("paper")) == px.ProxySpec(10_000, 25)
    assert px.proxy_spec(SETTING.config("cpu")).steps(20_000)[:3] == [0, 25, 50]
    odd = px.proxy_spec(SETTING.config("smoke", num_steps=12))  # no preset's scale
    assert odd.every == 1 and odd.n_sequences == px.PROXY_PRESETS["cpu"]["n_sequences"]
    assert px.ProxySpec(4, 10).steps(25) == [0, 10, 20, 25]


def test_incomplete_run_has_no_proxy(smoke_config, tmp_path) -> None:
    run = open_run(smoke_config, tmp_path)
    with pytest.raises(px.ProxyNotRecorded, match="not fully trained"):
        fm.load_proxy(run)


def test_killed_run_resumes_without_gaps_or_duplicates(recorded, smoke_config, tmp_path) -> None:
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from devbook.language import SETTING
        from devbook.language import proxy as px
        flush = px.ProxyRecorder.flush
        def killing_flush(self, step):
            flush(self, step)
            if step == 15:  # the chunk of step 15 is written, its checkpoint is not
                os.kill(os.getpid(), signal.SIGKILL)
        px.ProxyRecorder.flush = killing_flush
        SETTING.train(SETTING.config("smoke"), root=Path({str(tmp_path)!r}), progress=False)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    killed = open_run(smoke_config, tmp_path)
    assert not killed.complete and killed.checkpoint_steps()[-1] == 8
    chunks = sorted(p.name for p in (killed.path / "proxy").rglob("rows-*.npz"))
    assert chunks[-1] == "rows-00000009-00000015.npz"  # beyond the last checkpoint
    resumed = SETTING.train(smoke_config, root=tmp_path, progress=False)
    s1, x1, _ = fm.load_proxy(recorded)
    s2, x2, _ = fm.load_proxy(resumed)
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(x1, x2)


def _tok():
    return language_data(SETTING.config("smoke")).tokenizer


def test_new_word_classifier_on_known_tokens() -> None:
    tok = _tok()
    the, t_he = tok.token_to_id("Ġthe"), tok.token_to_id("he")
    assert the is not None and t_he is not None
    mask = fm.new_word_tokens(tok)
    assert mask[the] and not mask[t_he] and not mask[0]
    windows = torch.tensor([[0, t_he, the, t_he], [0, the, t_he, the]])
    positions = torch.tensor([1, 1])
    assert fm.new_words(windows, positions, tok).tolist() == [True, False]


def test_induction_pattern_classifier_on_known_sequences() -> None:
    a, b, c, d = 11, 12, 13, 14
    windows = torch.tensor(
        [
            [0, a, b, c, a, b],  # … A B … A → B: an induction pattern at position 4
            [0, a, c, c, a, b],  # A occurred before, but followed by C
            [0, c, b, c, a, b],  # B occurred before, but not after A
            [0, a, b, c, d, b],  # the current token D never occurred before
            [0, a, b, a, b, a],  # A B A B: position 3 (A → B) is one, position 2 (B → A) is not
            [0, a, b, a, b, a],
        ]
    )
    positions = torch.tensor([4, 4, 4, 4, 3, 2])
    assert fm.induction_patterns(windows, positions).tolist() == [True, False, False, False, True, False]


def test_extremes_render_and_contents() -> None:
    tok = _tok()
    point = np.array([0.0, 5.0, -4.0, 1.0, -1.0])
    ext = fm.extremes(point, 2)
    assert ext["positive"].tolist() == [1, 3] and ext["negative"].tolist() == [2, 4]
    np.testing.assert_allclose(fm.normalised(point).std(), 1.0)
    with pytest.raises(ValueError, match="k must be"):
        fm.extremes(point, 0)
    the, he = tok.token_to_id("Ġthe"), tok.token_to_id("he")
    text = fm.render(torch.tensor([0, he, he, the]), 2, tok)
    assert text == "⟨eot⟩/he/[he] → ␣the"
    assert fm.render(torch.tensor([0, he, the]), 0, tok) == "[⟨eot⟩] → he"


def _fake_search(points: list[np.ndarray]):
    class F:
        def __init__(self, p, s):
            self.point, self.step = p, s

    class S:
        forms = [F(p, 10.0 * (i + 1)) for i, p in enumerate(points)]

    return S()


def test_form_contents_and_comparison() -> None:
    kinds = {
        "new words": np.array([1, 1, 0, 0, 0, 0], bool),
        "induction patterns": np.array([0, 0, 0, 0, 1, 1], bool),
    }
    point = np.array([3.0, 2.0, 0.0, 0.1, -2.0, -3.0])
    contents = fm.form_contents(_fake_search([point]), kinds, 2)
    pos = contents[contents["side"] == "positive"].iloc[0]
    neg = contents[contents["side"] == "negative"].iloc[0]
    base = contents[contents["side"] == "base rate"].iloc[0]
    assert (pos["new words"], pos["induction patterns"]) == (1.0, 0.0)
    assert (neg["new words"], neg["induction patterns"]) == (0.0, 1.0)
    assert base["new words"] == pytest.approx(1 / 3)
    assert "100% are new words" in fm.describe_contents(contents, 2)
    # the paper's forms fall in LM3 and LM5; a run with three stages reaches only the first
    stages = pd.DataFrame({"start": [0, 100, 500], "end": [100, 500, 2000], "type": ["A", "A", "B"]})
    table = pd.DataFrame({"step": [600.0, 50.0], "p_value": [0.01, 0.01]})
    v = fm.compare_forms(table, stages, contents.assign(form=[1, 1, "all N"]))
    assert list(v["paper stage"]) == ["LM3", "LM5"]
    assert list(v["verdict"]) == ["found", "beyond this run"]
    assert v.loc["F1", "candidates (p)"] == "1 at 600 (0.01)" and v.loc["F1", "content agrees"] == "yes"
    weak = fm.compare_forms(table.assign(p_value=[0.3, 0.01]), stages)
    assert weak.loc["F1", "verdict"] == "not found"
    assert fm.stage_of(100, stages) == 0 and fm.stage_of(5000, stages) == -1


def test_end_to_end_smoke(recorded, smoke_config) -> None:
    steps, logits, spec = fm.load_proxy(recorded)
    hp = fm.forms_preset("smoke")
    search = fm.search_forms(steps, logits, hp)
    assert search.potentials.shape == (len(search.forms), len(steps))
    windows, positions, kinds = fm.kinds_of(smoke_config, spec, language_data(smoke_config).tokenizer)
    contents = fm.form_contents(search, kinds, hp["k_extreme"])
    assert len(contents) == 2 * len(search.forms) + 1
    for form in search.forms:
        ex = fm.extreme_examples(
            form.point, windows, positions, language_data(smoke_config).tokenizer, 3, kinds
        )
        assert len(ex) == 6 and ex["token in context"].str.contains("→").all()
    assert {c for c in search.table.columns if c.endswith("_b6")} == {"pc1_b6", "pc2_b6", "pc3_b6"}
    with pytest.raises(ValueError, match="valid"):
        fm.forms_preset("cpu", surrogate=3)
