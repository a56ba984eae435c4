"""benchmarks/gpu.py starts, fine-tunes end to end and writes its JSON: the CI-sized ``--tiny`` mode on CPU."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


def _gpu_script():
    spec = importlib.util.spec_from_file_location("fgmm_bench_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(240)
def test_tiny_finetune_writes_the_benchmark_json(tiny_cub, tmp_path, one_thread):
    gpu = _gpu_script()
    out = tmp_path / "gpu.json"
    results = gpu.main(["--tiny", "--root", str(tiny_cub), "--out", str(out), "--run-dir", str(tmp_path / "run")])
    assert json.loads(out.read_text()) == json.loads(json.dumps(results))
    assert results["split"] == "holdout-20%-per-class-seed0" and results["tiny"] and results["world_size"] == 1
    assert results["n_train"] == 9 and results["n_test"] == 3  # 3 classes x 4 images, 20% held out per class
    assert 0.0 <= results["finetune_top1"] <= 1.0 and 0.0 <= results["finetune_mean_class_top1"] <= 1.0
    assert results["steps"] == 3 and results["stop_reason"] == "completed"  # 1 epoch of 9 images, batch 4
    assert results["images_per_s"] > 0 and results["peak_gpu_memory_gib"] is None  # CPU: no GPU memory
    assert results["recipe"]["image_size"] == 64 and results["recipe"]["amp_dtype"] is None
    assert set(results["seconds"]) == {"train", "trainer", "eval", "total"}
    assert (tmp_path / "run" / "model").is_dir()  # the fine-tuned FGModel, readable by fgmm evaluate/predict


def test_full_recipe_fits_the_h200_budget():
    """The defaults a GPU run uses: 260 px, AMP, a 64-image global batch split over DDP processes."""
    gpu = _gpu_script()
    args = gpu.parse_args(["--root", "cub", "--out", "x.json"])
    assert args.recipe["image_size"] == 260 and args.recipe["amp"] == "auto" and args.recipe["device"] == "auto"
    # images seen in training at a pessimistic 500 images/s data loading, plus a minute of start-up and eval
    assert 4794 * args.recipe["epochs"] / 500 + 60 <= gpu.BUDGET_S
    cfg = gpu.experiment_config(args, world_size=4)
    assert cfg.train.batch_size == 16 and cfg.model.finetune and cfg.data.val_fraction == 0.0
    assert cfg.model.overrides()["modalities"]["image"]["trainable"]
