"""The LLC sweep over a run's checkpoints (devbook.sweep): reseeding, caching, validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from devbook.llc import SGLDConfig
from devbook.store import open_run
from devbook.sweep import data_fingerprint, select_steps, sweep_llc

CFG = SGLDConfig(epsilon=1e-3, gamma=10.0, nbeta=20.0, num_chains=2, num_draws=30, batch_size=32)


def mse(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
    x, y = batch
    return ((model(x).squeeze(-1) - y) ** 2).mean()


@pytest.fixture()
def run_and_data(tmp_path: Path):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(256, 3, generator=gen)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(256, generator=gen)
    run = open_run({"setting": "test-sweep", "seed": 0}, root=tmp_path)
    model = nn.Linear(3, 1)
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    trained = {"weight": torch.tensor([[1.0, -2.0, 0.5]]), "bias": torch.zeros(1)}
    # steps 0 and 5 share weights (so must get identical estimates); step 10 is the optimum
    run.checkpoints.save(0, weights)
    run.checkpoints.save(5, weights)
    run.checkpoints.save(10, trained)
    return run, (x, y)


def build(run, calls: list[int]):
    def f(step: int) -> nn.Module:
        calls.append(step)
        return run.load_into(nn.Linear(3, 1), step)

    return f


def test_same_seed_at_every_checkpoint_and_cache(run_and_data) -> None:
    run, data = run_and_data
    calls: list[int] = []
    sweep = sweep_llc(run, build(run, calls), mse, data, CFG, seed=3, progress=False)
    assert list(sweep.steps) == [0, 5, 10] and calls == [0, 5, 10]
    t = sweep.table.set_index("step")
    # identical weights + the same seed = the same batches and noise = the same estimate
    assert t.loc[0, "llc"] == t.loc[5, "llc"]
    np.testing.assert_array_equal(sweep.traces[0], sweep.traces[5])
    assert sweep.traces[10].shape == (2, 30)
    assert t.loc[10, "init_loss"] < t.loc[0, "init_loss"]
    assert (t[["ok", "diverged", "not_converged", "escaped"]].sum(axis=1) == 2).all()
    # a second sweep reads the cache: no model is built, the numbers are identical
    again = sweep_llc(run, build(run, calls), mse, data, CFG, seed=3, progress=False)
    assert calls == [0, 5, 10]
    np.testing.assert_array_equal(again.llc, sweep.llc)
    # another seed is another cache entry with other numbers
    other = sweep_llc(run, build(run, calls), mse, data, CFG, seed=4, steps=[10], progress=False)
    assert calls[-1] == 10 and other.llc[0] != t.loc[10, "llc"]


def test_bad_steps_and_config_are_named(run_and_data) -> None:
    run, data = run_and_data
    with pytest.raises(ValueError, match=r"steps \[7\] have no checkpoint"):
        sweep_llc(run, build(run, []), mse, data, CFG, seed=0, steps=[0, 7], progress=False)
    with pytest.raises(ValueError, match="SGLDConfig"):
        sweep_llc(run, build(run, []), mse, data, {"epsilon": 1e-3}, seed=0, progress=False)


def test_select_steps_and_fingerprint() -> None:
    assert select_steps([0, 1, 2, 3, 4, 5, 6], 3) == [0, 3, 6]
    assert select_steps([5, 0, 9, 2], 2) == [0, 5, 9]
    with pytest.raises(ValueError, match="every"):
        select_steps([0, 1], 0)
    a = (torch.zeros(4, 2), torch.ones(4))
    assert data_fingerprint(a) == data_fingerprint((torch.zeros(4, 2), torch.ones(4)))
    assert data_fingerprint(a) != data_fingerprint((torch.zeros(4, 2), torch.zeros(4)))
