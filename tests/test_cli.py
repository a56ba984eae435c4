"""The `fgmm` command line: help everywhere, data commands, a tiny demo, train → evaluate → resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fgmm.cli.main import app

runner = CliRunner()


def _commands(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix + (c.name or c.callback.__name__,) for c in group.registered_commands]
    for sub in group.registered_groups:
        found += [prefix + (sub.name,)] + _commands(sub.typer_instance, prefix + (sub.name,))
    return found


@pytest.mark.parametrize("command", [()] + _commands(app), ids=lambda c: " ".join(c) or "fgmm")
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and "fgmm 0." in result.output


def test_data_check_reports_corrupt_file(tiny_cub_corrupt: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = runner.invoke(app, ["data", "check", str(tiny_cub_corrupt), "--out", str(report)])
    assert result.exit_code == 1, result.output
    data = json.loads(report.read_text())
    assert len(data["corrupt_images"]) == 1
    assert "Red_Test_Bird_0000_10.jpg" in data["corrupt_images"][0]["path"]


def test_data_check_clean_dataset(tiny_cub: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(tiny_cub)])
    assert result.exit_code == 0, result.output


def test_missing_root_is_one_clear_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "check", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert "nope: dataset folder does not exist" in result.output
    assert "Traceback" not in result.output


def test_bad_config_key_names_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text("train:\n  epochz: 3\n")
    result = runner.invoke(app, ["train", "--config", str(config)])
    assert result.exit_code == 3  # an fgmm error (bad config), not a usage error
    assert "epochz" in result.output and "exp.yaml" in result.output and "epochs" in result.output


def test_tiny_demo_writes_table_report_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out), "--classes", "5", "--images", "8", "--unseen", "1",
                                 "--image-size", "64", "--tasks", "image,text"])
    assert result.exit_code == 0, result.output
    assert "image_top1" in result.output
    results = json.loads((out / "results.json").read_text())
    assert results["n_train"] + results["n_test"] == 40
    assert 0.0 <= results["image_top1"] <= 1.0
    for name in ("report.md", "per_class.png", "confusion.png", "training.png"):
        assert (out / name).stat().st_size > 0


def test_train_evaluate_and_resume(tiny_procedural, tmp_path: Path) -> None:
    root = tiny_procedural.root
    run = tmp_path / "run"
    common = ["--data", str(root), "--vision", "efficientnet_lite0", "--out", str(run)]
    config = tmp_path / "exp.yaml"
    # learned class weights (the default image preset is closed form: nothing to resume)
    config.write_text(f"model:\n  image_size: 64\n  config:\n    class_embeddings: {{source: free}}\n"
                      f"cache_dir: {tmp_path / 'cache'}\ntrain:\n  batch_size: 8\n  progress: false\n")
    first = runner.invoke(app, ["train", "--config", str(config), *common, "--epochs", "2"])
    assert first.exit_code == 0, first.output
    more = runner.invoke(app, ["train", "--config", str(config), *common, "--epochs", "3", "--resume"])
    assert more.exit_code == 0, more.output
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e.get("event") == "epoch"] == [0, 1, 2]
    evaluated = runner.invoke(app, ["evaluate", str(run)])
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((run / "eval.json").read_text())
    assert metrics["n_test"] == sum(1 for s in tiny_procedural.split if s == "test")
    assert (run / "per_class.png").is_file() and (run / "confusion.png").is_file()


def test_train_with_a_label_filter_writes_its_decisions(tiny_procedural, tmp_path: Path) -> None:
    run = tmp_path / "run"
    config = tmp_path / "exp.yaml"
    config.write_text(f"model:\n  image_size: 64\ncache_dir: {tmp_path / 'cache'}\n"
                      "data:\n  filter: crossmodal\n  filter_options: {folds: 3}\ntrain:\n  progress: false\n")
    result = runner.invoke(app, ["train", "--config", str(config), "--data", str(tiny_procedural.root),
                                 "--vision", "efficientnet_lite0", "--out", str(run)])
    assert result.exit_code == 0, result.output
    counts = json.loads((run / "filter.json").read_text())
    rows = (run / "label_decisions.csv").read_text().splitlines()
    assert rows[0] == "id,image,given,suggested,decision,score" and len(rows) == counts["judged"] + 1
    assert counts["keep"] + counts["drop"] + counts["relabel"] == counts["judged"]
    assert counts["drop"] + counts["relabel"] > 0  # the set has 20% wrong labels
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  filter: crossmodl\n")
    refused = runner.invoke(app, ["train", "--config", str(bad), "--data", str(tiny_procedural.root)])
    assert refused.exit_code == 3 and "crossmodal" in refused.output


def test_cache_build_info_clear(tiny_cub: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    built = runner.invoke(app, ["cache", "build", str(tiny_cub), "--vision", "efficientnet_lite0",
                                "--image-size", "64", "--cache", str(cache)])
    assert built.exit_code == 0, built.output
    assert "encoded" in built.output
    again = runner.invoke(app, ["cache", "build", str(tiny_cub), "--vision", "efficientnet_lite0",
                                "--image-size", "64", "--cache", str(cache)])
    assert "all cached already" in again.output
    info = runner.invoke(app, ["cache", "info", "--cache", str(cache)])
    assert "efficientnet_lite0" in info.output
    cleared = runner.invoke(app, ["cache", "clear", "--cache", str(cache)])
    assert "removed 1 namespace" in cleared.output
    zoomed = runner.invoke(app, ["cache", "build", str(tiny_cub), "--vision", "efficientnet_lite0",
                                 "--image-size", "64", "--zoom", "--cache", str(cache)])
    assert zoomed.exit_code == 0, zoomed.output
    assert " x 2560 features" in zoomed.output  # [image; object], 2 x 1280


def test_train_on_corrupt_image_fails_clearly_or_skips(tiny_cub_corrupt: Path, tmp_path: Path) -> None:
    config = tmp_path / "exp.yaml"
    config.write_text(f"model:\n  image_size: 64\ncache_dir: {tmp_path / 'cache'}\n"
                      "train:\n  batch_size: 4\n  epochs: 1\n  progress: false\n")
    common = ["train", "--config", str(config), "--data", str(tiny_cub_corrupt), "--vision", "efficientnet_lite0",
              "--out", str(tmp_path / "run")]
    failed = runner.invoke(app, common)
    assert failed.exit_code == 3
    assert "Red_Test_Bird_0000_10.jpg" in failed.output and "Traceback" not in failed.output
    skipped = runner.invoke(app, [*common, "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
