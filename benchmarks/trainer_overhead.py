"""Overhead of :class:`fgmm.train.Trainer` over a plain hand-written PyTorch loop.

Both train the same linear head on cached-feature-like data (random ``N x D`` features, ``C``
classes) with the same batch size, epochs, AdamW and cosine schedule, on CPU with one thread. The
Trainer uses torch's fused AdamW; the plain loop runs with the fused and with the default AdamW,
so the comparison shows both the Trainer's own overhead (same kernels) and what users gain. The
Trainer runs as users run it: progress bar on, metrics logged every ``log_every_steps`` (default),
``last.ckpt`` written at every epoch end. Each variant runs ``--repeats`` times, alternating, and
the overhead is reported twice: fastest run against fastest run, and the median ratio of adjacent
(paired) runs, which is robust to other load on a shared machine. CPU time is reported next to wall
time for the same reason.

    python benchmarks/trainer_overhead.py [--n 6000 --dim 1280 --classes 200 --batch-size 64 --epochs 5]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fgmm.models import FeatureClassifier, LinearHead
from fgmm.train import TrainConfig, Trainer
from fgmm.train.trainer import cosine_schedule


class FeatureDataset(Dataset):
    """Cached features and labels served as dicts, the trainer's batch contract."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor):
        self.features, self.labels = features, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"features": self.features[index], "label": self.labels[index]}


class Clock:
    """Wall and CPU seconds of a block (CPU time is robust to other processes on a shared machine)."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def plain_loop(features: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace,
               fused: bool = False) -> Clock:
    """Time of the hand-written loop (``fused``: torch's single-kernel AdamW, as the Trainer uses)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(features.shape[1], args.classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=fused)
    loader = DataLoader(TensorDataset(features, labels), batch_size=args.batch_size, shuffle=True)
    total = args.epochs * math.ceil(len(labels) / args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_schedule(s, total, 0))
    with Clock() as clock:
        for _ in range(args.epochs):
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
    return clock


def trainer_loop(features: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace,
                 out_dir: Path) -> Clock:
    """Time of ``Trainer.fit`` on the same problem."""
    torch.manual_seed(0)
    model = FeatureClassifier(LinearHead(features.shape[1], args.classes))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=1e-3, weight_decay=0.01,
                         optimizer="adamw", scheduler="cosine", out_dir=out_dir, progress=True)
    trainer = Trainer(model, config, FeatureDataset(features, labels))
    with Clock() as clock:
        trainer.fit(resume=False)
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(args.n, args.dim, generator=gen)
    labels = torch.randint(0, args.classes, (args.n,), generator=gen)
    runs: dict[str, list[Clock]] = {"plain loop, default AdamW": [], "plain loop, fused AdamW": [],
                                     "Trainer": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            runs["plain loop, default AdamW"].append(plain_loop(features, labels, args))
            runs["plain loop, fused AdamW"].append(plain_loop(features, labels, args, fused=True))
            runs["Trainer"].append(trainer_loop(features, labels, args, Path(tmp) / f"run{repeat}"))
    steps = args.epochs * math.ceil(args.n / args.batch_size)
    print(f"data {args.n}x{args.dim}, {args.classes} classes, batch {args.batch_size}, "
          f"{args.epochs} epochs = {steps} steps, 1 thread, {args.repeats} alternating runs each")
    for kind in ("wall", "cpu"):
        times = {name: [getattr(c, kind) for c in clocks] for name, clocks in runs.items()}
        print(f"{kind} time (fastest run):")
        for name, values in times.items():
            print(f"  {name:<26} {min(values):7.3f} s  {1e3 * min(values) / steps:6.3f} ms/step")
        for base in ("plain loop, fused AdamW", "plain loop, default AdamW"):
            paired = statistics.median(t / b for t, b in zip(times["Trainer"], times[base], strict=True))
            print(f"  Trainer vs {base}: {100 * (min(times['Trainer']) / min(times[base]) - 1):+.1f}% "
                  f"fastest vs fastest, {100 * (paired - 1):+.1f}% median of paired runs")
    print("goal: overhead <= 10% against the plain loop with the same (fused) optimizer")

if __name__ == "__main__":
    main()
