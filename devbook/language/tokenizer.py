"""Byte-level BPE tokenizers for the language chapter (``book/language/stages.md``).

The paper truncates GPT-2's tokenizer to 5,000 tokens. Here a 5,000-token byte-level BPE is
trained with HF ``tokenizers`` on the training split of :mod:`devbook.language.corpus`; a
50,000-token BPE on the same text stands in for GPT-2's vocabulary, whose merge order defines
the "common n-grams" of the n-gram score (paper App. C.2.2). Both are deterministic
(one thread, fixed trainer settings) and cached by a hash of the text.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from devbook.paths import cache_dir

BOS = "<|endoftext|>"
BOS_ID = 0  # the only special token, first in the vocabulary; also separates documents


def text_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(hashlib.sha256(t.encode("utf-8")).digest())
    return h.hexdigest()[:16]


def train_bpe(texts: Sequence[str], vocab_size: int = 5000, cache: bool = True) -> Tokenizer:
    """A byte-level BPE of ``vocab_size`` tokens (``<|endoftext|>`` = id 0) trained on ``texts``.

    Cached under ``cache_dir("tokenizer")`` by the texts' hash, so the same text gives the
    same tokenizer file; training runs single-threaded so it is deterministic.
    """
    if vocab_size < 257:
        raise ValueError(f"vocab_size must be >= 257 (256 bytes + {BOS}), got {vocab_size}")
    path = cache_dir("tokenizer") / f"bpe{vocab_size}_{text_hash(texts)}.json"
    if cache and path.exists():
        return Tokenizer.from_file(str(path))
    os.environ["RAYON_NUM_THREADS"] = "1"  # deterministic merges, polite on shared machines
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS],
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    if cache:
        tmp = path.with_suffix(".tmp")
        tok.save(str(tmp))
        tmp.replace(path)
    return tok


def encode_documents(tok: Tokenizer, texts: Sequence[str]) -> np.ndarray:
    """One token stream: each document preceded by ``<|endoftext|>``. Shape ``(n_tokens,)``, int32."""
    parts = []
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        parts.append(np.asarray([BOS_ID] + enc.ids, dtype=np.int32))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def common_ngrams(small: Tokenizer, large: Tokenizer, n: int, count: int = 1000) -> np.ndarray:
    """The first ``count`` tokens of ``large`` (in merge order) that ``small`` splits into ``n`` tokens.

    Returns an int array ``(count, n)`` of ``small``'s token ids (fewer rows if not enough).
    This is the paper's heuristic for common n-grams (C.2.2), with our 50k BPE for GPT-2's.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    vocab = large.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)  # ids are assigned in merge order
    decoder = decoders.ByteLevel()
    found: list[list[int]] = []
    for token in tokens[257:]:  # skip <|endoftext|> and the 256-byte alphabet: merges only
        text = decoder.decode([token])
        if "\ufffd" in text:  # a fragment of a multi-byte character
            continue
        ids = small.encode(text, add_special_tokens=False).ids
        if len(ids) == n:
            found.append(ids)
            if len(found) == count:
                break
    return np.asarray(found, dtype=np.int64).reshape(-1, n)


def tokenizer_stats(tok: Tokenizer, texts: Sequence[str]) -> dict[str, float]:
    """Vocabulary size, tokens, and bytes per token of ``tok`` on ``texts`` (for the chapter)."""
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(list(texts), add_special_tokens=False))
    return {
        "vocab_size": tok.get_vocab_size(),
        "tokens": n_tokens,
        "bytes": n_bytes,
        "bytes_per_token": n_bytes / max(n_tokens, 1),
    }


def tokenizer_path(texts: Sequence[str], vocab_size: int) -> Path:
    return cache_dir("tokenizer") / f"bpe{vocab_size}_{text_hash(texts)}.json"
