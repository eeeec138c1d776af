"""The functional proxy of the language model, recorded during training (paper App. C.1.2, B).

The paper's proxy of the language transformer at a checkpoint is the logit of the true next
token at N fixed tokens-in-context: one random position from each of N held-out sequences
(N = 10,000), at 2,000 linearly spaced checkpoints of its 50k steps. Storing that many
checkpoints is what the authors did; here the proxy is recorded *during* training instead:

- :class:`ProxySpec` / :data:`PROXY_PRESETS` / :func:`proxy_spec`: N, the spacing (every 25
  steps, the paper's 2,000 over 50k, and at least 100 records on short runs) and the seed of
  the pairs; the spec of a run follows from its config (the preset with the same scale), so
  it never enters the run's key;
- :func:`proxy_pairs`: the N (sequence, position) pairs, windows of the *validation* split at
  offsets and positions drawn from their own generator (nothing the training draws);
- :func:`proxy_logits`: the proxy of a model, the logit of the true next token at each pair;
- :class:`ProxyRecorder`: a :class:`devbook.training.Recorder` that evaluates the proxy at
  every ``every``-th step, in eval mode without gradients (the weights, the optimiser and all
  generators are untouched, so training is bitwise the same with or without it), and writes
  the rows recorded since the last checkpoint as one chunk file just before each checkpoint is
  saved; on resume, chunks after the resumed step are deleted and recorded again;
- :func:`recorded_proxy`: the matrix ``(steps, N)`` read back, or :class:`ProxyNotRecorded`;
- :func:`replay_proxy`: the recording of a run trained without it, by replaying its training
  (deterministic) and checking every stored checkpoint bitwise on the way.

Files: ``<run>/proxy/<spec name>/spec.json`` and ``rows-<first>-<last>.npz`` (``steps``
int64, ``logits`` float32 ``(k, N)``). Used by :meth:`devbook.language.setting.LanguageSetting.recorder`
and :mod:`devbook.language.forms`.
"""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from devbook.files import atomic_write_bytes, read_json, write_json
from devbook.language.config import RUN_PRESETS
from devbook.language.data import language_data
from devbook.progress import progress as progress_bar
from devbook.rng import generator
from devbook.store import CheckpointError, Run

if TYPE_CHECKING:
    from devbook.setting import Setting

#: Recording sizes per preset: ``n_sequences`` N (the paper's 10,000), ``every`` (steps).
#: At ``cpu`` (d_model 128, 32-token windows) N = 512 costs about 0.2 s of one shared core per
#: record (N = 1,000: 0.2–0.7 s), so its 801 records cost about 3 min over a 20k-step run.
PROXY_PRESETS: dict[str, dict[str, int]] = {
    "paper": {"n_sequences": 10_000, "every": 25},
    "cpu": {"n_sequences": 512, "every": 25},
    "smoke": {"n_sequences": 64, "every": 1},
}
#: The config fields that tell the presets apart (their scale); seeds and layers do not.
SCALE_FIELDS = ("num_steps", "n_ctx", "batch_size", "d_model")
_CHUNK = re.compile(r"rows-(\d{8})-(\d{8})\.npz")


class ProxyNotRecorded(RuntimeError):
    """The run holds no complete recording of the proxy with the asked-for spec."""


@dataclass(frozen=True)
class ProxySpec:
    """What is recorded: ``n_sequences`` pairs, at every ``every``-th step, pairs from ``seed``."""

    n_sequences: int
    every: int
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_sequences < 1 or self.every < 1 or self.seed < 0:
            raise ValueError(
                f"need n_sequences >= 1, every >= 1 and seed >= 0; got n_sequences="
                f"{self.n_sequences}, every={self.every}, seed={self.seed}"
            )

    @property
    def name(self) -> str:
        """The folder name of this spec's recording."""
        return f"n{self.n_sequences}-every{self.every}-seed{self.seed}"

    def steps(self, total_steps: int) -> list[int]:
        """The recorded steps of a run of ``total_steps``: 0, every, 2·every, …, and the last."""
        return sorted(set(range(0, total_steps + 1, self.every)) | {total_steps})


def proxy_spec(config: dict[str, Any], **overrides: int) -> ProxySpec:
    """The spec of a run config: that of the preset with the same :data:`SCALE_FIELDS`.

    A config of no preset's scale records every ``max(1, min(25, num_steps // 100))`` steps
    with the ``cpu`` preset's N. ``overrides`` replace fields (``n_sequences``, ``every``,
    ``seed``).
    """
    for name, row in RUN_PRESETS.items():
        if all(row[f] == config[f] for f in SCALE_FIELDS):
            base = dict(PROXY_PRESETS[name])
            break
    else:
        every = max(1, min(25, int(config["num_steps"]) // 100))
        base = {"n_sequences": PROXY_PRESETS["cpu"]["n_sequences"], "every": every}
    unknown = sorted(set(overrides) - {"n_sequences", "every", "seed"})
    if unknown:
        raise ValueError(f"unknown proxy settings {unknown}; valid: every, n_sequences, seed")
    return ProxySpec(**{**base, **overrides})


def proxy_pairs(config: dict[str, Any], spec: ProxySpec) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed pairs: validation windows ``(N, n_ctx)`` and positions ``(N,)``.

    Position ``p`` of window ``i`` means the logit at ``p`` of the true next token
    ``windows[i, p + 1]``; ``p`` is uniform in ``0 … n_ctx − 2``. Offsets and positions come
    from :func:`devbook.rng.generator` ``(spec.seed, "lm-proxy")``.
    """
    g = generator(spec.seed, "lm-proxy")
    n_ctx = int(config["n_ctx"])
    windows = language_data(config).sample("validation", spec.n_sequences, n_ctx, g)
    positions = torch.randint(0, n_ctx - 1, (spec.n_sequences,), generator=g)
    return windows, positions


def proxy_logits(
    model: nn.Module, windows: torch.Tensor, positions: torch.Tensor, chunk: int = 256
) -> np.ndarray:
    """The logit of the true next token at each pair, ``(N,)`` float32.

    Pairs are sorted by position and run in chunks, each window cut after the chunk's last
    position (the model is causal), and only the logits of the true tokens are unembedded.
    The model's mode is restored; no gradient is taken and no random number drawn.
    """
    device = next(model.parameters()).device
    order = torch.argsort(positions, stable=True)
    out = torch.empty(len(positions), dtype=torch.float32)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for i in range(0, len(order), chunk):
            idx = order[i : i + chunk]
            pos = positions[idx]
            tokens = windows[idx, : int(pos.max()) + 2].to(device)
            rows = torch.arange(len(idx), device=device)
            resid = model(tokens[:, :-1], stop_at_layer=model.cfg.n_layers)
            x = model.ln_final(resid[rows, pos.to(device)][:, None])[:, 0]
            target = tokens[rows, pos.to(device) + 1]
            logit = (x * model.W_U[:, target].T).sum(-1) + model.b_U[target]
            out[idx] = logit.float().cpu()
    model.train(was_training)
    return out.numpy()


def _pairs_hash(windows: torch.Tensor, positions: torch.Tensor) -> str:
    h = hashlib.sha256(windows.numpy().astype(np.int64).tobytes())
    h.update(positions.numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def _chunks(folder: Path) -> list[tuple[int, int, Path]]:
    out = []
    for p in folder.glob("rows-*.npz") if folder.exists() else []:
        m = _CHUNK.fullmatch(p.name)
        if m:
            out.append((int(m[1]), int(m[2]), p))
    return sorted(out)


class ProxyRecorder:
    """Records :func:`proxy_logits` into ``run`` during :func:`devbook.training.train_run`.

    See the module docstring; the pairs are drawn when the first row is recorded.
    """

    def __init__(self, run: Run, spec: ProxySpec) -> None:
        self.run, self.spec = run, spec
        self.folder = run.path / "proxy" / spec.name
        self.total = int(run.config["num_steps"])
        self._pairs: tuple[torch.Tensor, torch.Tensor] | None = None
        self._steps: list[int] = []
        self._rows: list[np.ndarray] = []

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The recorded pairs (drawn once)."""
        if self._pairs is None:
            self._pairs = proxy_pairs(self.run.config, self.spec)
        return self._pairs

    def due(self, step: int) -> bool:
        """Whether ``step`` is recorded."""
        return step % self.spec.every == 0 or step == self.total

    def observe(self, model: nn.Module, step: int) -> None:
        if self.due(step):
            self._steps.append(step)
            self._rows.append(proxy_logits(model, *self.pairs()))

    def flush(self, step: int) -> None:
        if not self._rows:
            return
        buf = io.BytesIO()
        np.savez(buf, steps=np.asarray(self._steps, np.int64), logits=np.stack(self._rows))
        atomic_write_bytes(
            self.folder / f"rows-{self._steps[0]:08d}-{self._steps[-1]:08d}.npz", buf.getvalue()
        )
        self._steps, self._rows = [], []

    def resume(self, step: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for tmp in self.folder.glob(".*.tmp-*"):
            tmp.unlink()
        for _first, last, path in _chunks(self.folder):
            if last > step or step == 0:
                path.unlink()
        self._steps, self._rows = [], []
        write_json(
            self.folder / "spec.json", {**asdict(self.spec), "pairs_sha256": _pairs_hash(*self.pairs())}
        )


def recorded_proxy(run: Run, spec: ProxySpec) -> tuple[np.ndarray, np.ndarray]:
    """The recorded proxy of ``run``: steps ``(T,)`` and logits ``(T, N)`` (float32).

    Raises :class:`ProxyNotRecorded` when the run is not complete, was trained without this
    recording, or its rows have gaps, saying how to record it.
    """
    folder = run.path / "proxy" / spec.name
    expected = spec.steps(int(run.config["num_steps"]))
    how = (
        f"the proxy is recorded while the run trains (spec {spec.name}); record it with "
        "devbook.language.proxy.replay_proxy(SETTING, run), which replays the training (as long "
        "as training took) and checks every stored checkpoint bitwise, or remove the run "
        f"directory {run.path.name} and train it again with SETTING.train(config)"
    )
    if not run.complete:
        raise ProxyNotRecorded(f"run {run.path.name} is not fully trained; {how}")
    parts = [np.load(p, allow_pickle=False) for _, _, p in _chunks(folder)]
    steps = np.concatenate([p["steps"] for p in parts]) if parts else np.zeros(0, np.int64)
    if steps.tolist() != expected:
        missing = sorted(set(expected) - set(steps.tolist()))
        raise ProxyNotRecorded(
            f"run {run.path.name} holds {len(steps)} of the {len(expected)} proxy rows of spec "
            f"{spec.name} (missing e.g. steps {missing[:5]}): it was trained without recording; {how}"
        )
    info = read_json(folder / "spec.json")
    if info.get("pairs_sha256") != _pairs_hash(*proxy_pairs(run.config, spec)):
        raise ProxyNotRecorded(f"the recorded pairs of {folder} differ from today's data; {how}")
    return steps, np.concatenate([p["logits"] for p in parts]).astype(np.float32)


def replay_proxy(setting: Setting, run: Run, spec: ProxySpec | None = None, progress: bool = True) -> None:
    """Record the proxy of a complete ``run`` trained without it, by replaying its training.

    A fresh trainer (:meth:`devbook.setting.Setting.make_trainer`, deterministic from the
    config) retraces the run step by step with a :class:`ProxyRecorder`; at every stored
    checkpoint the replayed weights must equal the stored ones bitwise (else
    :class:`devbook.store.CheckpointError`, and nothing is recorded past it). The run's
    checkpoints are only read. ``spec`` defaults to :func:`proxy_spec` of the run's config.
    """
    if not run.complete:
        raise ProxyNotRecorded(f"run {run.path.name} is not fully trained; train it first")
    spec = spec or proxy_spec(run.config)
    recorder, trainer = ProxyRecorder(run, spec), setting.make_trainer(run.config)
    saved, total = set(run.checkpoint_steps()), int(run.config["num_steps"])

    def check(step: int) -> None:
        stored, mine = run.load_weights(step), trainer.model.state_dict()
        if any(not torch.equal(stored[k], mine[k].detach().cpu()) for k in stored):
            raise CheckpointError(f"{run.path.name}: replayed weights differ from checkpoint {step}")
        recorder.flush(step)

    with run.lock():
        recorder.resume(0)
        recorder.observe(trainer.model, 0)
        if 0 in saved:
            check(0)
        for step in progress_bar(range(total), desc=f"replay {run.path.name}", disable=not progress):
            trainer.train_step(step)
            recorder.observe(trainer.model, step + 1)
            if step + 1 in saved:
                check(step + 1)
