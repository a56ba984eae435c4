"""Atomic checkpoints, weights_only loading, RNG state round trips and corrupt-file errors."""

from __future__ import annotations

import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from _ddp_worker import toy_data, toy_model

from fgmm.errors import DataError
from fgmm.train import (
    TrainConfig,
    Trainer,
    atomic_copy,
    atomic_write,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from fgmm.train.checkpoint import REQUIRED_KEYS


def fitted_run(tmp_path, **overrides) -> TrainConfig:
    cfg = TrainConfig(**{"epochs": 2, "batch_size": 8, "progress": False, "out_dir": tmp_path / "run",
                         **overrides})
    Trainer(toy_model(), cfg, toy_data(24), toy_data(9, seed=1)).fit()
    return cfg


def draws() -> tuple:
    return random.random(), float(np.random.rand()), float(np.random.randn()), torch.rand(3).tolist()


def test_rng_state_round_trip_is_weights_only(tmp_path):
    seed_everything(11)
    np.random.randn()  # leaves a cached gaussian in numpy's state
    state = get_rng_state()
    torch.save(state, tmp_path / "rng.pt")
    first = draws()
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert draws() == first


def test_trainer_checkpoint_contents_load_weights_only(tmp_path):
    cfg = fitted_run(tmp_path)
    raw = torch.load(cfg.out_dir / "last.ckpt", weights_only=True)
    assert set(REQUIRED_KEYS) <= raw.keys()
    assert raw["epoch"] == 2 and raw["batch_in_epoch"] == 0 and raw["global_step"] == 6
    assert raw["config"]["batch_size"] == 8 and raw["fgmm_version"]
    assert len(raw["history"]) == 2 and raw["early_stopping"]["best"] is not None
    assert {"python", "numpy", "torch"} <= raw["rng"].keys()
    assert (cfg.out_dir / "best.ckpt").is_file()
    assert not list(cfg.out_dir.glob(".*.tmp"))


def test_leftover_temp_file_is_ignored(tmp_path):
    cfg = fitted_run(tmp_path, max_steps=3)
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # the pid of a writer that is gone
    leftover = cfg.out_dir / f".last.ckpt.{finished.pid}.deadbeef.tmp"
    leftover.write_bytes(b"half a checkpoint")
    model = toy_model()
    result = Trainer(model, TrainConfig(epochs=2, batch_size=8, progress=False, out_dir=cfg.out_dir),
                     toy_data(24), toy_data(9, seed=1)).fit()
    assert result.steps == 6 and result.stop_reason == "completed"
    assert not leftover.exists()  # never read; removed by the next save (issue 8, item 10)
    assert load_checkpoint(cfg.out_dir / "last.ckpt")["global_step"] == 6


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_error_names_the_file(tmp_path, damage):
    cfg = fitted_run(tmp_path, max_steps=3)
    path = cfg.out_dir / "last.ckpt"
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a zip" * 50, "empty": b""}[damage])
    with pytest.raises(DataError) as err:
        Trainer(toy_model(), TrainConfig(epochs=2, batch_size=8, progress=False, out_dir=cfg.out_dir),
                toy_data(24)).fit()
    assert str(path) in str(err.value) and "truncated or corrupt" in str(err.value)
    assert err.value.path == path


def test_foreign_and_incomplete_files_are_rejected(tmp_path):
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(DataError, match=r"tensor\.pt: not an fgmm training checkpoint"):
        load_checkpoint(tmp_path / "tensor.pt")
    save_checkpoint({"model": {}}, tmp_path / "partial.ckpt")
    with pytest.raises(DataError, match=r"partial\.ckpt: checkpoint lacks entries: optimizer"):
        load_checkpoint(tmp_path / "partial.ckpt")
    with pytest.raises(DataError, match=r"missing\.ckpt: checkpoint file does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    cfg = fitted_run(tmp_path, max_steps=2)
    other = torch.nn.Sequential(torch.nn.Linear(3, 3))
    with pytest.raises(DataError, match=r"last\.ckpt: checkpoint does not fit this model"):
        Trainer(_Wrapped(other), TrainConfig(epochs=2, batch_size=8, progress=False, out_dir=cfg.out_dir),
                toy_data(24)).fit()


class _Wrapped(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, batch):
        return {"logits": self.net(batch["features"][:, :3])}


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "last.ckpt"
    atomic_write(target, lambda handle: handle.write(b"old"))

    def explode(handle):
        handle.write(b"new but incomplete")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, explode)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_atomic_copy_is_a_snapshot(tmp_path):
    last, best = tmp_path / "last.ckpt", tmp_path / "best.ckpt"
    atomic_write(last, lambda handle: handle.write(b"epoch 1"))
    atomic_copy(last, best)
    atomic_write(last, lambda handle: handle.write(b"epoch 2"))
    assert best.read_bytes() == b"epoch 1" and last.read_bytes() == b"epoch 2"
    atomic_copy(last, best)
    assert best.read_bytes() == b"epoch 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]
