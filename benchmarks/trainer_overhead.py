"""Overhead of :class:`fgmm.train.Trainer` over a plain hand-written PyTorch loop.

Both train the same linear head on cached-feature-like data (random ``N x D`` features, ``C``
classes) with the same batch size, epochs, AdamW and cosine schedule, on CPU with one thread. The
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


def plain_loop(features: torch.Tensor, labels: torch.Tensor, args: argparse.Namespace) -> Clock:
    """Time of the hand-written loop."""
    torch.manual_seed(0)
    model = torch.nn.Linear(features.shape[1], args.classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
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
    plain, ours = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            plain.append(plain_loop(features, labels, args))
            ours.append(trainer_loop(features, labels, args, Path(tmp) / f"run{repeat}"))
    steps = args.epochs * math.ceil(args.n / args.batch_size)
    print(f"data {args.n}x{args.dim}, {args.classes} classes, batch {args.batch_size}, "
          f"{args.epochs} epochs = {steps} steps, 1 thread, fastest of {args.repeats} runs")
    for kind in ("wall", "cpu"):
        base, mine = [getattr(c, kind) for c in plain], [getattr(c, kind) for c in ours]
        paired = statistics.median(m / b for m, b in zip(mine, base, strict=True))
        print(f"{kind:>4}: plain loop {min(base):.3f} s ({1e3 * min(base) / steps:.3f} ms/step), "
              f"Trainer {min(mine):.3f} s ({1e3 * min(mine) / steps:.3f} ms/step); overhead "
              f"{100 * (min(mine) / min(base) - 1):+.1f}% fastest vs fastest, "
              f"{100 * (paired - 1):+.1f}% median of paired runs (goal <= 10%)")

if __name__ == "__main__":
    main()
