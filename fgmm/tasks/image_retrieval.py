r"""Image->image retrieval among classes never seen in training: ``img_R@1/2/4/8`` and ``img_mAP``.

Protocol (Song et al., CVPR 2016, the CUB split of every deep-metric-learning paper): the classes are
split in label order, the first half trains (CUB: classes 1-100) and every labelled image of the
second half (101-200) is a query once, searched against all other images of that half (query
excluded, :mod:`fgmm.retrieval.protocol`). The classification holdout (``dataset.split``) plays no
part: all images of a class go to the side of its class. On the developers' CUB bundle (official
*train* images only) that is 2,996 images of classes 1-100 for training and 2,998 of classes 101-200
as queries and gallery, half the usual gallery (the official protocol also has the test images), so
figures are not directly comparable to published ones (a smaller gallery has fewer same-class images
to find: Recall@K tends to be lower, mAP higher). No image of the evaluation classes is used for
training, whitening or choosing hyper-parameters.

A *variant* is a descriptor (:class:`fgmm.retrieval.descriptor.DescriptorConfig`, or the frozen
features as they are) plus a re-ranker (:data:`fgmm.retrieval.rerank.RERANKERS`). The variants of
:data:`DESCRIPTORS` x :data:`RERANKINGS` are compared in ``benchmarks/image_retrieval.py``, which
selects :data:`RECIPE` by Recall@1 on validation splits made of training classes only
(:func:`validation_splits`: train on classes 1-50 and search 51-100, and the other way round).

Keys: ``img_R@K``, ``img_mAP`` (:data:`RECIPE`); ``img_knn_R@K``, ``img_knn_mAP`` (frozen features,
cosine kNN: the baseline, same run).

Test-time views beyond the plain image (the mirror image; GeM, max or SCDA pooling) need the frozen
backbone run again: :func:`multiview_encoder` computes the mirror image with every pooling in one cached
pass (one backbone forward per image), stored under ``ctx.features[MULTIVIEW]``; the task encodes it
through ``ctx.cache`` when the context lacks it and the recipe needs it. The plain image is only
average-pooled (``ctx.features["image"]``), so the other poolings are compared on the mirror image alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.encoders.base import Encoder
from fgmm.errors import DataError
from fgmm.retrieval.descriptor import DescriptorConfig, ImageDescriptor
from fgmm.retrieval.protocol import RECALL_KS, class_split, self_retrieval_metrics
from fgmm.retrieval.rerank import create_reranker
from fgmm.retrieval.views import MultiViewEncoder, concat_part
from fgmm.tasks import TASKS, TaskContext

MULTIVIEW = "image_multiview"
"""``ctx.features`` key of the concatenated view x pooling features of :func:`multiview_encoder`."""
CACHED_VIEWS, CACHED_POOLINGS = ("identity", "hflip"), ("avg", "gem", "max", "scda")


def multiview_encoder(base: Encoder) -> MultiViewEncoder:
    """Every view and pooling the variants use, side by side (``combine="concat"``), from ``base``."""
    return MultiViewEncoder(base, views=CACHED_VIEWS, poolings=CACHED_POOLINGS, combine="concat")


class ViewFeatures:
    """Raw descriptor inputs of a context's images for any views and pooling.

    Args:
        plain: ``[N, C]`` features of the plain image, average pooled (``ctx.features["image"]``).
        multiview: ``[N, 8C]`` features of :func:`multiview_encoder`, or ``None``.
    """

    def __init__(self, plain: torch.Tensor, multiview: torch.Tensor | None = None):
        self.plain = plain
        self.multiview = multiview

    def get(self, views: Sequence[str], pooling: str) -> torch.Tensor:
        """The mean over ``views`` of the ``pooling`` features (what :class:`ImageDescriptor` reads)."""
        if list(views) == ["identity"] and pooling == "avg":
            return self.plain
        return torch.stack([self.single(view, pooling) for view in views]).mean(0)

    def single(self, view: str, pooling: str) -> torch.Tensor:
        if view == "identity" and pooling == "avg":
            return self.plain
        if self.multiview is None:
            raise DataError(None, f"the {view} view with {pooling} pooling needs the multi-view features "
                                  f"(ctx.features['{MULTIVIEW}'])")
        return concat_part(self.multiview, CACHED_VIEWS, CACHED_POOLINGS, view, pooling)


@dataclass
class Variant:
    """One row of the comparison: a descriptor (``None``: the frozen features as they are) and a re-ranker.

    Attributes:
        descriptor: name in :data:`DESCRIPTORS`.
        rerank: name in :data:`RERANKINGS`.
    """

    descriptor: str
    rerank: str = "none"

    @property
    def name(self) -> str:
        return self.descriptor if self.rerank == "none" else f"{self.descriptor} + {self.rerank}"


@dataclass
class DescriptorSpec:
    """A descriptor of the comparison.

    Attributes:
        config: the :class:`DescriptorConfig`, or ``None`` for the frozen features unchanged.
        flip_augment: train the metric head also on the flipped view alone (augmentation).
        about: one line for the README table.
    """

    config: DescriptorConfig | None
    flip_augment: bool = False
    about: str = ""


_HEAD_TRAIN = {"epochs": 10, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine",
               "warmup_steps": 20, "amp": "off", "log_every_steps": 10_000}
"""Metric heads overfit the training classes quickly: on the validation folds a free 512-d linear head
trained 10-40 epochs lost 2-9 points of Recall@1 against the whitened features it started from, a
residual head (starting at the identity) kept them; hence residual heads, 10 epochs."""


def _head(loss: str, **options: Any) -> dict[str, Any]:
    return {"dim": 1280, "hidden": 0, "dropout": 0.0, "loss": loss, "loss_options": options, "residual": True}


def _with_head(loss: str, about: str) -> DescriptorSpec:
    config = DescriptorConfig(views=["identity", "hflip"], whitening=True, head=_head(loss), train=_HEAD_TRAIN)
    return DescriptorSpec(config, flip_augment=True, about=about)


def _mirror(pooling: str) -> DescriptorSpec:
    return DescriptorSpec(DescriptorConfig(views=["hflip"], pooling=pooling, whitening=True),
                          about=f"the mirror image alone, {pooling} pooling, whitened (compares poolings)")


DESCRIPTORS: dict[str, DescriptorSpec] = {
    "knn": DescriptorSpec(None, about="frozen Lite2 features (average pooled), cosine kNN"),
    "whiten": DescriptorSpec(DescriptorConfig(whitening=True), about="whitening learned on the training classes"),
    "flip+whiten": DescriptorSpec(DescriptorConfig(views=["identity", "hflip"], whitening=True),
                                  about="the image and its mirror image averaged, whitened"),
    **{f"mirror-{pooling}+whiten": _mirror(pooling) for pooling in CACHED_POOLINGS},
    "flip+whiten+proxy_anchor": _with_head("proxy_anchor", "+ residual linear head trained with Proxy-Anchor"),
    "flip+whiten+multi_similarity": _with_head("multi_similarity", "+ residual head, Multi-Similarity loss + miner"),
    "flip+whiten+supcon": _with_head("supcon", "+ residual head, supervised contrastive loss"),
    "flip+whiten+normalized_softmax": _with_head("normalized_softmax", "+ residual head, normalised softmax"),
}
"""The descriptors compared (settings chosen on the validation folds, see benchmarks/README.md)."""

RERANKINGS: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "aqe": {"name": "aqe", "k": 3, "alpha": 1.0},
    "dba": {"name": "dba", "k": 5, "alpha": 3.0},
    "kreciprocal": {"name": "kreciprocal", "k1": 20, "k2": 6, "lambda_": 0.5},
}
"""The re-rankers compared; k, alpha, k1, k2 and lambda chosen on the validation folds with whitened features."""

RECIPE = Variant("mirror-gem+whiten", "kreciprocal")
"""The variant ``benchmarks/image_retrieval.py`` selected by Recall@1 on the validation split."""
ZOOM_RECIPE = Variant("whiten", "kreciprocal")
"""The same on object-zoom features (``benchmarks/image_retrieval.py --zoom``), whose encoder already averages
the object's mirror views: the recipe of contexts whose image encoder has ``zoom`` on."""
BASELINE = Variant("knn", "none")


def needs_multiview(variants: Sequence[Variant]) -> bool:
    """Whether any of ``variants`` reads more than the plain average-pooled image."""
    for variant in variants:
        config = DESCRIPTORS[variant.descriptor].config
        if config is not None and (config.views != ["identity"] or config.pooling != "avg"):
            return True
    return False


def fit_descriptor(features: ViewFeatures, labels: torch.Tensor, train: np.ndarray, descriptor: str, seed: int = 0,
                   device: str = "cpu") -> ImageDescriptor | None:
    """The descriptor ``descriptor`` of :data:`DESCRIPTORS` fitted on the training images (``None`` for the
    frozen features unchanged)."""
    spec = DESCRIPTORS[descriptor]
    if spec.config is None:
        return None
    config = spec.config
    extra = None
    if spec.flip_augment and config.head is not None:
        extra = [features.single(view, config.pooling)[train] for view in config.views]
    raw = features.get(config.views, config.pooling)[train]
    return ImageDescriptor(config).fit(raw, labels[train], extra_views=extra, device=device, seed=seed)


def describe(features: ViewFeatures, labels: torch.Tensor, train: np.ndarray, evaluation: np.ndarray,
             descriptor: str, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """``[len(evaluation), d]`` unit descriptors of the evaluation images, fitted on the training images."""
    fitted = fit_descriptor(features, labels, train, descriptor, seed, device)
    if fitted is None:
        return F.normalize(features.plain[evaluation].float(), dim=1)
    config = DESCRIPTORS[descriptor].config
    return fitted(features.get(config.views, config.pooling)[evaluation])


def rerank_metrics(z: torch.Tensor, labels: torch.Tensor, rerank: str) -> dict[str, float]:
    """Protocol metrics of descriptors ``z`` (each a query against all others) under re-ranker ``rerank``."""
    options = dict(RERANKINGS[rerank])
    scores = create_reranker(options.pop("name"), **options)(z, z, torch.arange(len(z)))
    return self_retrieval_metrics(scores, labels, RECALL_KS)


def evaluate_variants(features: ViewFeatures, labels: torch.Tensor, train: np.ndarray, evaluation: np.ndarray,
                      variants: Sequence[Variant], seed: int = 0, device: str = "cpu") -> dict[str, dict[str, float]]:
    """``{variant name: {"R@1": ..., "mAP": ...}}``; each descriptor is fitted once for all its re-rankers."""
    results: dict[str, dict[str, float]] = {}
    for descriptor in dict.fromkeys(v.descriptor for v in variants):
        z = describe(features, labels, train, evaluation, descriptor, seed, device)
        for variant in (v for v in variants if v.descriptor == descriptor):
            results[variant.name] = rerank_metrics(z, labels[evaluation], variant.rerank)
    return results


@dataclass
class RetrievalSplit:
    """Dataset indices of the training images and of the evaluation (query = gallery) images."""

    train: np.ndarray
    evaluation: np.ndarray
    train_classes: list[int] = field(default_factory=list)
    evaluation_classes: list[int] = field(default_factory=list)


def _split(labels: torch.Tensor, train_classes: list[int], evaluation_classes: list[int]) -> RetrievalSplit:
    values = torch.as_tensor(labels).numpy()
    return RetrievalSplit(train=np.flatnonzero(np.isin(values, train_classes)),
                          evaluation=np.flatnonzero(np.isin(values, evaluation_classes)),
                          train_classes=train_classes, evaluation_classes=evaluation_classes)


def retrieval_split(labels: torch.Tensor) -> RetrievalSplit:
    """The protocol's split: the first half of the labelled classes trains, the second half is searched."""
    labels = torch.as_tensor(labels)
    return _split(labels, *class_split(labels[labels >= 0].numpy()))


def validation_splits(labels: torch.Tensor) -> list[RetrievalSplit]:
    """Two folds made of the *training* classes only: their first half trains and their second half is
    searched, then the other way round (CUB: 1-50 / 51-100 and 51-100 / 1-50).

    Half/half rather than 80/20: with 20 searched classes Recall@1 is ~92% for every variant on CUB
    and the differences drown in noise; 50 classes are closer to the 100 of the protocol."""
    first, second = class_split(retrieval_split(labels).train_classes)
    return [_split(labels, first, second), _split(labels, second, first)]


def context_view_features(ctx: TaskContext, variants: Sequence[Variant]) -> ViewFeatures:
    """:class:`ViewFeatures` of the context, encoding the multi-view features through ``ctx.cache`` when
    ``variants`` need them and the context lacks them."""
    plain = ctx.features["image"]
    if MULTIVIEW not in ctx.features and needs_multiview(variants):
        ctx.features[MULTIVIEW] = encode_multiview(ctx, plain)
    return ViewFeatures(plain, ctx.features.get(MULTIVIEW))


def encode_multiview(ctx: TaskContext, plain: torch.Tensor, vision: str = "efficientnet_lite2") -> torch.Tensor:
    """The context's images through :func:`multiview_encoder` of ``vision`` (cached), after checking on the
    first image that ``plain`` are that encoder's features (same backbone and preprocessing)."""
    from fgmm.cache import FeatureCache
    from fgmm.encoders import create_encoder
    from fgmm.pipeline import default_cache_dir

    if any(sample.image is None for sample in ctx.dataset):
        raise DataError(ctx.dataset.root, "multi-view descriptors need an image for every sample")
    base = create_encoder("vision", vision)
    cache = ctx.cache or FeatureCache(default_cache_dir())
    paths = [sample.image for sample in ctx.dataset]
    first = cache.encode_images(base, paths[:1], progress=False).features
    if first.shape != plain[:1].shape or not torch.allclose(first, plain[:1], rtol=1e-3, atol=1e-4):
        raise DataError(paths[0], f"the context's image features are not those of '{vision}': multi-view "
                                  "descriptors would mix two backbones")
    return cache.encode_images(multiview_encoder(base), paths).features


@TASKS.register("image_retrieval")
def image_retrieval_task(ctx: TaskContext) -> dict[str, float]:
    split = retrieval_split(ctx.labels())
    recipe = ZOOM_RECIPE if ctx.encoder_options.get("image", {}).get("zoom") else RECIPE
    features = context_view_features(ctx, [recipe])
    results = evaluate_variants(features, ctx.labels(), split.train, split.evaluation, [BASELINE, recipe],
                                seed=ctx.seed, device=ctx.device)
    metrics = {f"img_{k}": v for k, v in results[recipe.name].items()}
    metrics.update({f"img_knn_{k}": v for k, v in results[BASELINE.name].items()})
    return metrics
