"""The regression transformer of the authors' code (paper App. E.2.1; ~51k parameters).

``RegressionTransformer``: token embedding ``Linear(D+1 -> d, no bias)``; learned absolute
positional embedding ``(2K, d)``, added; ``n_layers`` pre-LayerNorm blocks
``x += Attn(LN(x)); x += MLP(LN(x))`` with causal multi-head attention (fused QKV without bias,
output projection without bias) and an MLP ``d -> d_mlp -> d`` with ReLU; final LayerNorm and
``Linear(d -> D+1)``. Initialisation follows PyTorch's defaults (uniform ``±1/sqrt(fan_in)``
for linear maps, as the authors' ``Linear`` positional embedding), drawn from an explicit
generator.

State-dict names (used by the metrics): ``token_embedding.weight (d, D+1)``,
``pos_embedding (2K, d)``, ``blocks.{i}.ln1/ln2.{weight,bias}``, ``blocks.{i}.attn.qkv.weight
(3d, d)`` (rows: all query heads, all key heads, all value heads), ``blocks.{i}.attn.out.weight``,
``blocks.{i}.mlp.{0,2}.{weight,bias}``, ``ln_final.{weight,bias}``,
``unembedding.{weight (D+1, d), bias}``.

``forward(tokens, return_attn=True)`` also returns the attention patterns, one ``(B, H, T, T)``
tensor per block. :func:`loss_fn` ``(model, (xs, ys))`` is the training loss, in the form
``devbook.llc.estimate_llc`` expects.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from devbook.regression.data import readout, tokenise

PAPER_PARAMETER_COUNT = 51_717  # D=4, K=8, d=64, 2 blocks, 4 heads, d_mlp=64 (counted by hand)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, fused QKV and output projection, both without bias."""

    def __init__(self, d_model: int, n_heads: int, max_len: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"n_heads ({n_heads}) must divide d_model ({d_model})")
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out = nn.Linear(d_model, d_model, bias=False)
        mask = torch.ones(max_len, max_len, dtype=torch.bool).tril()
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x (B, T, d)`` -> output ``(B, T, d)`` and pattern ``(B, H, T, T)`` (rows sum to 1)."""
        B, T, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q, k, v = (z.reshape(B, T, self.n_heads, self.d_head).transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_head)
        scores = scores.masked_fill(~self.mask[:T, :T], float("-inf"))
        pattern = scores.softmax(dim=-1)
        y = (pattern @ v).transpose(1, 2).reshape(B, T, d)
        return self.out(y), pattern


class Block(nn.Module):
    """Pre-LN transformer block: ``x += Attn(LN1(x)); x += MLP(LN2(x))``."""

    def __init__(self, d_model: int, n_heads: int, d_mlp: int, max_len: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, max_len)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, pattern = self.attn(self.ln1(x))
        x = x + a
        return x + self.mlp(self.ln2(x)), pattern


class RegressionTransformer(nn.Module):
    """The in-context regression transformer; see the module docstring."""

    def __init__(
        self,
        task_dim: int = 4,
        num_examples: int = 8,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        d_mlp: int = 64,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.task_dim, self.num_examples = task_dim, num_examples
        self.max_len = 2 * num_examples
        self.token_embedding = nn.Linear(task_dim + 1, d_model, bias=False)
        self.pos_embedding = nn.Parameter(torch.empty(self.max_len, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_mlp, self.max_len) for _ in range(n_layers))
        self.ln_final = nn.LayerNorm(d_model)
        self.unembedding = nn.Linear(d_model, task_dim + 1)
        self.reset_parameters(generator)

    @classmethod
    def from_config(
        cls, config: dict[str, Any], generator: torch.Generator | None = None
    ) -> RegressionTransformer:
        return cls(
            config["task_dim"],
            config["num_examples"],
            config["d_model"],
            config["n_layers"],
            config["n_heads"],
            config["d_mlp"],
            generator,
        )

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """PyTorch-default initialisation drawn from ``generator`` (deterministic given it)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                bound = 1 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=generator)
                if module.bias is not None:
                    module.bias.uniform_(-bound, bound, generator=generator)
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        bound = 1 / math.sqrt(self.max_len)  # the authors' positional Linear(2K -> d)
        self.pos_embedding.uniform_(-bound, bound, generator=generator)

    def forward(self, tokens: Tensor, return_attn: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """``tokens (B, T, D+1)`` with ``T <= 2K`` -> outputs ``(B, T, D+1)`` [, patterns]."""
        T = tokens.shape[1]
        if T > self.max_len or tokens.shape[-1] != self.task_dim + 1:
            raise ValueError(
                f"tokens must be (B, T <= {self.max_len}, {self.task_dim + 1}), got {tuple(tokens.shape)}"
            )
        x = self.token_embedding(tokens) + self.pos_embedding[:T]
        patterns = []
        for block in self.blocks:
            x, pattern = block(x)
            patterns.append(pattern)
        out = self.unembedding(self.ln_final(x))
        return (out, patterns) if return_attn else out

    def predict(self, xs: Tensor, ys: Tensor) -> Tensor:
        """Predictions ``ŷ (B, K)`` for ``xs (B, K, D)``, ``ys (B, K)`` (ŷ_k sees pairs < k, x_k)."""
        return readout(self.forward(tokenise(xs, ys)))


def loss_fn(model: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
    """Mean squared error of the predictions over ``k`` and the batch; ``batch = (xs, ys)``."""
    xs, ys = batch
    return ((readout(model(tokenise(xs, ys))) - ys) ** 2).mean()
