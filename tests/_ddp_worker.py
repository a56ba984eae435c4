"""The toy problem shared by the trainer tests, and the entry point of the 2-process DDP test.

Run as ``python -m torch.distributed.run --nproc_per_node 2 --standalone tests/_ddp_worker.py OUT_DIR``:
every rank trains the toy model with :class:`fgmm.train.Trainer` and saves its final weights to
``OUT_DIR/weights_rank<r>.pt`` plus the fit result to ``OUT_DIR/result_rank<r>.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import Dataset

from fgmm.models import FeatureClassifier, LinearHead
from fgmm.train import TrainConfig, Trainer

IN_DIM, NUM_CLASSES = 8, 3


class DictDataset(Dataset):
    """Rows of equally long tensors, served as dicts (the trainer's batch contract)."""

    def __init__(self, **columns: torch.Tensor):
        self.columns = columns
        self.size = len(next(iter(columns.values())))

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {name: column[index] for name, column in self.columns.items()}


def toy_data(n: int = 64, seed: int = 0, noise: float = 1.0) -> DictDataset:
    """``n`` samples of ``NUM_CLASSES`` Gaussian classes in ``IN_DIM`` dimensions."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(NUM_CLASSES, IN_DIM, generator=torch.Generator().manual_seed(1234)) * 2
    labels = torch.arange(n) % NUM_CLASSES
    features = centers[labels] + noise * torch.randn(n, IN_DIM, generator=gen)
    return DictDataset(features=features, label=labels)


def toy_model(seed: int = 0, dropout: float = 0.0) -> FeatureClassifier:
    torch.manual_seed(seed)
    return FeatureClassifier(LinearHead(IN_DIM, NUM_CLASSES), dropout=dropout)


def ddp_config(out_dir: Path, batch_size: int) -> TrainConfig:
    """The DDP test's settings; ``batch_size`` is per process."""
    return TrainConfig(epochs=3, batch_size=batch_size, lr=0.05, optimizer="sgd", scheduler="constant",
                       weight_decay=0.0, seed=3, progress=False, out_dir=out_dir, log_every_steps=2)


def main(out_dir: Path) -> None:
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    model = toy_model()
    trainer = Trainer(model, ddp_config(out_dir / "run", batch_size=8), toy_data(64),
                      val_data=toy_data(30, seed=1))
    result = trainer.fit()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()},
               out_dir / f"weights_rank{rank}.pt")
    (out_dir / f"result_rank{rank}.json").write_text(json.dumps(
        {"history": result.history, "steps": result.steps, "world_size": trainer.dist.world_size,
         "predict_rows": int(trainer.predict(toy_data(30, seed=1)).shape[0])}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
