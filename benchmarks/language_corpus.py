"""The code component's share of the corpus's tokens and the induction rule's share, old vs new.

For the corpus with and without its code component (``sphinx``; without it is the corpus of
books alone, as before issue 16), each with its own 5,000-token BPE trained on its training
split: the share of tokens from each source, and the share of next tokens that the rule
"… A B … A → B" (:func:`devbook.language.metrics.induction_rule_share`) predicts in validation
windows (``LanguageData.fixed``, seed 0) of several context lengths. Prints a markdown table.
Usage (a minute or two on one core, tokenizers cached afterwards)::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/language_corpus.py --windows 1000
"""

from __future__ import annotations

import argparse

from devbook.language import corpus
from devbook.language import metrics as lm
from devbook.language import tokenizer as tk
from devbook.language.data import LanguageData, source_token_shares


def corpus_data(sources: tuple[str, ...], d_vocab: int, split_seed: int = 0) -> LanguageData:
    """Splits, BPE and token streams of the corpus restricted to ``sources`` (not cached)."""
    docs = [d for d in corpus.load_corpus() if d.source in sources]
    splits = corpus.split_documents(docs, seed=split_seed)
    tok = tk.train_bpe([d.text for d in splits["train"]], vocab_size=d_vocab)
    streams = {k: tk.encode_documents(tok, [d.text for d in v]) for k, v in splits.items()}
    return LanguageData(streams, tok, tok, splits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--contexts", type=int, nargs="+", default=[32, 128, 1024])
    parser.add_argument("--d-vocab", type=int, default=5000)
    args = parser.parse_args()
    books = tuple(s for s in corpus.SOURCES if s != "sphinx")
    print(
        "| corpus | code share of tokens | "
        + " | ".join(f"rule share, n_ctx {n}" for n in args.contexts)
        + " |"
    )
    print("| --- | --- | " + " | ".join("---" for _ in args.contexts) + " |")
    for name, sources in (("books (old)", books), ("books + code (new)", corpus.SOURCES)):
        data = corpus_data(sources, args.d_vocab)
        code = source_token_shares(data).get("sphinx", 0.0)
        rule = [lm.induction_rule_share(data.fixed("validation", args.windows, n), n) for n in args.contexts]
        print(f"| {name} | {code:.1%} | " + " | ".join(f"{r:.1%}" for r in rule) + " |", flush=True)


if __name__ == "__main__":
    main()
