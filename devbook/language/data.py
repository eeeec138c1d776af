"""Token streams and batches of the language setting (``book/language/stages.md``).

:func:`language_data` turns a run config into a :class:`LanguageData`: the document splits
(:mod:`devbook.language.corpus`), the 5k BPE trained on the training split and the 10× larger
BPE that defines common n-grams (:mod:`devbook.language.tokenizer`), and one token stream per
split (each document preceded by ``<|endoftext|>``), cached as ``.npy``. Training windows are
``[BOS] + stream[o : o + n_ctx - 1]`` at offsets drawn from a ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer

from devbook.language import corpus
from devbook.language import tokenizer as tk
from devbook.paths import cache_dir


@dataclass
class LanguageData:
    """Splits as token streams (``(n_tokens,)`` int32 arrays) plus the two tokenizers."""

    streams: dict[str, np.ndarray]
    tokenizer: Tokenizer
    large_tokenizer: Tokenizer
    documents: dict[str, list[corpus.Document]]

    def windows(self, split: str, offsets: torch.Tensor, n_ctx: int) -> torch.Tensor:
        """Windows ``[BOS] + stream[o : o + n_ctx - 1]`` for each offset. Shape ``(len(offsets), n_ctx)``."""
        stream = torch.from_numpy(self.streams[split].astype(np.int64))
        idx = offsets[:, None] + torch.arange(n_ctx - 1)[None, :]
        body = stream[idx]
        bos = torch.full((len(offsets), 1), tk.BOS_ID, dtype=torch.long)
        return torch.cat([bos, body], dim=1)

    def sample(self, split: str, batch_size: int, n_ctx: int, generator: torch.Generator) -> torch.Tensor:
        """A random batch of windows ``(batch_size, n_ctx)`` (long) from ``split``."""
        n = len(self.streams[split]) - n_ctx
        if n < 1:
            raise ValueError(
                f"split {split!r} has {len(self.streams[split])} tokens, fewer than n_ctx = {n_ctx}"
            )
        offsets = torch.randint(0, n, (batch_size,), generator=generator)
        return self.windows(split, offsets, n_ctx)

    def passage(self, split: str, n_tokens: int, n_ctx: int, seed: int = 0) -> torch.Tensor:
        """Consecutive windows ``(k, n_ctx)`` whose bodies continue each other, covering at
        least ``n_tokens`` tokens of ``split`` from an offset fixed by ``seed`` (Figure 17)."""
        k = -(-n_tokens // (n_ctx - 1))
        n = len(self.streams[split]) - k * (n_ctx - 1)
        if n < 1:
            raise ValueError(
                f"split {split!r} has {len(self.streams[split])} tokens, fewer than "
                f"{k} windows of {n_ctx - 1}"
            )
        start = torch.randint(0, n, (1,), generator=torch.Generator().manual_seed(seed))
        return self.windows(split, start + torch.arange(k) * (n_ctx - 1), n_ctx)

    def fixed(self, split: str, count: int, n_ctx: int, seed: int = 0) -> torch.Tensor:
        """``count`` windows from ``split`` at offsets fixed by ``seed`` (evaluation sets)."""
        g = torch.Generator().manual_seed(seed)
        return self.sample(split, count, n_ctx, g)


def _documents(data: str, split_seed: int) -> dict[str, list[corpus.Document]]:
    if data == "corpus":
        return corpus.split_documents(corpus.load_corpus(), seed=split_seed)
    import datasets

    path = Path(data)
    if not path.exists():
        raise ValueError(
            f"data must be 'corpus' or a folder saved with datasets' save_to_disk; {path} does not exist"
        )
    n = len(datasets.load_from_disk(str(path)))
    k = max(1, n // 20)
    return corpus.load_pile(path, n_train=n - 2 * k, n_sgld=k, n_validation=k)


@lru_cache(maxsize=4)
def _cached(data: str, split_seed: int, d_vocab: int) -> LanguageData:
    docs = _documents(data, split_seed)
    train_texts = [d.text for d in docs["train"]]
    tok = tk.train_bpe(train_texts, vocab_size=d_vocab)
    large = tk.train_bpe(train_texts, vocab_size=10 * d_vocab)
    key = f"{tk.text_hash(train_texts)}-{split_seed}-{d_vocab}"
    streams = {}
    for split, part in docs.items():
        path = cache_dir("tokens") / f"{split}-{key}-{tk.text_hash([d.text for d in part])}.npy"
        if path.exists():
            streams[split] = np.load(path, allow_pickle=False)
        else:
            streams[split] = tk.encode_documents(tok, [d.text for d in part])
            tmp = path.with_name(path.name + ".tmp.npy")
            np.save(tmp, streams[split], allow_pickle=False)
            tmp.replace(path)
    return LanguageData(streams, tok, large, docs)


def source_token_shares(data: LanguageData) -> dict[str, float]:
    """Share of the corpus's tokens (all splits, ``<|endoftext|>`` not counted) of each source.

    Parameters
    ----------
    data : LanguageData
        Its streams hold each document of ``data.documents[split]``, in order, after an
        ``<|endoftext|>``; the counts are read from them (nothing is encoded again).

    Returns
    -------
    dict of str to float
        ``{source: share}``, sorted by source, summing to 1. Used by the language chapter.
    """
    counts: dict[str, int] = {}
    for split, part in data.documents.items():
        stream = data.streams[split]
        starts = np.flatnonzero(stream == tk.BOS_ID)
        if len(starts) != len(part):
            raise ValueError(f"split {split!r}: {len(starts)} document starts for {len(part)} documents")
        for doc, n in zip(part, np.diff(np.append(starts, len(stream))) - 1):
            counts[doc.source] = counts.get(doc.source, 0) + int(n)
    total = sum(counts.values())
    return {source: n / total for source, n in sorted(counts.items())}


def source_windows(
    data: LanguageData, split: str, sources: tuple[str, ...], count: int, n_ctx: int, seed: int = 0
) -> torch.Tensor:
    """Windows as :meth:`LanguageData.fixed`, from some sources' documents of a split only.

    Parameters
    ----------
    data : LanguageData
        The documents and the tokenizer (the split's documents are encoded again).
    split : str
        ``"train"``, ``"sgld"`` or ``"validation"``.
    sources : tuple of str
        The sources to keep (e.g. the books, without the code).
    count, n_ctx, seed : int
        Number and length of the windows, and the seed of their offsets.

    Returns
    -------
    torch.Tensor
        ``(count, n_ctx)`` long, BOS first. Used by the language chapter.
    """
    texts = [d.text for d in data.documents[split] if d.source in sources]
    if not texts:
        raise ValueError(f"split {split!r} has no document from {sources}")
    stream = tk.encode_documents(data.tokenizer, texts)
    return LanguageData({split: stream}, data.tokenizer, data.large_tokenizer, {}).fixed(
        split, count, n_ctx, seed
    )


def language_data(config: dict[str, Any]) -> LanguageData:
    """The data of a run config (fields ``data``, ``split_seed``, ``d_vocab``); cached."""
    return _cached(str(config["data"]), int(config["split_seed"]), int(config["d_vocab"]))
