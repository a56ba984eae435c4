"""Two-process DDP (gloo, CPU) through torchrun against the equivalent single-process run.

Each rank takes a strided shard of the same epoch permutation, so with 2 ranks x batch 8 the ranks'
micro-batch ``j`` together is exactly the single process's batch ``j`` of 16; DDP averages the two
half-batch mean gradients, which is the full-batch mean. The runs therefore agree up to float
summation order (allclose), and both ranks end bit-identical.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _ddp_worker import ddp_config, toy_data, toy_model

from fgmm.train import Trainer

WORKER = Path(__file__).with_name("_ddp_worker.py")


@pytest.mark.timeout(300)
def test_two_gloo_processes_match_single_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("WORLD_SIZE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         str(WORKER), str(tmp_path)],
        capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    weights = [torch.load(tmp_path / f"weights_rank{r}.pt", weights_only=True) for r in (0, 1)]
    results = [json.loads((tmp_path / f"result_rank{r}.json").read_text()) for r in (0, 1)]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert results[0]["world_size"] == 2 and results[0]["steps"] == 12  # 3 epochs x 64 / (2 x 8)
    timeless = [[{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]] for r in results]
    assert timeless[0] == timeless[1]  # metrics are all-reduced: every rank records the same values
    losses = [h["train_loss"] for h in results[0]["history"]]
    assert losses[-1] < losses[0]
    assert results[0]["predict_rows"] == 30  # 15 rows per rank gathered back in order

    torch.set_num_threads(1)
    single = toy_model()
    reference = Trainer(single, ddp_config(tmp_path / "single", batch_size=16), toy_data(64),
                        val_data=toy_data(30, seed=1)).fit()
    for name, value in single.state_dict().items():
        torch.testing.assert_close(weights[0][name], value, rtol=1e-5, atol=1e-6)
    for ddp_epoch, ref_epoch in zip(results[0]["history"], reference.history, strict=True):
        for key in ("train_loss", "val_loss", "val_top1"):
            assert ddp_epoch[key] == pytest.approx(ref_epoch[key], rel=1e-5), key

    # only rank 0 wrote files: one set of log lines, same as the single-process run
    ddp_log = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    single_log = (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in ddp_log] == [json.loads(x)["step"] for x in single_log]
    assert (tmp_path / "run" / "best.ckpt").is_file() and (tmp_path / "run" / "last.ckpt").is_file()
