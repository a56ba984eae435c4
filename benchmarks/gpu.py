"""GPU readiness: fine-tune the default backbone (EfficientNet-Lite2, offline ImageNet weights) end to end on CUB.

One script, the whole GPU path of fgmm: :func:`fgmm.experiment.train_experiment` trains the one model
(:class:`fgmm.FGModel`, preset ``image`` with ``model.finetune: true``: the image encoder is a trainable
tower, its projection a learned MLP) with the :class:`~fgmm.train.Trainer` (AMP: bf16 on CUDA when
supported; DDP when started by ``torchrun``), then the fine-tuned model is evaluated on the test split
of the same data and one JSON object is written, like ``benchmarks/cub.py``'s::

    python benchmarks/gpu.py --root /path/to/cub200 --out benchmarks/results/cub_finetune_gpu.json
    torchrun --nproc_per_node 4 benchmarks/gpu.py --root /path/to/cub200 --out ...   # several GPUs (DDP)
    python benchmarks/gpu.py --tiny --root TINY_CUB --out /tmp/gpu_tiny.json            # CPU, 64 px, 1 epoch

Keys: ``finetune_top1`` (overall top-1 on the test split), ``finetune_mean_class_top1``, ``images_per_s``
(training images per second, all processes), ``eval_images_per_s``, ``peak_gpu_memory_gib`` (rank 0),
``seconds`` (``train``, ``eval``, ``total``), ``within_budget`` (``total`` ≤ ``--budget-s``), ``split``,
``n_train``, ``n_test``, the recipe, device and versions.

Protocol: the data's official split when ``train_test_split.txt`` marks test images under ``--root``,
otherwise (the developers' bundle) the seeded 20% per-class holdout of ``load_cub(root, seed=0)``,
4,794 train / 1,200 test images. No validation split and no model selection: the last epoch's model is
evaluated once. The default recipe (30 epochs of 4,794 images at 260 px, global batch 64, AdamW 5e-4,
cosine, label smoothing 0.1) was sized so that one H200 finishes in about 2-4 minutes, within the
8-minute budget even if data loading only reaches ~500 images/s (JPEG decoding and augmentation take
8 ms of CPU per image on the development machine: ~1,700 images/s from 14 workers). The GPU side of
EfficientNet-Lite2 at batch 64 is far faster than that. The recipe has not been tuned on the test split.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console

from fgmm.data import load_dataset
from fgmm.data.images import image_loader
from fgmm.errors import FgmmError
from fgmm.experiment import DataConfig, ExperimentConfig, ModelConfig, train_experiment
from fgmm.report import results_table, write_json_atomic
from fgmm.space import FGModel
from fgmm.train import TrainConfig
from fgmm.train.distributed import setup_distributed
from fgmm.train.trainer import resolve_amp
from fgmm.zeroshot import mean_class_accuracy

#: the 8-minute budget of one H200 for the whole run (start to JSON)
BUDGET_S = 480.0
#: full run on a GPU: sized for the budget (module docstring)
FULL = {"epochs": 30, "batch_size": 64, "lr": 5e-4, "image_size": 260, "device": "auto", "amp": "auto",
        "warmup_steps": 150, "label_smoothing": 0.1}
#: CI-sized run on CPU: proves the script starts, trains and evaluates
TINY = {"epochs": 1, "batch_size": 4, "lr": 5e-4, "image_size": 64, "device": "cpu", "amp": "off",
        "warmup_steps": 0, "label_smoothing": 0.1, "num_workers": 0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results JSON")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/gpu_finetune"),
                        help="the run folder (replaced when it holds an earlier fgmm run)")
    parser.add_argument("--tiny", action="store_true", help="CI mode: CPU, 64 px, 1 epoch, batch 4, no workers")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None, help="global batch (split over DDP processes)")
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--num-workers", type=int, default=None,
                        help="data-loading processes per GPU (default: the cores per process, at most 16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the holdout split and of training")
    parser.add_argument("--budget-s", type=float, default=BUDGET_S, help="wall-time budget recorded in the JSON")
    args = parser.parse_args(argv)
    recipe = dict(TINY if args.tiny else FULL)
    for key in ("epochs", "batch_size", "lr", "image_size", "num_workers", "device"):
        if getattr(args, key) is not None:
            recipe[key] = getattr(args, key)
    args.recipe = recipe
    return args


def _workers(world_size: int) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(16, cores // world_size - 1))


def experiment_config(args: argparse.Namespace, world_size: int) -> ExperimentConfig:
    """The fine-tuning experiment: preset ``image`` with a trainable EfficientNet-Lite2 tower."""
    r = args.recipe
    per_process = max(1, r["batch_size"] // world_size)
    train = TrainConfig(epochs=r["epochs"], batch_size=per_process, lr=r["lr"], weight_decay=0.05,
                        scheduler="cosine", warmup_steps=r["warmup_steps"], amp=r["amp"], device=r["device"],
                        num_workers=r.get("num_workers", _workers(world_size)), drop_last=not args.tiny,
                        seed=args.seed, out_dir=args.run_dir, progress=not args.tiny, log_every_steps=50,
                        eval_batch_size=per_process)
    model = ModelConfig(preset="image", vision="efficientnet_lite2", image_size=r["image_size"], finetune=True,
                        config={"dim": 512, "objective": {"label_smoothing": r["label_smoothing"]}})
    return ExperimentConfig(data=DataConfig(root=args.root, holdout=0.2, val_fraction=0.0, seed=args.seed),
                            model=model, train=train)


@torch.no_grad()
def evaluate(model: FGModel, samples: list, batch_size: int, num_workers: int) -> dict[str, Any]:
    """Overall and mean per-class top-1 of the fine-tuned model on ``samples`` (centre crops, the tower's
    evaluation transform), decoded by ``num_workers`` processes."""
    tower = model.towers["image"]
    start = time.perf_counter()
    loader = image_loader([s.image for s in samples], tower.transform(train=False), batch_size, num_workers)
    predictions = torch.full((len(samples),), -1, dtype=torch.long)
    for batch in loader:
        if batch.failures:
            index, problem = batch.failures[0]
            raise FgmmError(f"{samples[index].image}: {problem}")
        predictions[batch.indices] = model.logits({"image": batch.images}, batch_size=batch_size).argmax(1)
    seconds = time.perf_counter() - start
    labels = torch.tensor([s.label for s in samples])
    return {"finetune_top1": float((predictions == labels).float().mean()),
            "finetune_mean_class_top1": mean_class_accuracy(predictions, labels),
            "eval_images_per_s": round(len(samples) / seconds, 1), "eval_seconds": seconds}


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    args = parse_args(argv)
    start = time.perf_counter()
    ctx = setup_distributed(args.recipe["device"])
    cfg = experiment_config(args, ctx.world_size)
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
        torch.backends.cudnn.benchmark = True
    trained = train_experiment(cfg, fresh=True)
    train_seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(ctx.device) / 2**30 if ctx.device.type == "cuda" else None
    if not ctx.is_main:
        return None
    dataset = load_dataset(args.root, holdout=cfg.data.holdout, seed=cfg.data.seed)
    train, test = dataset.part("train"), dataset.part("test")
    model = FGModel.from_pretrained(trained["model_dir"], map_location=ctx.device)
    metrics = evaluate(model, test.samples, cfg.train.eval_batch_size or cfg.train.batch_size, cfg.train.num_workers)
    eval_seconds = metrics.pop("eval_seconds")
    trainer_seconds = trained["history"][-1]["seconds"] if trained["history"] else train_seconds
    amp = resolve_amp(cfg.train.amp, ctx.device)
    device = torch.cuda.get_device_name(ctx.device) if ctx.device.type == "cuda" else platform.processor() or "cpu"
    total = time.perf_counter() - start
    results = {
        "split": dataset.split_protocol, "n_train": len(train), "n_test": len(test), **metrics,
        "images_per_s": round(len(train) * cfg.train.epochs / trainer_seconds, 1),
        "peak_gpu_memory_gib": None if peak is None else round(peak, 2),
        "seconds": {"train": round(train_seconds, 1), "trainer": round(trainer_seconds, 1),
                    "eval": round(eval_seconds, 1), "total": round(total, 1)},
        "within_budget": total <= args.budget_s, "budget_s": args.budget_s,
        "recipe": {**args.recipe, "per_process_batch": cfg.train.batch_size, "num_workers": cfg.train.num_workers,
                   "weight_decay": cfg.train.weight_decay, "scheduler": cfg.train.scheduler, "dim": 512,
                   "preset": "image", "vision": "efficientnet_lite2",
                   "amp_dtype": None if amp is None else str(amp).removeprefix("torch.")},
        "steps": trained["steps"], "stop_reason": trained["stop_reason"],
        "train_loss": [round(h["train_loss"], 4) for h in trained["history"] if "train_loss" in h],
        "world_size": ctx.world_size, "tiny": args.tiny, "seed": args.seed,
        "device": device, "torch": torch.__version__, "run_dir": trained["run_dir"],
    }
    write_json_atomic(args.out, results)
    console = Console()
    console.print(results_table(results, title=f"CUB fine-tuning ({results['split']}, {results['n_train']} train / "
                                               f"{results['n_test']} test, {results['seconds']['total']:.0f} s)"))
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
