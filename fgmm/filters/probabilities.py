r"""Out-of-sample class probabilities: the signal confident learning and cross-modal agreement read.

A filter must judge each label with a model that never saw it, or the model's memory of the wrong
label hides the error. :func:`out_of_fold_scores` runs ``K``-fold cross-fitting: every sample is
scored by a model fitted on the other folds. The default model is the one model of fgmm,
:class:`fgmm.FGModel`, with preset ``"image"`` (:class:`ModelScores`): nearest class mean in the
within-class whitened space, closed form (seconds on 5k x 1280 features) and the model behind the
``image`` task's ``image_top1``. Its single modality is renamed to the one it scores, so the same
preset scores the samples' texts; preset ``"image-kg"`` with ``mean_weight=0`` scores the classes by
the knowledge-graph prototypes of its ``"kg"`` class source. Any object with ``fit(features, labels,
num_classes)`` and ``scores(features) -> [N, C]`` works.

Scores of several modalities (image, text, KG prototypes) become one calibrated distribution with
per-modality temperatures fitted by maximum likelihood (:func:`fit_temperatures`):

.. math::
    \log p(c \mid \mathbf{x}) = \sum_m \tau_m\, s_m(\mathbf{x}, c)
    - \log \sum_{c'} \exp \sum_m \tau_m\, s_m(\mathbf{x}, c')

(a product of experts; a modality absent for a sample contributes nothing there).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fgmm.errors import ConfigError

MISSING_CLASS_SCORE = -1.0
"""Score of a class with no training sample in a fold (the lowest possible cosine)."""


class ScoreModel(Protocol):
    """What :func:`out_of_fold_scores` needs of a model."""

    def fit(self, features: Tensor, labels: Tensor, num_classes: int) -> ScoreModel: ...

    def scores(self, features: Tensor) -> Tensor:
        """``[N, C]`` class scores (cosines for the built-in models)."""


def fit_model(features: Tensor, labels: Sequence[int] | Tensor, num_classes: int, model: str | dict[str, Any] = "image",
              modality: str = "image", *, kg: Any = None, seed: int = 0, **overrides: Any):
    """An :class:`fgmm.FGModel` of one modality fitted on ``[N, d]`` ``features`` and their ``labels``.

    Args:
        model: a preset name or config dict of :func:`fgmm.create_model` with a single modality, which is
            renamed to ``modality`` (its ``input_dim`` is set from ``features``: no encoder is loaded).
        num_classes: classes of the model (named ``"0"``, ``"1"``, ...).
        kg: the graph of the ``"kg"`` / ``"gnn"`` class sources.
        seed: of the model's weights.
        **overrides: merged into the preset (e.g. ``class_embeddings={"options": {"mean_weight": 0.0}}``).
    """
    from fgmm.space import ModalityTable, create_model, model_config

    features = torch.as_tensor(features).float()
    config = model_config(model, **overrides)
    if len(config.modalities) != 1:
        raise ConfigError(f"a filter's scoring model has one modality, got {sorted(config.modalities)}")
    spec = next(iter(config.modalities.values()))
    spec.input_dim = int(features.shape[1])
    config.modalities = {modality: spec}
    fitted = create_model(config, classes=[str(c) for c in range(num_classes)], kg=kg, seed=seed)
    fitted.fit_features({modality: ModalityTable.one_per_sample(features)}, torch.as_tensor(labels).long())
    return fitted


@torch.no_grad()
def class_cosines(model, modality: str, features: Tensor) -> Tensor:
    r"""``[N, C]`` :math:`\cos(\mathbf{z}_m(\mathbf{x}), \mathbf{w}_c)` of an :class:`fgmm.FGModel`: the joint
    embedding of ``features`` against the class embeddings of its class source (classes it cannot
    name: :data:`MISSING_CLASS_SCORE`)."""
    model.eval()
    cosines = model.embed(modality, torch.as_tensor(features).float()) @ model.class_embeddings().T
    cosines[:, ~model.available_classes()] = MISSING_CLASS_SCORE
    return cosines


def trimmed(own: Tensor, labels: Tensor, share: float) -> Tensor:
    """``bool [N]``: all samples but the ``share`` of each class with the lowest score ``own`` for their
    label (a class keeps at least two samples)."""
    keep = torch.ones(len(labels), dtype=torch.bool)
    for c in labels.unique():
        members = torch.nonzero(labels == c).squeeze(1)
        drop = int(share * len(members))
        if drop and len(members) - drop >= 2:
            keep[members[own[members].argsort()[:drop]]] = False
    return keep


class ModelScores:
    r"""An :class:`fgmm.FGModel` behind the :class:`ScoreModel` interface: cosines of the samples' joint
    embeddings to the model's class embeddings (:func:`class_cosines`).

    With the default preset ``"image"`` this is the nearest class mean in the within-class whitened space:

    .. math:: s_c(\mathbf{x}) = \cos\big(\mathbf{z}(\mathbf{x}), \mathbf{m}_c\big), \qquad
              \mathbf{m}_c = \frac{1}{|I_c|} \sum_{i \in I_c} \mathbf{z}_i

    Args:
        model: preset name or config dict (one modality; see :func:`fit_model`).
        modality: the modality the features are.
        trim: fraction of each class' samples with the lowest score for their own label left out of a
            second fit (0: one fit). Mislabelled samples lie far from the mean of their given class, so
            trimming keeps them from inflating the within-class covariance and pulling the means.
        kg: the class graph of a ``"kg"`` / ``"gnn"`` source.
        classes: the graph label of each local label when the labels index a subset of the graph's
            classes (labels ``0..len(classes)-1``); ``None``: labels are the model's labels.
        seed: of the model's weights.
        **overrides: merged into the preset.
    """

    def __init__(self, model: str | dict[str, Any] = "image", modality: str = "image", trim: float = 0.0,
                 kg: Any = None, classes: Sequence[int] | None = None, seed: int = 0, **overrides: Any):
        self.preset, self.modality, self.trim = model, modality, trim
        self.kg, self.seed, self.overrides = kg, seed, overrides
        self.classes = None if classes is None else torch.as_tensor(list(classes), dtype=torch.long)
        self.model = None

    def _fit(self, features: Tensor, labels: Tensor, num_classes: int) -> None:
        total = num_classes if self.classes is None else int(getattr(self.kg, "num_labels", self.classes.max() + 1))
        targets = labels if self.classes is None else self.classes[labels]
        self.model = fit_model(features, targets, total, self.preset, self.modality, kg=self.kg, seed=self.seed,
                               **self.overrides)

    def fit(self, features: Tensor, labels: Tensor, num_classes: int) -> ModelScores:
        features, labels = torch.as_tensor(features).float(), torch.as_tensor(labels).long()
        self._fit(features, labels, num_classes)
        if self.trim > 0:
            own = self.scores(features)[torch.arange(len(labels)), labels]
            keep = trimmed(own, labels, self.trim)
            self._fit(features[keep], labels[keep], num_classes)
        return self

    def scores(self, features: Tensor) -> Tensor:
        if self.model is None:
            raise RuntimeError("ModelScores is used before fit()")
        cosines = class_cosines(self.model, self.modality, features)
        return cosines if self.classes is None else cosines[:, self.classes]


def fold_assignment(labels: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """``[N]`` fold index of every sample, stratified by label (classes smaller than ``folds`` spread
    over as many folds as they have samples)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    assignment = np.zeros(len(labels), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            assignment[held_out] = fold
    return assignment


def out_of_fold_scores(make_model: Callable[[], ScoreModel], features: Tensor, labels: np.ndarray,
                       num_classes: int, folds: int = 5, seed: int = 0, assignment: np.ndarray | None = None,
                       models: list[ScoreModel] | None = None) -> Tensor:
    """``[N, C]`` scores of every sample by a model fitted on the other folds (cross-fitting).

    Pass the same ``assignment`` (:func:`fold_assignment`) to several calls so that every modality is
    scored with the same folds; ``models`` (a list) collects the fitted model of each fold, in fold order.
    """
    labels = np.asarray(labels, dtype=np.int64)
    features = torch.as_tensor(features).float()
    assignment = fold_assignment(labels, folds, seed) if assignment is None else assignment
    out = torch.empty(len(labels), num_classes)
    for fold in np.unique(assignment):
        fit, held_out = assignment != fold, assignment == fold
        model = make_model().fit(features[torch.from_numpy(fit)], torch.from_numpy(labels[fit]), num_classes)
        out[torch.from_numpy(held_out)] = model.scores(features[torch.from_numpy(held_out)]).float()
        if models is not None:
            models.append(model)
    return out


def fused_scores(scores: Mapping[str, Tensor], temperatures: Mapping[str, float],
                 masks: Mapping[str, Tensor] | None = None) -> Tensor:
    """``[N, C]`` logits ``sum_m tau_m * s_m`` of the product of experts (absent modalities add nothing)."""
    masks = masks or {}
    total = None
    for name, s in scores.items():
        term = temperatures[name] * s.float()
        if name in masks:
            term = term * masks[name].float().unsqueeze(1)
        total = term if total is None else total + term
    if total is None:
        raise ValueError("no scores to fuse")
    return total


def fused_log_probabilities(scores: Mapping[str, Tensor], temperatures: Mapping[str, float],
                            masks: Mapping[str, Tensor] | None = None) -> Tensor:
    """``[N, C]`` log-probabilities of the product of experts (module docstring)."""
    return torch.log_softmax(fused_scores(scores, temperatures, masks), dim=1)


def fit_temperatures(scores: Mapping[str, Tensor], labels: Sequence[int] | np.ndarray,
                     masks: Mapping[str, Tensor] | None = None, init: float = 10.0,
                     steps: int = 100) -> dict[str, float]:
    r"""Per-modality temperatures :math:`\tau_m` maximising the likelihood of ``labels`` (L-BFGS).

    Fit them on out-of-fold scores: in-sample scores are over-confident. With noisy labels the
    optimum is slightly softer than with clean ones, which only makes the probabilities cautious.
    """
    names = list(scores)
    target = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    log_tau = torch.full((len(names),), float(np.log(init)), requires_grad=True)
    optimizer = torch.optim.LBFGS([log_tau], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimizer.zero_grad()
        temperatures = dict(zip(names, log_tau.exp(), strict=True))
        loss = F.nll_loss(fused_log_probabilities(scores, temperatures, masks), target)
        loss.backward()
        return loss

    optimizer.step(closure)
    return {name: float(t) for name, t in zip(names, log_tau.detach().exp(), strict=True)}
