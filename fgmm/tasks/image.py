"""The image-only task: a head on frozen image features, next to a logistic-regression probe.

Keys: ``image_top1`` (fgmm's head trained with :class:`fgmm.train.Trainer`) and
``image_top1_logreg`` (scikit-learn logistic regression on L2-normalised features, the baseline
the issue asks us to match). The trained head, its history and test predictions are left in
``ctx.shared`` for the report and later tasks.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fgmm.data.torch_dataset import FeatureDataset
from fgmm.models.classifier import ImageClassifier
from fgmm.models.heads import LinearHead
from fgmm.tasks import TASKS, TaskContext
from fgmm.train import TrainConfig, Trainer


def head_config(ctx: TaskContext, out_dir: Path, n_train: int) -> TrainConfig:
    """The fixed recipe of the image head (no tuning on the test split)."""
    epochs = 30 if ctx.quick else 60
    return TrainConfig(epochs=epochs, batch_size=min(256, n_train), lr=2e-3, weight_decay=5e-2,
                       scheduler="cosine", seed=ctx.seed, out_dir=out_dir, progress=False,
                       device=ctx.device, log_every_steps=10_000)


def logistic_probe_top1(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                        y_test: np.ndarray, seed: int = 0) -> float:
    """Top-1 of scikit-learn's logistic regression (default ``C=1``) on L2-normalised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(normalize(x_train), y_train)
    return float((probe.predict(normalize(x_test)) == y_test).mean())


@TASKS.register("image")
def image_task(ctx: TaskContext) -> dict[str, float]:
    train, test = ctx.trained_indices()
    features, labels = ctx.features["image"], ctx.labels()
    x_train, x_test = features[train], features[test]
    y_train, y_test = labels[train], labels[test]
    model = ImageClassifier(LinearHead(x_train.shape[1], ctx.dataset.num_classes), x_train.shape[1], dropout=0.5)
    model.norm.fit(x_train)
    with tempfile.TemporaryDirectory(prefix="fgmm-image-") as tmp:
        out_dir = ctx.out_dir / "image_head" if ctx.out_dir else Path(tmp)
        trainer = Trainer(model, head_config(ctx, out_dir, len(train)),
                          FeatureDataset({"features": x_train}, y_train))
        result = trainer.fit(resume=False)
        logits = trainer.predict(FeatureDataset({"features": x_test}, y_test))
    predictions = logits.argmax(1).cpu()
    ctx.shared.update(image_model=model, image_history=result.history,
                      image_test_true=y_test.numpy(), image_test_pred=predictions.numpy())
    baseline = logistic_probe_top1(features[train].numpy(), y_train.numpy(), features[test].numpy(),
                                   y_test.numpy(), seed=ctx.seed)
    return {"image_top1": float((predictions == y_test).float().mean()), "image_top1_logreg": baseline}
