"""TrainConfig and the generic dataclass config loader."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from fgmm.errors import ConfigError
from fgmm.train import TrainConfig, config_from_dict, load_config, save_config


@dataclass
class DataSection:
    root: Path = Path("data")
    modalities: list[str] = field(default_factory=lambda: ["image"])
    size: tuple[int, int] = (224, 224)


@dataclass
class ExperimentConfig:
    name: str
    mode: Literal["head", "finetune"] = "head"
    data: DataSection = field(default_factory=DataSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    weights: dict[str, float] = field(default_factory=dict)


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_train_config_round_trip(tmp_path, suffix):
    cfg = TrainConfig(epochs=3, lr=0.5, amp="bf16", max_steps=7, grad_clip=1.0, out_dir=tmp_path / "run",
                      early_stopping_patience=2)
    path = cfg.to_file(tmp_path / f"train{suffix}")
    assert TrainConfig.from_file(path) == cfg
    assert not list(tmp_path.glob(".*.tmp"))


def test_int_accepted_for_float_and_defaults_kept():
    cfg = TrainConfig.from_dict({"lr": 1, "epochs": 2})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.batch_size == TrainConfig().batch_size


def test_unknown_key_names_file_and_key_and_suggests(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 3\nlearning_rat: 0.1\n")
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_file(path)
    message = str(err.value)
    assert str(path) in message and "'learning_rat'" in message
    path.write_text("epochs: 3\nbatch_sise: 8\n")
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        TrainConfig.from_file(path)


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("epochs", "ten", "must be int"),
    ("epochs", 2.5, "must be int"),
    ("progress", "yes", "must be bool"),
    ("lr", True, "must be float"),
    ("amp", "fp8", "must be one of"),
    ("max_steps", "x", "must be int | None"),
])
def test_wrong_type_names_file_and_key(tmp_path, key, value, expected):
    path = tmp_path / "train.json"
    path.write_text(json.dumps({key: value}))
    with pytest.raises(ConfigError) as err:
        load_config(TrainConfig, path)
    message = str(err.value)
    assert str(path) in message and f"'{key}'" in message and expected in message


def test_out_of_range_value_names_file_and_key(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("grad_accum_steps: 0\n")
    with pytest.raises(ConfigError, match=r"train\.yaml: key 'grad_accum_steps' must be >= 1"):
        TrainConfig.from_file(path)


def test_nested_dataclasses_round_trip_and_errors(tmp_path):
    cfg = ExperimentConfig(name="cub", mode="finetune", data=DataSection(modalities=["image", "text"]),
                           train=TrainConfig(epochs=4, lr=0.01), weights={"kg": 0.5})
    path = save_config(cfg, tmp_path / "exp.yaml")
    loaded = load_config(ExperimentConfig, path)
    assert loaded == cfg and isinstance(loaded.train, TrainConfig) and loaded.data.size == (224, 224)

    with pytest.raises(ConfigError) as err:
        config_from_dict(ExperimentConfig, {"name": "x", "train": {"epochz": 3}}, source=path)
    assert str(path) in str(err.value) and "'train.epochz'" in str(err.value)
    assert "did you mean 'epochs'" in str(err.value)
    with pytest.raises(ConfigError, match=r"key 'data\.size\[1\]' must be int"):
        config_from_dict(ExperimentConfig, {"name": "x", "data": {"size": [224, "big"]}})
    with pytest.raises(ConfigError, match=r"in 'train': key 'epochs' must be >= 1"):
        config_from_dict(ExperimentConfig, {"name": "x", "train": {"epochs": 0}})
    with pytest.raises(ConfigError, match="missing required key 'name'"):
        config_from_dict(ExperimentConfig, {})


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unsupported config format"):
        TrainConfig.from_file(tmp_path / "train.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        TrainConfig.from_file(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.json"
    broken.write_text("{epochs: ")
    with pytest.raises(ConfigError, match=r"broken\.json: not valid JSON"):
        TrainConfig.from_file(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        TrainConfig.from_file(listed)
