"""The language setting (chapter ``book/language/stages.md``): corpus, tokenizer, model, training, metrics."""
