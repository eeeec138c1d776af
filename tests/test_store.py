"""devbook.store: config hashing, round trips, bitwise kill-and-resume, corrupted checkpoints."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from devbook.store import CheckpointError, StoreError, config_key, flatten_state, open_run, unflatten_state
from devbook.training import StandardTrainer, train_run

CONFIG = {"setting": "toy", "seed": 3, "lr": 0.01, "width": 8}
STEPS, CKPTS = 30, [0, 1, 5, 10, 20]


class Boom(RuntimeError):
    pass


def make_trainer(seed: int = 3, crash_at: int | None = None, kill_at: int | None = None):
    """A tiny MLP trained with Adam + OneCycleLR on batches drawn from a generator."""

    def factory() -> StandardTrainer:
        g = torch.Generator().manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        with torch.no_grad():
            for p in model.parameters():
                p.uniform_(-0.5, 0.5, generator=g)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=STEPS)

        def loss(tr: StandardTrainer, step: int) -> torch.Tensor:
            if step == crash_at:
                raise Boom(step)
            if step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            x = torch.randn(16, 3, generator=tr.generators["data"])
            noise = 0.1 * torch.randn(16, 1)  # global RNG: its state is saved too
            y = x.sum(1, keepdim=True) ** 2 + noise
            return ((tr.model(x) - y) ** 2).mean()

        return StandardTrainer(model, opt, loss, sched, {"data": torch.Generator().manual_seed(seed + 1)})

    return factory


def train(root: Path, **kw):
    torch.manual_seed(0)
    run = open_run(CONFIG, root)
    return train_run(run, make_trainer(**kw), STEPS, CKPTS, log_every=4, progress=False)


def test_config_key_is_canonical_and_sensitive():
    a = {"setting": "toy", "x": 1, "y": [1, 2]}
    assert config_key(a) == config_key({"y": [1, 2], "x": 1, "setting": "toy"})
    assert config_key(a) != config_key({**a, "x": 2})
    assert config_key(a) != config_key({**a, "x": 1.0})  # int and float differ
    assert len(config_key(a)) == 16
    with pytest.raises(ValueError, match="finite"):
        config_key({"setting": "toy", "x": float("nan")})
    with pytest.raises(TypeError, match="valid"):
        config_key({"setting": "toy", "x": object()})
    with pytest.raises(ValueError, match="setting"):
        open_run({"x": 1})


def test_open_run_paths_and_config_conflict(tmp_path):
    run = open_run(CONFIG, tmp_path)
    assert run.path == tmp_path / f"toy-{run.key}" and run.key == config_key(CONFIG)
    assert open_run(dict(CONFIG), tmp_path).path == run.path
    (run.path / "config.json").write_text('{"setting": "toy", "seed": 99}')
    with pytest.raises(StoreError, match="config.json"):
        open_run(CONFIG, tmp_path)


def test_flatten_state_round_trip():
    opt_state = {
        "state": {0: {"step": torch.tensor(3.0), "m": torch.randn(2, 2)}},
        "param_groups": [{"lr": 0.1 / 3, "betas": (0.9, 0.999), "params": [0]}],
        "gen": torch.Generator().manual_seed(1).get_state(),
        "none": None,
    }
    skeleton, tensors = flatten_state(opt_state)
    back = unflatten_state(skeleton, tensors)
    assert back["param_groups"][0]["betas"] == (0.9, 0.999)
    assert back["param_groups"][0]["lr"] == 0.1 / 3
    assert torch.equal(back["state"][0]["m"], opt_state["state"][0]["m"])
    assert list(back["state"]) == [0] and back["none"] is None
    with pytest.raises(TypeError, match="pickle"):
        flatten_state({"f": lambda: 0})


def test_train_round_trip_metrics_and_completion(tmp_path):
    run = train(tmp_path)
    assert run.complete
    assert run.checkpoint_steps() == [0, 1, 5, 10, 20, 30]
    w = run.load_weights(30)
    assert set(w) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    df = run.metrics()
    assert list(df["step"]) == [4, 8, 12, 16, 20, 24, 28, 30]
    assert df["loss"].iloc[-1] < df["loss"].iloc[0]
    # only the last training state is kept
    assert sorted(p.name for p in run.path.glob("state-*")) == [
        "state-00000030.json",
        "state-00000030.safetensors",
    ]
    # a second call is a no-op; another plan for the same run is refused
    assert train(tmp_path).load_weights(30)["0.weight"].equal(w["0.weight"])
    with pytest.raises(StoreError, match="another plan"):
        train_run(run, make_trainer(), STEPS + 1, CKPTS, progress=False)


def test_exception_mid_run_resumes_bitwise(tmp_path):
    ref = train(tmp_path / "ref")
    with pytest.raises(Boom):
        train(tmp_path / "cut", crash_at=13)
    cut = open_run(CONFIG, tmp_path / "cut")
    assert not cut.complete and cut.checkpoint_steps()[-1] == 10
    resumed = train(tmp_path / "cut")
    for step in ref.checkpoint_steps():
        a, b = ref.load_weights(step), resumed.load_weights(step)
        assert all(torch.equal(a[k], b[k]) for k in a), step
    pd.testing.assert_frame_equal(ref.metrics(), resumed.metrics(), check_exact=True)


def test_sigkill_mid_run_resumes_bitwise(tmp_path):
    ref = train(tmp_path / "ref")
    script = textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
        from pathlib import Path
        from test_store import train
        train(Path({str(tmp_path / "killed")!r}), kill_at=17)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    killed = open_run(CONFIG, tmp_path / "killed")
    assert not killed.complete and killed.checkpoint_steps()[-1] == 10
    resumed = train(tmp_path / "killed")
    a, b = ref.load_weights(STEPS), resumed.load_weights(STEPS)
    assert all(torch.equal(a[k], b[k]) for k in a)
    pd.testing.assert_frame_equal(ref.metrics(), resumed.metrics(), check_exact=True)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "foreign", "unrecorded"])
def test_damaged_checkpoints_raise_naming_the_file(tmp_path, damage):
    run = train(tmp_path / "a")
    path = run.checkpoints.file(10)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:-7])
    elif damage == "garbage":
        path.write_bytes(os.urandom(path.stat().st_size))
    elif damage == "foreign":
        other = open_run({**CONFIG, "seed": 4}, tmp_path / "b")
        train_run(other, make_trainer(seed=4), STEPS, CKPTS, progress=False)
        shutil.copy(other.checkpoints.file(10), path)
    else:  # a checkpoint file the manifest never recorded
        path = run.checkpoints.file(11)
        shutil.copy(run.checkpoints.file(10), path)
    step = 11 if damage == "unrecorded" else 10
    with pytest.raises(CheckpointError, match=path.name):
        run.load_weights(step)


def test_wrong_model_shape_and_damaged_state(tmp_path):
    run = train(tmp_path)
    wrong = torch.nn.Sequential(torch.nn.Linear(3, 9), torch.nn.ReLU(), torch.nn.Linear(9, 1))
    with pytest.raises(CheckpointError, match="ckpt-00000010"):
        run.load_into(wrong, 10)
    # a damaged training state stops a resume instead of silently restarting
    with pytest.raises(Boom):
        train(tmp_path / "cut", crash_at=13)
    cut = open_run(CONFIG, tmp_path / "cut")
    state = cut.path / "state-00000010.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="state-00000010"):
        train(tmp_path / "cut")


def test_cached_results_round_trip(tmp_path):
    run = open_run(CONFIG, tmp_path)
    calls = []

    def table():
        calls.append(1)
        return pd.DataFrame({"step": [0, 10], "llc": [0.5, 1.0 / 3], "name": ["a", "b"]})

    first = run.cached("llc", {"eps": 1e-3}, table)
    again = run.cached("llc", {"eps": 1e-3}, table)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert first["llc"].iloc[1] == 1.0 / 3 and list(first["name"]) == ["a", "b"]
    run.cached("llc", {"eps": 2e-3}, table)
    assert len(calls) == 2
    arrays = run.cached("arr", {}, lambda: {"a": np.arange(3.0), "t": torch.ones(2)})
    assert np.array_equal(arrays["a"], np.arange(3.0)) and arrays["t"].dtype == np.float32
    assert run.cached("js", {}, lambda: {"x": [1, 2]}) == {"x": [1, 2]}
    with pytest.raises(ValueError, match="evaluator name"):
        run.cached("bad/name", {}, dict)
