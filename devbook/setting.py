"""The interface every setting implements, and what is written once on top of it.

A *setting* (linear regression, language, the toy model of superposition) is a subclass of
:class:`Setting` that supplies its preset tables, config validation, model, trainer, loss, SGLD
data and checkpoint schedules. Everything generic is written here once and used by all three:

- :meth:`Setting.config` / :meth:`Setting.sgld` / :meth:`Setting.eval_config`: a preset with
  overrides, checked (unknown names, wrong types, values out of range) before any work;
- :meth:`Setting.train` / :meth:`Setting.load_model`: training through the run store
  (:mod:`devbook.store`, resumable) and loading a checkpoint;
- :meth:`Setting.llc_sweep`: the LLC at the checkpoints of a run (:func:`devbook.sweep.sweep_llc`);
- :func:`evaluate_checkpoints`: any per-checkpoint evaluation, cached per step in the run.

:class:`SGLDPreset` is the one SGLD preset type of the book; :meth:`SGLDPreset.sgld_config` is
the one place where it becomes a :class:`devbook.llc.SGLDConfig` (and where the default
nβ = m / log m of paper App. E.3.1 is computed, never typed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from devbook import presets
from devbook.llc import SGLDConfig, default_nbeta
from devbook.store import Run, open_run
from devbook.sweep import LLCSweep, select_steps, sweep_llc
from devbook.training import Recorder, Trainer, train_run

if TYPE_CHECKING:
    from devbook.calibrated import Calibrated

Batch = tuple[torch.Tensor, ...]


@dataclass(frozen=True)
class SGLDPreset:
    """The SGLD settings of one preset: the sampler plus the data and checkpoints it runs on.

    Parameters
    ----------
    epsilon, gamma : float
        Step size ε (> 0) and localisation strength γ (>= 0).
    num_chains, num_draws : int
        Chains C and kept draws T per chain (>= 1).
    batch_size : int
        SGLD minibatch size m (>= 2).
    num_burnin : int
        Steps discarded before the first draw (>= 0).
    nbeta : float or None
        Inverse temperature nβ (> 0); ``None`` means m / log m (:func:`devbook.llc.default_nbeta`).
    num_samples : int
        Size n of the fixed SGLD data set (>= batch_size).
    every : int
        Estimate at one LLC checkpoint in ``every`` (>= 1; first and last always kept).
    seed : int
        SGLD seed, the same at every checkpoint (paper App. E.3.2).
    init_loss_batch_size : int
        Batch size used to compute L_n(w*) over the whole SGLD data set.
    """

    epsilon: float
    gamma: float
    num_chains: int
    num_draws: int
    batch_size: int
    num_burnin: int = 0
    nbeta: float | None = None
    num_samples: int = 1024
    every: int = 1
    seed: int = 0
    init_loss_batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.num_samples < self.batch_size or self.every < 1 or self.seed < 0:
            raise ValueError(
                f"need num_samples >= batch_size, every >= 1 and seed >= 0; got "
                f"num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"every={self.every}, seed={self.seed}"
            )
        if self.nbeta is not None and not (isinstance(self.nbeta, (int, float)) and self.nbeta > 0):
            raise ValueError(f"nbeta must be a number > 0 or None (= m / log m), got {self.nbeta!r}")
        self.sgld_config()  # validates the sampler's values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SGLDPreset:
        """An :class:`SGLDPreset` from a preset-table row (unknown keys raise ``ValueError``)."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise ValueError(f"unknown SGLD settings {unknown}; valid: {', '.join(sorted(valid))}")
        return cls(**values)

    @property
    def resolved_nbeta(self) -> float:
        """nβ, with ``None`` resolved to m / log m."""
        return default_nbeta(self.batch_size) if self.nbeta is None else float(self.nbeta)

    def sgld_config(self) -> SGLDConfig:
        """The sampler's :class:`devbook.llc.SGLDConfig` (the one conversion in the book)."""
        return SGLDConfig(
            epsilon=self.epsilon,
            gamma=self.gamma,
            nbeta=self.resolved_nbeta,
            num_chains=self.num_chains,
            num_draws=self.num_draws,
            num_burnin=self.num_burnin,
            batch_size=self.batch_size,
            init_loss_batch_size=self.init_loss_batch_size,
        )

    def to_dict(self) -> dict[str, Any]:
        """The preset as a plain dict (for tables and cache keys)."""
        return asdict(self)


class Setting(ABC):
    """A setting of the book: presets, model, trainer, loss, SGLD data and checkpoints.

    Subclasses set :attr:`name`, :attr:`run_presets` (training configs, ``{preset: {key:
    default}}``, each with ``"setting": name``), :attr:`sgld_presets` (rows of
    :class:`SGLDPreset`) and optionally :attr:`eval_presets` (other evaluation sizes), and
    implement the abstract methods. The run config is a flat dict of JSON scalars whose hash is
    the run's key in :mod:`devbook.store`: everything that changes the trained weights is in it.
    """

    #: The setting's name (the ``"setting"`` entry of its run configs).
    name: ClassVar[str]
    #: Training configs per preset.
    run_presets: ClassVar[dict[str, dict[str, Any]]]
    #: SGLD settings per preset (rows of :class:`devbook.setting.SGLDPreset`).
    sgld_presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Evaluation sizes per preset.
    eval_presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Calibration grids per preset (:func:`devbook.calibrated.calibration_config`).
    calibration_presets: ClassVar[dict[str, dict[str, Any]]] = {}

    # -- presets
    def config(self, preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
        """The validated run config of ``preset`` with ``overrides`` applied.

        Unknown names or ill-typed values raise ``ValueError`` listing the valid ones
        (:func:`devbook.presets.resolve`); ``setting`` cannot be overridden.
        """
        if "setting" in overrides:
            raise ValueError("'setting' cannot be overridden")
        return self.validate(presets.resolve(self.run_presets, preset, overrides))

    def sgld(self, preset: str = "cpu", **overrides: Any) -> SGLDPreset:
        """The :class:`SGLDPreset` of ``preset`` with ``overrides`` (checked)."""
        return SGLDPreset.from_dict(presets.resolve(self.sgld_presets, preset, overrides))

    def eval_config(self, preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
        """Evaluation sizes of ``preset`` (metric batch sizes and the like) with ``overrides``."""
        cfg = presets.resolve(self.eval_presets, preset, overrides)
        for key, value in cfg.items():
            if isinstance(value, int) and not isinstance(value, bool) and value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        return cfg

    def calibration_config(self, preset: str = "cpu", **overrides: Any) -> dict[str, Any]:
        """The calibration grid of ``preset`` (ε, nβ, γ values, chains per cell, probed checkpoints)."""
        from devbook.calibrated import calibration_config

        if not self.calibration_presets:
            raise ValueError(f"the {self.name} setting has no calibration presets")
        return calibration_config(self.calibration_presets, preset, **overrides)

    def calibrated_sgld(self, run: Run, preset: str = "cpu", **overrides: Any) -> Calibrated:
        """The SGLD sampler of ``preset`` with ε, nβ, γ recommended on ``run`` (paper App. E.3.3).

        The grid of :meth:`calibration_config` runs on the preset's SGLD settings (cached in the
        run store); ``overrides`` (e.g. ``every``) apply to the result afterwards, so they do not
        change what is calibrated. See :func:`devbook.calibrated.calibrated_sgld`.
        """
        from devbook.calibrated import calibrated_sgld

        found = calibrated_sgld(self, run, self.sgld(preset), self.calibration_config(preset))
        if not overrides:
            return found
        values = {**found.sgld.to_dict(), **overrides}
        return replace(found, sgld=SGLDPreset.from_dict(values))

    @abstractmethod
    def validate(self, config: dict[str, Any]) -> dict[str, Any]:
        """Check a full run config; return it or raise ``ValueError`` saying what is wrong."""

    # -- the model and its training
    @abstractmethod
    def make_model(self, config: dict[str, Any]) -> nn.Module:
        """A model of ``config``'s architecture (initialised as training initialises it)."""

    @abstractmethod
    def make_trainer(self, config: dict[str, Any], device: str | torch.device = "cpu") -> Trainer:
        """A freshly initialised :class:`devbook.training.Trainer` (deterministic from config)."""

    @abstractmethod
    def loss_fn(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Scalar mean loss of ``model`` on ``batch`` (the :mod:`devbook.llc` convention)."""

    @abstractmethod
    def checkpoint_steps(self, config: dict[str, Any]) -> list[int]:
        """Every step the run saves (sorted, 0 = initialisation)."""

    def llc_steps(self, config: dict[str, Any]) -> list[int]:
        """The checkpoints of the LLC sweep and the stage metrics (default: all saved)."""
        return self.checkpoint_steps(config)

    @abstractmethod
    def sgld_data(self, config: dict[str, Any], sgld: SGLDPreset) -> Batch:
        """The fixed SGLD data set of a run (a tuple of tensors sharing dimension 0)."""

    def train_description(self, config: dict[str, Any]) -> str:
        """Label of the training progress bar."""
        return f"{self.name} seed {config.get('seed')}"

    def recorder(self, run: Run) -> Recorder | None:
        """What :meth:`train` records during training besides checkpoints (default: nothing)."""
        return None

    def train(
        self,
        config: dict[str, Any],
        *,
        progress: bool = True,
        root: Path | None = None,
        device: str | torch.device = "cpu",
    ) -> Run:
        """The trained run of ``config``, trained (resumably) through the store only if needed.

        ``device`` is not part of the run's key; checkpoints are stored on the CPU.
        """
        config = self.validate(dict(config))
        run = open_run(config, root)
        return train_run(
            run,
            lambda: self.make_trainer(config, device),
            config["num_steps"],
            self.checkpoint_steps(config),
            log_every=config["log_every"],
            progress=progress,
            desc=self.train_description(config),
            recorder=self.recorder(run),
        )

    def load_model(self, run: Run, step: int, device: str | torch.device = "cpu") -> nn.Module:
        """The model of ``run`` with the weights of checkpoint ``step``, in eval mode."""
        model = self.make_model(run.config)
        run.load_into(model, step)
        return model.eval().to(device)

    # -- evaluations over checkpoints
    def llc_sweep(
        self,
        run: Run,
        sgld: SGLDPreset,
        *,
        steps: Sequence[int] | None = None,
        vectorize: bool = True,
        progress: bool = True,
    ) -> LLCSweep:
        """λ̂ at one in ``sgld.every`` of the run's LLC checkpoints (or at ``steps``), with the
        same seed at each (paper App. E.3.2), cached per checkpoint in the run store."""
        if steps is None:
            steps = select_steps(self.llc_steps(run.config), sgld.every)
        return sweep_llc(
            run,
            lambda step: self.load_model(run, step),
            self.loss_fn,
            self.sgld_data(run.config, sgld),
            sgld.sgld_config(),
            seed=sgld.seed,
            steps=steps,
            vectorize=vectorize,
            progress=progress,
        )


def evaluate_checkpoints(
    run: Run,
    name: str,
    eval_config: Mapping[str, Any],
    steps: Sequence[int],
    compute: Callable[[int], Any],
    *,
    progress: bool = False,
) -> list[Any]:
    """``compute(step)`` at every step, each cached in ``run`` under ``name`` + ``eval_config``.

    Parameters
    ----------
    run : devbook.store.Run
        The run whose checkpoints are evaluated.
    name : str
        Evaluator name (letters, digits, ``_.-``).
    eval_config : mapping
        Everything the result depends on besides the run and the step (JSON values).
    steps : sequence of int
        Checkpoint steps, evaluated in this order.
    compute : callable
        ``compute(step)`` returns a DataFrame, a dict of arrays or a JSON value.
    progress : bool
        Show a progress bar.

    Returns
    -------
    list
        One result per step, as read back from the store (an interrupted evaluation resumes).
    """
    from devbook.progress import progress as bar

    out = []
    for step in bar(list(steps), desc=name, disable=not progress):
        out.append(run.cached(name, {**eval_config, "step": int(step)}, lambda s=step: compute(s)))
    return out
