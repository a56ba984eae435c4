"""`fgmm train` / `fgmm evaluate` and the Trainer never lose a run or a user's file, and are reproducible.

Issue 8 items 2-6 and 9 (config values); the CLI runs share one feature cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _ddp_worker import toy_data, toy_model
from typer.testing import CliRunner

from fgmm.cli.main import app
from fgmm.errors import ConfigError, OwnershipError
from fgmm.experiment import ExperimentConfig, train_experiment
from fgmm.ownership import MARKER, read_marker
from fgmm.train import TrainConfig, Trainer, save_checkpoint
from fgmm.train.run_folder import PREVIOUS, RunPlan, check_same_setup

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tiny_procedural, tmp_path_factory):
    """``(config file, dataset root)``: timm's tiny test network (seeded, no weights to load) at 32 px,
    2 epochs, one feature cache for the module."""
    folder = tmp_path_factory.mktemp("train-safety")
    config = folder / "exp.yaml"
    config.write_text("model:\n  image_size: 32\n  vision: test_efficientnet\n  pretrained: false\n"
                      "  config: {dim: 16, modalities: {image: {projection: mlp}}, class_embeddings: {source: free}}\n"
                      f"cache_dir: {folder / 'cache'}\n"
                      "train:\n  batch_size: 8\n  epochs: 2\n  progress: false\n")
    return config, tiny_procedural.root


def train(setup, out: Path, *options: str):
    config, root = setup
    return runner.invoke(app, ["train", "-c", str(config), "--data", str(root), "--out", str(out), *options])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def refused(result, *phrases: str):
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    text = " ".join(result.output.split())
    for phrase in phrases:
        assert phrase in text, text
    return text


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# ---------------------------------------------------------------- item 4: reproducible
def test_two_identical_runs_give_identical_weights(setup, tmp_path):
    ok(train(setup, tmp_path / "a"))
    ok(train(setup, tmp_path / "b"))
    a = torch.load(tmp_path / "a" / "last.ckpt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.ckpt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert read_marker(tmp_path / "a")["fgmm"] == "run"


# ---------------------------------------------------------------- items 2 and 3: existing runs
def test_existing_run_needs_resume_or_fresh_and_a_finished_run_is_never_resumed(setup, tmp_path):
    run = tmp_path / "run"
    ok(train(setup, run))
    before = files(run)
    refused(train(setup, run), "finished", "nothing to resume", "--fresh")
    refused(train(setup, run, "--resume"), "finished", "nothing to resume")
    refused(train(setup, run, "--resume", "--fresh"), "exclude each other")
    refused(train(setup, run, "--resume", "--epochs", "3", "--lr", "0.5"), "lr=0.001", "0.5")
    config, root = setup
    other = tmp_path / "other.yaml"
    other.write_text(config.read_text() + "data:\n  seed: 5\n")  # another validation split: other data
    result = runner.invoke(app, ["train", "-c", str(other), "--data", str(root), "--out", str(run), "--resume",
                                 "--epochs", "3"])
    refused(result, "other data", "--fresh")
    assert files(run) == before  # nothing was rewritten by the refused attempts
    ok(train(setup, run, "--resume", "--epochs", "3"))
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e.get("event") == "epoch"] == [0, 1, 2]
    ok(runner.invoke(app, ["evaluate", str(run)]))
    assert (run / "model" / "config.json").is_file() and (run / "eval.json").is_file()


def test_unfinished_run_needs_resume(setup, tmp_path):
    config, root = setup
    run = tmp_path / "run"
    capped = tmp_path / "capped.yaml"
    capped.write_text(config.read_text().replace("  epochs: 2\n", "  epochs: 2\n  max_steps: 2\n"))
    ok(runner.invoke(app, ["train", "-c", str(capped), "--data", str(root), "--out", str(run)]))
    refused(train(setup, run), "unfinished fgmm run", "--resume", "--fresh")
    assert "trained 6 steps (completed)" in ok(train(setup, run, "--resume")).output


def test_fresh_validates_everything_before_deleting_and_rolls_back(setup, tmp_path, monkeypatch):
    run = tmp_path / "run"
    ok(train(setup, run))
    before = files(run)
    config, _ = setup
    result = runner.invoke(app, ["train", "-c", str(config), "--data", str(tmp_path / "typo_dir"), "--out",
                                 str(run), "--fresh"])
    refused(result, "typo_dir: dataset folder does not exist")
    assert files(run) == before

    import fgmm.experiment

    def broken(*args, **kwargs):
        raise ConfigError("simulated failure while setting the new run up")

    monkeypatch.setattr(fgmm.experiment, "write_json_atomic", broken)
    refused(train(setup, run, "--fresh", "--epochs", "1"), "simulated failure")
    assert files(run) == before and not (run / PREVIOUS).exists()
    monkeypatch.undo()
    ok(train(setup, run, "--fresh", "--epochs", "1"))
    assert files(run)["last.ckpt"] != before["last.ckpt"] and not (run / PREVIOUS).exists()


# ---------------------------------------------------------------- item 6: user folders
def test_user_folder_is_refused_and_force_never_overwrites(setup, tmp_path):
    project = tmp_path / "myproj"
    project.mkdir()
    (project / "config.json").write_text("my own config")
    (project / "metrics.jsonl").write_text("my own metrics")
    refused(train(setup, project), "not empty and was not created by fgmm", "--force")
    refused(train(setup, project, "--force"), "config.json", "even with --force it is not overwritten")
    assert (project / "config.json").read_text() == "my own config" and not (project / MARKER).exists()

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "notes.txt").write_text("keep me")
    ok(train(setup, notes, "--force"))
    assert read_marker(notes)["foreign"] == ["notes.txt"]
    ok(train(setup, notes, "--fresh"))
    assert (notes / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------- items 5 and 9: one validation path
@pytest.mark.parametrize(("options", "yaml", "message"), [
    (["--epochs", "0"], "", "key 'epochs' must be >= 1, got 0"),
    (["--epochs", "-5"], "", "key 'epochs' must be >= 1, got -5"),
    (["--lr", "-1"], "", "key 'lr' must be > 0"),
    (["--lr", "nan"], "", "key 'lr' must be a finite number"),
    (["--lr", "inf"], "", "key 'lr' must be a finite number"),
    ([], "data:\n  val_fraction: 1.5\n", "key 'val_fraction' must be in [0, 1), got 1.5"),
    ([], "data:\n  holdout: 0\n", "key 'holdout' must be in (0, 1)"),
    ([], "train:\n  lr: .nan\n", "key 'lr' must be a finite number"),
    ([], "train:\n  batch_size: 0\n", "key 'batch_size' must be >= 1"),
    ([], "model:\n  image_size: 0\n", "key 'image_size' must be at least 16"),
    ([], "model:\n  preset: imag\n", "unknown model 'imag'; choose one of:"),
    ([], "model:\n  config: {fusoin: mean}\n", "did you mean 'fusion'"),
    ([], "- a list\n", "top level must be a mapping"),
])
def test_config_files_and_options_are_validated_together(tmp_path, options, yaml, message):
    config = tmp_path / "exp.yaml"
    config.write_text(yaml)
    result = runner.invoke(app, ["train", "-c", str(config), "--data", str(tmp_path), "--out",
                                 str(tmp_path / "run"), *options])
    text = refused(result, message, "exp.yaml")
    if options:
        assert f"{options[0]} {options[1]}" in text
    assert not (tmp_path / "run").exists()


def test_overrides_are_applied_before_validation(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("train:\n  epochs: 0\n")  # invalid in the file, fixed on the command line
    cfg = ExperimentConfig.from_sources(config, {"train.epochs": 4, "train.lr": None, "data.root": tmp_path})
    assert cfg.train.epochs == 4 and cfg.data.root == tmp_path


# ---------------------------------------------------------------- the Trainer itself (the library path)
def trainer_config(out_dir: Path, **overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 0.05, "progress": False, "out_dir": out_dir,
                          **overrides})


def test_trainer_refuses_to_resume_a_finished_run_and_leaves_the_model_alone(tmp_path):
    Trainer(toy_model(), trainer_config(tmp_path / "run"), toy_data(32)).fit()
    fresh = toy_model(seed=1)
    weights = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ConfigError, match="has finished.*nothing to resume"):
        Trainer(fresh, trainer_config(tmp_path / "run"), toy_data(32)).fit()
    assert all(torch.equal(weights[k], v) for k, v in fresh.state_dict().items())
    more = Trainer(fresh, trainer_config(tmp_path / "run", epochs=3), toy_data(32)).fit()
    assert len(more.history) == 3


def test_trainer_never_writes_into_a_user_folder(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text("mine")
    with pytest.raises(OwnershipError, match="not empty and was not created by fgmm"):
        Trainer(toy_model(), trainer_config(folder), toy_data(32)).fit()
    assert (folder / "config.json").read_text() == "mine"


def test_run_folders_from_before_markers_are_adopted(tmp_path):
    legacy = tmp_path / "legacy"
    trainer = Trainer(toy_model(), trainer_config(legacy), toy_data(32))
    save_checkpoint(trainer._state(), legacy / "last.ckpt")  # what an fgmm without markers left
    assert not (legacy / MARKER).exists()
    Trainer(toy_model(), trainer_config(legacy), toy_data(32)).fit(resume=False)
    assert read_marker(legacy)["fgmm"] == "run"


def test_resume_with_other_classes_is_refused(tmp_path):
    plan = RunPlan(tmp_path, "resume")
    with pytest.raises(ConfigError, match="classes=200 items .* now classes=3 items|classes=.*now"):
        check_same_setup(plan, {"classes": [f"c{i}" for i in range(200)]}, {"classes": ["a", "b", "c"]})
    check_same_setup(plan, {"classes": ["a"]}, {"classes": ["a"], "data_fingerprint": "new key"})
    with pytest.raises(ConfigError):
        train_experiment(ExperimentConfig.from_sources(None, {"train.out_dir": tmp_path}), resume=True, fresh=True)
