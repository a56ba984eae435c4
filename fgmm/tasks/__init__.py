"""Evaluation tasks shared by ``fgmm demo`` and ``benchmarks/cub.py``.

A task takes a :class:`TaskContext` (a split dataset plus frozen features of its samples) and
returns a dict of metrics whose keys follow the benchmark contract (DESIGN.md section 3), e.g.
``{"image_top1": 0.74}``. The demo runs the tasks on the procedural dataset, the benchmark on CUB;
both print the same table. Tasks register themselves::

    @TASKS.register("image")
    def image_task(ctx: TaskContext) -> dict[str, float]: ...

    metrics = run_tasks(ctx, ["image", "kg"])
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgmm.data.sample import MultiModalDataset
from fgmm.registry import Registry

TaskFn = Callable[["TaskContext"], dict[str, float]]
TASKS: Registry[dict[str, float]] = Registry("task", populate="fgmm.tasks.all")  # built-ins load on first lookup


@dataclass
class TaskContext:
    """What every task gets.

    Attributes:
        dataset: the dataset, with ``split`` set (``"train"``/``"test"`` per sample).
        features: frozen per-sample features by modality, row ``i`` belonging to ``dataset[i]``
            (``"image"`` always; others when computed). Missing modalities are absent keys.
        unseen_classes: class indices treated as unseen for zero-shot (no training images used).
        seed: seed for every random choice a task makes.
        device: torch device for training heads.
        quick: fewer epochs/iterations (the demo's 3-minute budget).
        out_dir: where tasks may write plots/artifacts, or ``None``.
        cache: a :class:`fgmm.cache.FeatureCache` for tasks that encode more (e.g. texts).
        shared: results tasks hand to later tasks (e.g. a trained image head).
        encoders: the encoder (model name) behind each modality's features, e.g. ``{"image": "efficientnet_lite2"}``.
        encoder_options: the further keyword arguments those encoders were created with, e.g.
            ``{"image": {"zoom": True}}``.
        text_classes: the class set of the text and retrieval tasks (CUB: the 50 contract caption
            classes); ``None``: every class with a captioned training sample.
    """

    dataset: MultiModalDataset
    features: dict[str, torch.Tensor]
    unseen_classes: list[int] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    quick: bool = False
    out_dir: Path | None = None
    cache: Any = None
    shared: dict[str, Any] = field(default_factory=dict)
    encoders: dict[str, str] = field(default_factory=dict)
    encoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    text_classes: list[int] | None = None

    def model(self, preset: str | dict[str, Any], class_names: Sequence[str] | None = None,
              dims: dict[str, int] | None = None, kg: Any = None, **overrides: Any):
        """An untrained :class:`fgmm.FGModel` for this context's features (no encoder is loaded).

        Args:
            preset: a preset name of :func:`fgmm.list_models` or a config dict.
            class_names: its class names (default: every class of the dataset).
            dims: feature widths of modalities not in :attr:`features` (e.g. ``{"text": 384}``).
            kg: the knowledge graph of the ``"kg"``/``"gnn"`` class sources.
            **overrides: merged into the preset (see :func:`fgmm.create_model`).
        """
        from fgmm.space import create_model, model_config

        widths = {m: int(f.shape[1]) for m, f in self.features.items()} | dict(dims or {})
        wanted = model_config(preset, **overrides).modalities
        modalities = {m: {"input_dim": widths[m]} | ({"encoder": self.encoders[m]} if m in self.encoders else {})
                      for m in wanted}
        patch = overrides.pop("modalities", {})
        for m, spec in patch.items():
            modalities[m] = modalities.get(m, {}) | spec
        return create_model(preset, classes=list(class_names or self.dataset.class_names), kg=kg, seed=self.seed,
                            modalities=modalities, **overrides)

    @contextmanager
    def train_config(self, name: str, n_train: int, **overrides: Any) -> Iterator[Any]:
        """The :class:`~fgmm.train.TrainConfig` of a task's model: the default recipe
        (:func:`fgmm.space.fitting.default_train_config`) with this context's seed and device; its
        checkpoints go to ``out_dir/<name>`` or, without ``out_dir``, to a folder removed afterwards."""
        from fgmm.space.fitting import default_train_config

        with tempfile.TemporaryDirectory(prefix=f"fgmm-{name}-") as tmp:
            out_dir = self.out_dir / name if self.out_dir else Path(tmp)
            yield default_train_config(n_train, **({"seed": self.seed, "device": self.device, "out_dir": out_dir}
                                                   | overrides))

    def indices(self, part: str) -> np.ndarray:
        """Indices of the samples in split ``part`` (``"train"`` or ``"test"``)."""
        return np.array([i for i, s in enumerate(self.dataset.split) if s == part], dtype=np.int64)

    def trained_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Supervised protocol: train samples with a known label, and the test samples of classes
        that have training samples (classes with none, like zero-shot classes, are left out)."""
        train = self.indices("train")
        train = train[self.dataset.labels[train] >= 0]
        test = self.indices("test")
        return train, test[np.isin(self.dataset.labels[test], self.dataset.labels[train])]

    def labels(self, indices: np.ndarray | None = None) -> torch.Tensor:
        labels = torch.as_tensor(self.dataset.labels)
        return labels if indices is None else labels[torch.as_tensor(indices)]


def run_tasks(ctx: TaskContext, names: Sequence[str]) -> dict[str, float]:
    """Run the tasks ``names`` in order; return their merged metrics plus per-task seconds.

    Wall times land under ``seconds`` as ``{"seconds": {"image": 1.2, ...}}`` in the returned dict.
    """
    metrics: dict[str, Any] = {"seconds": {}}
    for name in names:
        task = TASKS.get(name)
        start = time.perf_counter()
        metrics.update(task(ctx))
        metrics["seconds"][name] = round(time.perf_counter() - start, 3)
    return metrics
