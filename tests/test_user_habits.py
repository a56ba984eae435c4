"""What a new user runs into first: tasks found without knowing import tricks, demo settings checked in
one line before any work, progress on long steps, no warnings on a normal run."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from _ddp_worker import toy_data, toy_model

from fgmm.errors import ConfigError
from fgmm.registry import Registry


def _fresh_python(code: str) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter (nothing imported yet), every warning an error."""
    return subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=240)


def test_run_tasks_knows_its_tasks_without_importing_all_first():
    proc = _fresh_python(
        "import sys, fgmm\n"
        "from fgmm.tasks import TASKS\n"
        "assert 'fgmm.tasks.all' not in sys.modules\n"
        "assert {'image', 'kg', 'zsl', 'text', 'retrieval'} <= set(TASKS.names()), TASKS.names()\n"
        "try:\n"
        "    fgmm.run_tasks(None, ['imag'])\n"
        "except fgmm.ConfigError as e:\n"
        "    assert 'choose one of: ' in str(e) and 'image' in str(e), e\n")
    # -W error: importing every task (PyG included) prints no warning either
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_registry_populates_on_first_lookup(tmp_path, monkeypatch):
    registry: Registry[int] = Registry("widget", populate="fgmm_test_widgets")
    (tmp_path / "fgmm_test_widgets.py").write_text(
        "from test_user_habits import WIDGETS\nWIDGETS.register('gear')(lambda: 1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys.modules[__name__], "WIDGETS", registry, raising=False)
    assert registry._entries == {}  # nothing imported at definition time
    assert "gear" in registry and registry.create("gear") == 1 and registry.names() == ["gear"]
    with pytest.raises(ConfigError, match="unknown widget 'cog'; choose one of: gear"):
        registry.get("cog")


@pytest.mark.parametrize(("options", "message"), [
    ({"tasks": ("imag",)}, "unknown task 'imag'; choose one of: .*image.*zsl"),
    ({"tasks": ()}, "no task to run; choose from: .*image"),
    ({"num_classes": 3, "images_per_class": 2}, "images per class must be at least 3"),
    ({"num_classes": 3}, r"unseen classes must be in \[0, 1\] for 3 classes"),
    ({"unseen_classes": 0}, "task\\(s\\) zsl need unseen classes"),
])
def test_demo_settings_fail_in_one_line_before_any_work(tmp_path, options, message):
    from fgmm.demo import DemoConfig

    with pytest.raises(ConfigError, match=message):
        DemoConfig(out_dir=tmp_path / "demo", **options)
    assert not (tmp_path / "demo").exists()


def test_demo_cli_rejects_bad_settings(tmp_path):
    from typer.testing import CliRunner

    from fgmm.cli.main import app

    for args, expected in ((["--tasks", "imag"], "unknown task 'imag'; choose one of:"),
                           (["--classes", "3", "--images", "2"], "images per class must be at least 3")):
        result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "d"), *args])
        assert result.exit_code != 0 and expected in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_trainer_shows_the_loss_often(tmp_path, capsys):
    """The loss next to the bar refreshes on a timer and at every epoch end, not every log_every_steps."""
    from fgmm.train import TrainConfig, Trainer

    torch.manual_seed(0)
    config = TrainConfig(epochs=2, batch_size=8, out_dir=tmp_path / "run", log_every_steps=1000, progress=True)
    Trainer(toy_model(), config, toy_data(24)).fit()
    shown = capsys.readouterr().err
    assert shown.count("loss=") >= 2 and "epoch 2/2" in shown


def test_long_data_steps_show_progress(tmp_path, capsys):
    from fgmm.data import check_dataset, generate_procedural

    generate_procedural(tmp_path / "gen", num_classes=2, images_per_class=3, image_size=32, unseen_classes=0,
                        with_audio=False, progress=True)
    assert "generating samples" in capsys.readouterr().err
    assert check_dataset(tmp_path / "gen", progress=True).ok
    assert "checking images" in capsys.readouterr().err
