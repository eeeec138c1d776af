"""Resumable training into a run of :mod:`devbook.store`, and the checkpoint schedule.

- :class:`Trainer` (protocol) and :class:`StandardTrainer` (model + optimiser + scheduler +
  named generators (``torch.Generator``) + a step function), driven by :func:`train_run`, which resumes a
  killed run from its last checkpoint and ends bitwise-identical to an uninterrupted run.
- :class:`Recorder` (protocol): an optional observer of :func:`train_run` that evaluates the
  weights at steps of its choice (the language forms' proxy) without touching the training
  state, and writes what it recorded just before each checkpoint is saved;
- :func:`checkpoint_schedule`: log-spaced ∪ linear-spaced steps (paper App. E.1.2, E.2.3),
  used by every setting; :func:`parameter_count`: the number a model is sized by.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from devbook.progress import progress as tqdm
from devbook.store import Run, StoreError


def checkpoint_schedule(total_steps: int, n_log: int = 100, n_linear: int = 100) -> list[int]:
    """Sorted distinct steps: ``n_linear`` linear-spaced in ``[0, T]`` ∪ ``n_log`` log-spaced in
    ``[1, T]`` (rounded to integers; 190 distinct for the paper's 100 + 100 over 500k)."""
    if total_steps < 1 or n_log < 0 or n_linear < 0:
        raise ValueError(
            f"need total_steps >= 1, n_log >= 0, n_linear >= 0; got {total_steps}, {n_log}, {n_linear}"
        )
    lin = np.rint(np.linspace(0, total_steps, n_linear)) if n_linear else np.array([])
    log = np.rint(np.logspace(0, np.log10(total_steps), n_log)) if n_log else np.array([])
    return sorted({int(s) for s in np.concatenate([lin, log])} | {0, total_steps})


def parameter_count(model: torch.nn.Module, exclude: tuple[str, ...] = ()) -> int:
    """Number of trainable parameters of ``model``, leaving out the parameters named in ``exclude``.

    Parameters
    ----------
    model : torch.nn.Module
        Any model.
    exclude : tuple of str
        Parameter names not counted (the paper counts the language model without
        ``"pos_embed.W_pos"``).

    Returns
    -------
    int
        51,717 for the paper's regression transformer; about 3.1M for its 2-layer language model.
    """
    return sum(p.numel() for name, p in model.named_parameters() if p.requires_grad and name not in exclude)


class Trainer(Protocol):
    """What :func:`train_run` drives: a model plus everything else a resume needs.

    ``train_step(step)`` performs update number ``step + 1`` (from the weights after ``step``
    updates) and returns scalars to log; ``state_dict``/``load_state_dict`` cover everything but
    the model weights (optimiser, scheduler, generators, sampler state), as tensors, dicts,
    lists, tuples and scalars (see :func:`devbook.files.flatten_state`).
    """

    model: torch.nn.Module

    def train_step(self, step: int) -> Mapping[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class Recorder(Protocol):
    """Records something of the weights during :func:`train_run`, resumably.

    ``observe(model, step)`` sees the weights after ``step`` updates (0 = initialisation; every
    step of the run, in order) and must leave the model, the generators and the global RNG as
    it found them; ``flush(step)`` writes what was observed up to ``step`` and is called just
    before the checkpoint at ``step`` is saved; ``resume(step)`` is called once before training
    continues from the saved state at ``step`` and forgets whatever was written after it (at
    ``step`` 0, step 0 too: a new or restarted run observes it again).
    """

    def observe(self, model: torch.nn.Module, step: int) -> None: ...

    def flush(self, step: int) -> None: ...

    def resume(self, step: int) -> None: ...


@dataclass
class StandardTrainer:
    """A :class:`Trainer` from a model, an optimiser, an optional LR scheduler and generators.

    ``loss_fn(trainer, step) -> loss`` draws its batch from ``trainer.generators`` and returns the
    scalar loss tensor; ``train_step`` zeroes gradients, back-propagates, steps the optimiser and
    scheduler, and returns ``{"loss": ..., "lr": ...}`` (the learning rate used for this update).
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    loss_fn: Callable[[StandardTrainer, int], torch.Tensor]
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    generators: dict[str, torch.Generator] = field(default_factory=dict)

    def train_step(self, step: int) -> dict[str, float]:
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self, step)
        loss.backward()
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return {"loss": float(loss.detach()), "lr": lr}

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "generators": {k: g.get_state() for k, g in self.generators.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if set(state["generators"]) != set(self.generators):
            raise StoreError(
                f"saved generators {sorted(state['generators'])} differ from {sorted(self.generators)}"
            )
        for k, g in self.generators.items():
            g.set_state(state["generators"][k])


def _check_plan(
    total_steps: int, checkpoint_steps: list[int], log_every: int, keep_state: str
) -> dict[str, Any]:
    """The training plan recorded in the manifest (checkpoints sorted, the last step included)."""
    if total_steps < 1 or log_every < 1:
        raise ValueError(f"total_steps ({total_steps}) and log_every ({log_every}) must be >= 1")
    if keep_state not in ("last", "all"):
        raise ValueError(f"keep_state must be 'last' or 'all', got {keep_state!r}")
    bad = [s for s in checkpoint_steps if not 0 <= int(s) <= total_steps]
    if bad:
        raise ValueError(f"checkpoint steps {bad[:5]} lie outside [0, {total_steps}]")
    ckpts = sorted({int(s) for s in checkpoint_steps} | {total_steps})
    return {"total_steps": total_steps, "checkpoint_steps": ckpts, "log_every": log_every}


def _resume(
    run: Run, trainer: Trainer, manifest: dict[str, Any], plan: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Restore the newest saved state into ``trainer`` (or record the plan of a new run).

    Returns the step to continue from and the running sums of the metrics log.
    """
    saved = sorted(int(s) for s in manifest["states"])
    if not saved:
        run.checkpoints.start_plan(plan)
        return 0, {"n": 0, "sums": {}}
    start = saved[-1]
    run.load_into(trainer.model, start)
    state = run.checkpoints.load_state(start)
    trainer.load_state_dict(state["trainer"])
    torch.set_rng_state(state["torch_rng"])
    return start, state["log_acc"]


def _run_steps(
    run: Run,
    trainer: Trainer,
    start: int,
    acc: dict[str, Any],
    plan: dict[str, Any],
    keep_state: str,
    bar: Any,
    recorder: Recorder | None = None,
) -> None:
    """Updates ``start + 1 … total_steps``: log every ``log_every``, save at the checkpoints."""
    total_steps, log_every = plan["total_steps"], plan["log_every"]
    todo = set(plan["checkpoint_steps"])

    def save(step: int) -> None:
        if recorder is not None:
            recorder.flush(step)
        state = {"trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state(), "log_acc": acc}
        run.checkpoints.save(step, trainer.model.state_dict(), state, keep_state)

    if start == 0 and recorder is not None:
        recorder.observe(trainer.model, 0)
    if start == 0 and 0 in todo:
        save(0)
    for step in range(start, total_steps):
        scalars = trainer.train_step(step)
        done = step + 1
        if recorder is not None:
            recorder.observe(trainer.model, done)
        acc["n"] += 1
        for k, v in scalars.items():
            acc["sums"][k] = acc["sums"].get(k, 0.0) + float(v)
        if done % log_every == 0 or done == total_steps:
            row = {"step": done, **{k: v / acc["n"] for k, v in acc["sums"].items()}}
            run.log.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
            acc = {"n": 0, "sums": {}}
        if done in todo:
            save(done)
        bar.update(1)


def train_run(
    run: Run,
    make_trainer: Callable[[], Trainer],
    total_steps: int,
    checkpoint_steps: list[int],
    *,
    log_every: int = 100,
    keep_state: str = "last",
    progress: bool = True,
    desc: str | None = None,
    recorder: Recorder | None = None,
) -> Run:
    """Train ``run`` to ``total_steps`` updates, resuming from its last saved state; returns it.

    ``make_trainer()`` builds a freshly initialised trainer (deterministic from the config);
    weights are saved at every step in ``checkpoint_steps`` (0 = initialisation) and at
    ``total_steps``, each with the full training state (``keep_state="last"`` keeps only the
    newest state; ``"all"`` keeps every one). Every ``log_every`` updates the mean of the
    trainer's scalars over those updates is appended to the metrics log. A run killed at any
    point resumes from its last checkpoint and ends bitwise-identical (weights and log) to an
    uninterrupted one. A complete run returns at once. A ``recorder`` (:class:`Recorder`)
    observes the weights after every update and is flushed before every save.
    """
    plan = _check_plan(total_steps, checkpoint_steps, log_every, keep_state)
    with run.lock():
        m = run.checkpoints.manifest()
        if m["plan"] is not None and m["plan"] != plan:
            raise StoreError(
                f"{run.checkpoints.manifest_file}: run was started with another "
                f"plan (total_steps {m['plan']['total_steps']}, "
                f"{len(m['plan']['checkpoint_steps'])} checkpoints)"
            )
        if run.complete:
            return run
        run.checkpoints.remove_partial_writes()
        trainer = make_trainer()
        start, acc = _resume(run, trainer, m, plan)
        run.log.truncate(start)
        if recorder is not None:
            recorder.resume(start)
        bar = tqdm(
            total=total_steps,
            initial=start,
            disable=not progress,
            desc=desc or f"train {run.path.name}",
            mininterval=1.0,
        )
        _run_steps(run, trainer, start, acc, plan, keep_state, bar, recorder)
        bar.close()
        run.mark_complete({"total_steps": total_steps, "checkpoints": len(plan["checkpoint_steps"])})
    return run
