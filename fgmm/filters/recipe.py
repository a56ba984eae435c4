"""From a dataset's features to filter decisions, and to a model trained on the cleaned labels, in one call.

:func:`build_signals` turns per-modality features (image, the samples' own texts, ...) and an
optional knowledge graph into :class:`~fgmm.filters.FilterSignals`: out-of-fold scores of an
:class:`fgmm.FGModel` per modality (:class:`~fgmm.filters.probabilities.ModelScores`), with a ``"kg"``
modality scored by the knowledge-graph prototypes of the model's ``"kg"`` class source on the image
features when a graph is given. :func:`clean_labels` then runs a registered filter::

    result = clean_labels({"image": x_img, "text": x_txt}, labels, num_classes, masks={"text": has_text},
                          filter="crossmodal", graph=class_graph)
    keep, new_labels = result.cleaned(labels)     # train on these
    weights = result.weights()                    # or weight the loss per sample (SelectiveTraining)

:func:`fit_filtered` does it all for an :class:`fgmm.FGModel`: it encodes the training samples with
the model's encoders, filters their labels with the model's own modalities (and its knowledge graph),
and fits the model on the cleaned labels::

    model = fgmm.create_model("image-text", dataset=train_set)
    run = fit_filtered(model, train_set, "crossmodal", cache=fgmm.FeatureCache(".fgmm-cache"))
    run.filter.counts()                           # {"keep": ..., "drop": ..., "relabel": ...}

:func:`sample_text_features` gives each sample's texts as one pooled vector of the text encoder
(zeros and a false mask where a sample has none).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fgmm.data.sample import Sample
from fgmm.errors import DataError
from fgmm.filters.base import FilterResult, FilterSignals, create_filter
from fgmm.filters.probabilities import (
    MISSING_CLASS_SCORE,
    ModelScores,
    ScoreModel,
    fit_temperatures,
    fold_assignment,
    fused_scores,
    out_of_fold_scores,
)

KG_MODALITY = "kg"
SCORE_TRIM = 0.1
"""Share of each class trimmed from the second fit of the per-modality scoring models."""


def kg_scores(graph: Any, classes: Sequence[int] | None = None, seed: int = 0) -> ModelScores:
    """Scores of image features against the knowledge-graph class prototypes alone: preset ``"image-kg"``
    with ``mean_weight=0`` (nothing of the fold's class means blended in), no calibration offset."""
    return ModelScores("image-kg", "image", kg=graph, classes=classes, seed=seed,
                       class_embeddings={"options": {"mean_weight": 0.0}, "calibrate": False})


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
        graph: a :class:`fgmm.gnn.ClassGraph` (or what :func:`fgmm.space.class_graph` takes); adds modality
            ``"kg"``: image features scored against the KG prototypes (:func:`kg_scores`).
        graph_classes: the graph label of each label when ``labels`` index a subset of the graph's classes.
        scorers: per-modality model factories (default :class:`~fgmm.filters.probabilities.ModelScores`:
            the FGModel preset ``"image"`` with ``trim=0.1``).
        folds, seed: of the cross-fitting (the same folds for every modality).

    ``probabilities`` is the product of experts of all modalities (temperatures fitted jointly),
    ``logits`` its scores before the softmax, ``modality_probabilities`` each modality alone.
    """
    labels = np.asarray(labels, dtype=np.int64)
    masks = {m: torch.as_tensor(v).bool() for m, v in (masks or {}).items()}
    factories: dict[str, Callable[[], ScoreModel]] = {
        m: (lambda m=m: ModelScores(modality=m, trim=SCORE_TRIM, seed=seed)) for m in features}
    factories.update(scorers or {})
    if graph is not None and "image" in features:
        factories[KG_MODALITY] = lambda: kg_scores(graph, graph_classes, seed)
        features = {**features, KG_MODALITY: features["image"]}
        if "image" in masks:
            masks[KG_MODALITY] = masks["image"]
    assignment = fold_assignment(labels, folds, seed)
    scores: dict[str, Tensor] = {}
    for name, x in features.items():
        present = masks.get(name, torch.ones(len(labels), dtype=torch.bool))
        scores[name] = torch.full((len(labels), num_classes), MISSING_CLASS_SCORE)
        scores[name][present] = out_of_fold_scores(factories[name], torch.as_tensor(x)[present],
                                                   labels[present.numpy()], num_classes,
                                                   assignment=assignment[present.numpy()])
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
    of their embeddings, as :class:`fgmm.FGModel` pools them), and which samples have any text.
    ``encoder`` defaults to the offline text encoder; ``cache`` is a :class:`fgmm.cache.FeatureCache`."""
    from fgmm.encoders import create_encoder
    from fgmm.space.features import featurize

    table = featurize("text", encoder or create_encoder("text"), samples, cache)
    return table.pooled(), table.present


@dataclass
class LabelJudgement:
    """What :func:`judge_labels` decided about a model's training samples.

    Attributes:
        filter: the filter's decisions on the labelled training samples (``positions`` order).
        positions: positions (in the training data) of the labelled samples the filter judged.
        keep: positions of the samples to fit on (relabelled ones included; unlabelled ones kept as they are).
        labels: the labels to fit with, aligned with ``keep``.
        tables: the model's feature tables of all the training samples (encoded once).
    """

    filter: FilterResult
    positions: np.ndarray
    keep: np.ndarray
    labels: np.ndarray
    tables: dict[str, Any]

    def samples(self, data: Sequence[Sample]) -> list[Sample]:
        """The kept samples of ``data`` (the judged training data), with their cleaned labels."""
        return [dataclasses.replace(data[i], label=int(y)) for i, y in zip(self.keep, self.labels, strict=True)]

    def summary(self) -> dict[str, int]:
        """How many labelled samples were judged, and kept / relabelled / dropped."""
        return {"judged": len(self.positions), **self.filter.counts()}


@dataclass
class FilteredFit:
    """What :func:`fit_filtered` did: the fit and the :class:`LabelJudgement` it was fitted on.

    Attributes:
        fit: the model's :class:`~fgmm.space.FitResult` on the cleaned labels.
        filter, positions, keep, labels: as in :class:`LabelJudgement`.
    """

    fit: Any
    filter: FilterResult
    positions: np.ndarray
    keep: np.ndarray
    labels: np.ndarray


def judge_labels(model, data: Sequence[Sample], filter: str = "crossmodal", *, cache: Any = None, folds: int = 5,
                 seed: int = 0, progress: bool = False, skip_bad: bool = False,
                 **filter_options: Any) -> LabelJudgement:
    """Which training labels of ``data`` to keep, drop or fix, judged with the modalities of ``model``.

    The samples are encoded once with the model's encoders (through ``cache``); :func:`clean_labels`
    judges every labelled sample with out-of-fold scores of each modality the model has (and of its
    knowledge graph, when its class source has one) and runs ``filter`` (a name of
    :data:`fgmm.filters.FILTERS` that reads out-of-fold probabilities: ``crossmodal``, ``confident``,
    ``cleanlab``, ``openset``) with ``filter_options``; ``folds``, ``seed``: of the cross-fitting.
    """
    samples = list(data)
    tables = model.featurize(samples, cache, progress=progress, skip_bad=skip_bad)
    labels = np.array([s.label for s in samples], dtype=np.int64)
    positions = np.flatnonzero(labels >= 0)
    if len(positions) < 2 * folds:
        raise DataError(None, f"too few labelled samples to filter ({len(positions)}; need {2 * folds})")
    judged = {m: t.subset(positions.tolist()) for m, t in tables.items()}
    graph = model.graph if getattr(model.class_source, "needs_graph", False) else None
    result = clean_labels({m: t.pooled() for m, t in judged.items()}, labels[positions], model.num_classes, filter,
                          masks={m: t.present for m, t in judged.items() if not bool(t.present.all())}, graph=graph,
                          folds=folds, seed=seed, **filter_options)
    kept, new = result.cleaned(labels[positions])
    keep = np.sort(np.concatenate([positions[kept], np.flatnonzero(labels < 0)]))
    final = labels.copy()
    final[positions[kept]] = new
    return LabelJudgement(result, positions, keep, final[keep], tables)


def fit_filtered(model, data: Sequence[Sample], filter: str = "crossmodal", *, cache: Any = None,
                 train: Any = None, val: Sequence[Sample] | None = None, folds: int = 5, seed: int = 0,
                 progress: bool = False, skip_bad: bool = False, **filter_options: Any) -> FilteredFit:
    """Train an :class:`fgmm.FGModel` on noisy labels through a filter, in one call.

    1. :func:`judge_labels` encodes the training samples once and decides keep / drop / relabel.
    2. The model is fitted (:meth:`~fgmm.FGModel.fit_features`, or :meth:`~fgmm.FGModel.fit` when an encoder
       trains end to end) on the kept samples, relabelled ones with their new label; samples without a
       label are left as they are.

    Args:
        model: the untrained :class:`fgmm.FGModel`.
        data: the labelled training samples (a :class:`~fgmm.data.MultiModalDataset` or a list).
        filter, folds, seed, **filter_options: as for :func:`judge_labels`.
        cache, train, val, progress, skip_bad: as for :meth:`fgmm.FGModel.fit`.
    """
    samples = list(data)
    judgement = judge_labels(model, samples, filter, cache=cache, folds=folds, seed=seed, progress=progress,
                             skip_bad=skip_bad, **filter_options)
    if model.towers:
        fitted = model.fit(judgement.samples(samples), cache=cache, train=train, val=val, progress=progress,
                           skip_bad=skip_bad)
    else:
        validation = None if val is None else (model.featurize(list(val), cache, skip_bad=skip_bad),
                                               [s.label for s in val])
        fitted = model.fit_features({m: t.subset(judgement.keep.tolist()) for m, t in judgement.tables.items()},
                                    judgement.labels.tolist(), train=train, val=validation)
    return FilteredFit(fitted, judgement.filter, judgement.positions, judgement.keep, judgement.labels)
