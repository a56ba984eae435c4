"""``benchmarks/cub.py --update``: rerun tasks replace their keys in a results file, the others stay."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cub():
    spec = importlib.util.spec_from_file_location("benchmark_cub", ROOT / "benchmarks" / "cub.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def run(seed: int, **keys) -> dict:
    return {"split": f"holdout-seed{seed}", "n_train": 8, "n_test": 2, **keys, "seconds": {"total": 1.0},
            "encoder": {"encoder": "toy"}, "seed": seed}


def test_update_replaces_the_rerun_keys_and_recomputes_mean_and_sd(cub, tmp_path, monkeypatch):
    out = tmp_path / "results.json"
    old = {0: run(0, kg_top1=0.5, i2t_mAP=0.2), 1: run(1, kg_top1=0.7, i2t_mAP=0.4)}
    monkeypatch.setattr(cub, "run_seed", lambda args, seed, tasks, cache: old[seed])
    cub.main(["--root", str(tmp_path), "--out", str(out), "--tasks", "kg", "--seeds", "0,1",
              "--cache", str(tmp_path / "cache")])
    fresh = {0: run(0, i2t_mAP=0.3), 1: run(1, i2t_mAP=0.6)}
    monkeypatch.setattr(cub, "run_seed", lambda args, seed, tasks, cache: fresh[seed])
    cub.main(["--root", str(tmp_path), "--out", str(out), "--tasks", "retrieval", "--seeds", "0,1", "--update",
              "--cache", str(tmp_path / "cache")])
    results = json.loads(out.read_text())
    assert results["kg_top1"] == pytest.approx(0.6) and results["i2t_mAP"] == pytest.approx(0.45)
    assert results["sd"]["i2t_mAP"] == pytest.approx(0.3 / 2 ** 0.5)
    assert results["per_seed"]["1"]["kg_top1"] == 0.7 and results["tasks"] == ["kg", "retrieval"]
    with pytest.raises(SystemExit, match=r"holds seeds \[0, 1\], not --seeds \[0\]"):
        cub.main(["--root", str(tmp_path), "--out", str(out), "--tasks", "retrieval", "--seeds", "0", "--update"])
