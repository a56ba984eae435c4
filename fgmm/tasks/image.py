"""The image-only task: the one model (:class:`fgmm.FGModel`, preset ``"image"``) on frozen image features.

Keys (overall top-1 over the test images of the classes with training images):

* ``image_top1``: preset ``"image"`` — nearest class mean in the within-class whitened space of the
  frozen features (:mod:`fgmm.space`; no gradient step). A cosine classifier started at those means
  and refined by cross-entropy scored the same on CUB validation splits (benchmarks/README.md);
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
    """The image task's :class:`fgmm.FGModel` (preset ``"image"``), fitted once per context on the
    training images of the classes that have some (kept in ``ctx.shared["image_model"]``)."""
    if "image_model" not in ctx.shared:
        train, _ = ctx.trained_indices()
        model = ctx.model("image")
        model.fit_features({"image": ModalityTable.one_per_sample(ctx.features["image"][train])}, ctx.labels(train))
        ctx.shared["image_model"] = model
    return ctx.shared["image_model"]


@TASKS.register("image")
def image_task(ctx: TaskContext) -> dict[str, float]:
    train, test = ctx.trained_indices()
    features, labels = ctx.features["image"], ctx.labels()
    predictions = image_model(ctx).logits({"image": features[test]}).argmax(1)
    ctx.shared.update(image_test_true=labels[test].numpy(), image_test_pred=predictions.numpy())
    baseline = logistic_probe_top1(features[train].numpy(), labels[train].numpy(), features[test].numpy(),
                                   labels[test].numpy(), seed=ctx.seed)
    return {"image_top1": float((predictions == labels[test]).float().mean()), "image_top1_logreg": baseline}
