"""The image-only task: the one model (:class:`fgmm.FGModel`, preset ``"image"``) on frozen image features.

Keys (overall top-1 over the test images of the classes with training images):

* ``image_top1``: preset ``"image"`` — within-class whitened features, cosine classifier started at
  the class means and refined by cross-entropy (:mod:`fgmm.space`);
* ``image_top1_ncm``: preset ``"image-ncm"`` — the same space, nearest class mean, no training;
* ``image_top1_logreg``: scikit-learn logistic regression (``C=1``) on L2-normalised features, the
  plain probe of the literature.

The trained model and its test predictions are left in ``ctx.shared`` for the report and later tasks.
"""

from __future__ import annotations

import numpy as np

from fgmm.space import ModalityTable
from fgmm.tasks import TASKS, TaskContext


def logistic_probe_top1(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                        y_test: np.ndarray, seed: int = 0) -> float:
    """Top-1 of scikit-learn's logistic regression (default ``C=1``) on L2-normalised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(normalize(x_train), y_train)
    return float((probe.predict(normalize(x_test)) == y_test).mean())


def top1(model, features: dict, labels) -> float:
    """Overall top-1 of ``model`` on cached ``features`` (``{modality: [N, d]}``)."""
    return float((model.logits(features).argmax(1) == labels).float().mean())


def image_model(ctx: TaskContext):
    """The image task's :class:`fgmm.FGModel` (preset ``"image"``), trained once per context on the
    training images of the classes that have some (kept in ``ctx.shared["image_model"]``)."""
    if "image_model" not in ctx.shared:
        train, _ = ctx.trained_indices()
        model = ctx.model("image")
        with ctx.train_config("image", len(train), epochs=30 if ctx.quick else 60) as config:
            result = model.fit_features({"image": ModalityTable.one_per_sample(ctx.features["image"][train])},
                                        ctx.labels(train), train=config)
        ctx.shared.update(image_model=model, image_history=result.history)
    return ctx.shared["image_model"]


@TASKS.register("image")
def image_task(ctx: TaskContext) -> dict[str, float]:
    train, test = ctx.trained_indices()
    features, labels = ctx.features["image"], ctx.labels()
    model = image_model(ctx)
    nearest_mean = ctx.model("image-ncm")
    nearest_mean.fit_features({"image": ModalityTable.one_per_sample(features[train])}, labels[train])
    predictions = model.logits({"image": features[test]}).argmax(1)
    ctx.shared.update(image_test_true=labels[test].numpy(), image_test_pred=predictions.numpy())
    baseline = logistic_probe_top1(features[train].numpy(), labels[train].numpy(), features[test].numpy(),
                                   labels[test].numpy(), seed=ctx.seed)
    return {"image_top1": float((predictions == labels[test]).float().mean()),
            "image_top1_ncm": top1(nearest_mean, {"image": features[test]}, labels[test]),
            "image_top1_logreg": baseline}
