"""From a dataset's features to filter decisions in one call (what ``fgmm train`` and the audit use).

:func:`build_signals` turns per-modality features (image, the samples' own texts, ...) and an
optional knowledge graph into :class:`~fgmm.filters.FilterSignals`: out-of-fold probabilities per
modality and fused (:func:`fgmm.filters.out_of_fold_probabilities`), with a ``"kg"`` modality
scored by :class:`fgmm.zeroshot.KGPrototypes` on the image features when a graph is given.
:func:`clean_labels` then runs a registered filter::

    result = clean_labels({"image": x_img, "text": x_txt}, labels, num_classes, masks={"text": has_text},
                          filter="crossmodal", graph=class_graph)
    keep, new_labels = result.cleaned(labels)     # train on these
    weights = result.weights()                    # or weight the loss per sample (SelectiveTraining)

:func:`sample_text_features` gives each sample's texts as one pooled MiniLM vector (zeros and a
false mask where a sample has none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fgmm.data.sample import Sample
from fgmm.filters.base import FilterResult, FilterSignals, create_filter
from fgmm.filters.probabilities import (
    MISSING_CLASS_SCORE,
    GramWhitening,
    ScoreModel,
    WhitenedNCM,
    fit_temperatures,
    fold_assignment,
    fused_scores,
    out_of_fold_scores,
)

KG_MODALITY = "kg"


class FittedWhitening:
    """A whitening fitted elsewhere, whose ``fit`` does nothing (shares one fold's whitening between the
    image classifier and the KG prototypes)."""

    def __init__(self, whitening: GramWhitening):
        self.whitening = whitening

    def fit(self, features: Tensor, labels: Tensor) -> FittedWhitening:
        return self

    def __call__(self, features: Tensor) -> Tensor:
        return self.whitening(features)


class KGPrototypeScores:
    """:class:`fgmm.zeroshot.KGPrototypes` behind the :class:`~fgmm.filters.probabilities.ScoreModel`
    interface: cosines of whitened image features to the prototypes regressed from the graph
    (``mean_weight=0``: the graph's class embeddings alone, blended with nothing of the fold's means).

    Args:
        graph: a :class:`fgmm.gnn.ClassGraph`.
        mean_weight, shrinkage: of :class:`~fgmm.zeroshot.KGPrototypes` and its whitening.
        classes: the graph label of each local label when the filter sees a subset of the graph's
            classes (labels ``0..len(classes)-1``); ``None``: labels are graph labels.
        whitening: an already fitted whitening of the same features and labels (reused, not refitted).
    """

    def __init__(self, graph: Any, mean_weight: float = 0.0, shrinkage: float = 1.0,
                 classes: Sequence[int] | None = None, whitening: GramWhitening | None = None):
        self.graph, self.mean_weight, self.shrinkage = graph, mean_weight, shrinkage
        self.classes = None if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
        self.whitening = whitening
        self.model = None

    def fit(self, features: Tensor, labels: Tensor, num_classes: int) -> KGPrototypeScores:
        from fgmm.zeroshot import KGPrototypes

        labels = torch.as_tensor(labels).long()
        global_labels = labels if self.classes is None else self.classes[labels]
        whitening = GramWhitening(shrinkage=self.shrinkage) if self.whitening is None \
            else FittedWhitening(self.whitening)
        self.model = KGPrototypes(self.graph, mean_weight=self.mean_weight, whitening=whitening).fit(
            features, global_labels)
        return self

    def scores(self, features: Tensor) -> Tensor:
        scores = self.model.scores(features)
        return scores if self.classes is None else scores[:, self.classes]


def build_signals(features: Mapping[str, Tensor], labels: Sequence[int] | np.ndarray, num_classes: int, *,
                  masks: Mapping[str, Tensor] | None = None, graph: Any = None,
                  graph_classes: Sequence[int] | None = None,
                  scorers: Mapping[str, Callable[[], ScoreModel]] | None = None, folds: int = 5,
                  seed: int = 0) -> FilterSignals:
    """Out-of-fold signals of every modality (module docstring).

    Args:
        features: ``{modality: [N, d_m]}``; ``"image"`` also becomes ``signals.features``.
        labels: ``[N]`` given labels.
        num_classes: ``C``.
        masks: ``{modality: bool [N]}`` for modalities some samples lack.
        graph: a :class:`fgmm.gnn.ClassGraph`; adds modality ``"kg"`` (KG prototypes on image features).
        graph_classes: the graph label of each label when ``labels`` index a subset of the graph's classes.
        scorers: per-modality model factories (default :class:`WhitenedNCM` with ``trim=0.1``).
        folds, seed: of the cross-fitting (the same folds for every modality).

    ``probabilities`` is the product of experts of all modalities (temperatures fitted jointly),
    ``logits`` its scores before the softmax, ``modality_probabilities`` each modality alone.
    """
    labels = np.asarray(labels, dtype=np.int64)
    masks = {m: torch.as_tensor(v).bool() for m, v in (masks or {}).items()}
    factories: dict[str, Callable[[], ScoreModel]] = {m: (lambda: WhitenedNCM(trim=0.1)) for m in features}
    factories.update(scorers or {})
    assignment = fold_assignment(labels, folds, seed)
    scores: dict[str, Tensor] = {}
    fold_models: dict[str, list[ScoreModel]] = {}
    for name, x in features.items():
        present = masks.get(name, torch.ones(len(labels), dtype=torch.bool))
        scores[name] = torch.full((len(labels), num_classes), MISSING_CLASS_SCORE)
        fold_models[name] = []
        scores[name][present] = out_of_fold_scores(factories[name], torch.as_tensor(x)[present],
                                                   labels[present.numpy()], num_classes,
                                                   assignment=assignment[present.numpy()], models=fold_models[name])
    if graph is not None and "image" in features:
        # the KG prototypes live in each fold's whitened image space: reuse the image classifier's whitening
        shared = iter([getattr(m, "whitening", None) for m in fold_models["image"]] if "image" not in masks
                      else [None] * len(np.unique(assignment)))
        scores[KG_MODALITY] = out_of_fold_scores(
            lambda: KGPrototypeScores(graph, classes=graph_classes, whitening=next(shared)),
            torch.as_tensor(features["image"]), labels, num_classes, assignment=assignment)
    single: dict[str, np.ndarray] = {}
    for name, s in scores.items():
        present = masks.get(name, torch.ones(len(labels), dtype=torch.bool))
        tau = fit_temperatures({name: s[present]}, labels[present.numpy()])[name]
        probabilities = torch.softmax(tau * s, dim=1).double().numpy()
        probabilities[~present.numpy()] = 1.0 / num_classes
        single[name] = probabilities
    temperatures = fit_temperatures(scores, labels, masks)
    logits = fused_scores(scores, temperatures, masks)
    return FilterSignals(labels=labels, num_classes=num_classes,
                         features=torch.as_tensor(features["image"]).float() if "image" in features else None,
                         probabilities=torch.softmax(logits, dim=1).double().numpy(), logits=logits.double().numpy(),
                         modality_probabilities=single, masks=dict(masks))


def clean_labels(features: Mapping[str, Tensor], labels: Sequence[int] | np.ndarray, num_classes: int,
                 filter: str = "crossmodal", *, masks: Mapping[str, Tensor] | None = None, graph: Any = None,
                 graph_classes: Sequence[int] | None = None, folds: int = 5, seed: int = 0,
                 **filter_options: Any) -> FilterResult:
    """Build the signals (:func:`build_signals`) and run the filter ``filter`` on them."""
    signals = build_signals(features, labels, num_classes, masks=masks, graph=graph, graph_classes=graph_classes,
                            folds=folds, seed=seed)
    return create_filter(filter, **filter_options).fit(signals)


def sample_text_features(samples: Sequence[Sample], encoder: Any = None, cache: Any = None
                         ) -> tuple[Tensor, Tensor]:
    """``([N, d], bool [N])``: each sample's texts pooled into one unit vector (the renormalised mean
    of their embeddings), and which samples have any text. ``encoder`` defaults to the offline text
    encoder; ``cache`` is a :class:`fgmm.cache.FeatureCache` reused across runs."""
    from fgmm.encoders import create_encoder
    from fgmm.joint.training import pooled_texts, text_table

    texts, rows = text_table(samples)
    mask = torch.tensor([bool(r) for r in rows])
    encoder = encoder or create_encoder("text")
    if not texts:
        return torch.zeros(len(samples), encoder.dim), mask
    return pooled_texts(encoder.encode_cached(texts, cache), rows), mask
