"""The paper's attention-only language transformer (paper App. E.1.1), via TransformerLens.

:func:`hooked_config` maps a run config (:mod:`devbook.language.config`) to a
``HookedTransformerConfig``: 1 or 2 layers, 8 heads of size 32, d_model 256, attention only,
shortformer positional embedding (added to queries and keys only), LayerNorm, d_vocab 5000.
:func:`make_model` initialises it deterministically from a seed without touching the global
RNG; :func:`token_losses` / :func:`loss_fn` are the per-token and mean next-token losses used
for training, the metrics and the LLC. Used by ``book/language/stages.md``.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from typing import Any

import torch
from torch import nn
from tqdm import TqdmWarning

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    # TransformerLens imports tqdm.auto, which warns in a kernel without ipywidgets (noise:
    # devbook's own bars go through devbook.progress)
    warnings.simplefilter("ignore", TqdmWarning)
    from transformer_lens import HookedTransformer, HookedTransformerConfig


def hooked_config(config: dict[str, Any]) -> HookedTransformerConfig:
    """The TransformerLens config of a language run config."""
    return HookedTransformerConfig(
        n_layers=config["n_layers"],
        d_model=config["d_model"],
        n_heads=config["n_heads"],
        d_head=config["d_head"],
        n_ctx=config["n_ctx"],
        d_vocab=config["d_vocab"],
        act_fn=None,
        attn_only=True,
        positional_embedding_type="shortformer",
        normalization_type="LN",
        default_prepend_bos=False,
        device="cpu",
    )


def make_model(config: dict[str, Any], seed: int | None = None) -> HookedTransformer:
    """A freshly initialised model (TransformerLens' init, seeded by ``seed`` or ``config["seed"]``).

    The global torch RNG is forked, so building a model does not change other random streams.
    """
    with warnings.catch_warnings(), torch.random.fork_rng(devices=[]), quiet():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.manual_seed(config["seed"] if seed is None else seed)
        return HookedTransformer(hooked_config(config))


def quiet() -> contextlib.AbstractContextManager:
    """Silence TransformerLens's "Moving model to device" prints (they would land in the page)."""
    return contextlib.redirect_stdout(io.StringIO())


def token_losses(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy at each position: ``(batch, n_ctx - 1)``; entry i predicts token i+1."""
    logits = model(tokens, return_type="logits")
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return -logp.gather(-1, tokens[:, 1:, None]).squeeze(-1)


def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean next-token loss of ``batch = (tokens,)`` (the signature ``devbook.llc`` expects)."""
    (tokens,) = batch
    logits = model(tokens, return_type="logits")
    return nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)
    )
