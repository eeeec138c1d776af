"""Tasks, sequences, tokens and fixed datasets of in-context linear regression (paper §2.2, App. E.2).

A task is ``t ~ N(0, I_D)`` (infinite tasks) or one of ``M`` fixed tasks drawn once (discrete
tasks, ``num_tasks = M``); a sequence is ``K`` pairs ``x_k ~ N(0, I_D)``,
``y_k = t·x_k + N(0, σ²)``. Shapes: ``xs (B, K, D)``, ``ys (B, K)``, ``tasks (B, D)``.

Tokens (``D + 1`` dims): ``x_k -> (0, x_k)``, ``y_k -> (y_k, 0, ..., 0)``, interleaved
``x_1, y_1, ..., x_K, y_K`` (``2K`` tokens); the prediction of ``y_k`` is the first component of
the output at the ``x_k`` position (:func:`readout`).

All randomness goes through an explicit ``torch.Generator`` (:func:`devbook.rng.generator`,
independent streams per ``(seed, purpose)``). :func:`fixed_dataset` gives the held-out batches
used by the metrics and the SGLD dataset of the LLC sweep (``(xs, ys)``, sharing dim 0).

Used by ``devbook.regression.train`` / ``metrics`` and the regression chapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from devbook.rng import generator


@dataclass(frozen=True)
class Batch:
    """One batch of sequences: ``xs (B, K, D)``, ``ys (B, K)``, ``tasks (B, D)``."""

    xs: Tensor
    ys: Tensor
    tasks: Tensor


class RegressionData:
    """The data distribution of a run: task prior (infinite or ``M`` discrete tasks) and noise.

    ``RegressionData.from_config(config)`` uses the config's ``task_dim``, ``num_examples``,
    ``noise_var``, ``num_tasks`` and (for the discrete task set) ``seed``.
    """

    def __init__(
        self,
        task_dim: int = 4,
        num_examples: int = 8,
        noise_var: float = 0.125,
        num_tasks: int = 0,
        task_seed: int = 0,
    ) -> None:
        if task_dim < 1 or num_examples < 1 or noise_var < 0 or num_tasks < 0:
            raise ValueError(
                f"need task_dim >= 1, num_examples >= 1, noise_var >= 0, "
                f"num_tasks >= 0; got {task_dim}, {num_examples}, {noise_var}, "
                f"{num_tasks}"
            )
        self.D, self.K, self.noise_var, self.num_tasks = task_dim, num_examples, noise_var, num_tasks
        self.task_set: Tensor | None = None
        if num_tasks > 0:
            self.task_set = torch.randn(num_tasks, task_dim, generator=generator(task_seed, "task-set"))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RegressionData:
        return cls(
            config["task_dim"],
            config["num_examples"],
            config["noise_var"],
            config["num_tasks"],
            config["seed"],
        )

    def task_prior_mean(self) -> Tensor:
        """``t̄ (D,)``: the mean training task (mean of the discrete set; 0 for infinite tasks)."""
        if self.task_set is None:
            return torch.zeros(self.D)
        return self.task_set.mean(0)

    def sample_tasks(
        self, n: int, gen: torch.Generator, scale: float = 1.0, gaussian: bool = False
    ) -> Tensor:
        """``(n, D)`` tasks from the training prior (or ``N(0, I)`` if ``gaussian``), × ``scale``."""
        if self.task_set is None or gaussian:
            return scale * torch.randn(n, self.D, generator=gen)
        idx = torch.randint(self.num_tasks, (n,), generator=gen)
        return scale * self.task_set[idx]

    def sample(
        self,
        n: int,
        gen: torch.Generator,
        *,
        input_scale: float = 1.0,
        task_scale: float = 1.0,
        gaussian_tasks: bool = False,
        tasks: Tensor | None = None,
    ) -> Batch:
        """``n`` sequences; ``input_scale``/``task_scale`` = the gains ``g`` of App. D.2.3."""
        if tasks is None:
            tasks = self.sample_tasks(n, gen, task_scale, gaussian_tasks)
        elif tasks.shape != (n, self.D):
            raise ValueError(f"tasks must have shape {(n, self.D)}, got {tuple(tasks.shape)}")
        xs = input_scale * torch.randn(n, self.K, self.D, generator=gen)
        noise = torch.randn(n, self.K, generator=gen) * self.noise_var**0.5
        ys = torch.einsum("bkd,bd->bk", xs, tasks) + noise
        return Batch(xs, ys, tasks)


def tokenise(xs: Tensor, ys: Tensor) -> Tensor:
    """``(B, K, D)``, ``(B, K)`` -> tokens ``(B, 2K, D+1)``: ``(0, x_k)`` then ``(y_k, 0, …, 0)``."""
    if xs.ndim != 3 or ys.shape != xs.shape[:2]:
        raise ValueError(f"need xs (B, K, D) and ys (B, K); got {tuple(xs.shape)}, {tuple(ys.shape)}")
    B, K, D = xs.shape
    x_tok = torch.cat([xs.new_zeros(B, K, 1), xs], dim=-1)
    y_tok = torch.cat([ys.unsqueeze(-1), ys.new_zeros(B, K, D)], dim=-1)
    return torch.stack([x_tok, y_tok], dim=2).reshape(B, 2 * K, D + 1)


def readout(outputs: Tensor) -> Tensor:
    """Predictions ``(B, K)``: first component of the outputs ``(B, 2K, D+1)`` at x positions."""
    return outputs[:, 0::2, 0]


def fixed_dataset(
    config: dict[str, Any], n: int, purpose: str = "eval", seed: int = 0, **scales: Any
) -> Batch:
    """A held-out batch of ``n`` sequences from the run's distribution, the same on every call.

    ``purpose`` names an independent stream (``"eval"`` for metrics, ``"sgld"`` for the LLC
    dataset, ``"ood-..."`` for probes); ``seed`` is the evaluation seed (independent of the
    training seed, which only picks the discrete task set). ``scales`` go to
    :meth:`RegressionData.sample`.
    """
    data = RegressionData.from_config(config)
    return data.sample(n, generator(seed, f"heldout:{purpose}"), **scales)


def sgld_dataset(config: dict[str, Any], n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The fixed SGLD dataset ``(xs (n, K, D), ys (n, K))`` of the LLC sweep (paper: n = 32,768
    or 131,072), for ``devbook.llc.estimate_llc(model, loss_fn, data, ...)``."""
    batch = fixed_dataset(config, n, "sgld", seed)
    return batch.xs, batch.ys
