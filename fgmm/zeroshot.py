"""Knowledge-graph classifiers: supervised, zero-shot (ZSL) and generalised zero-shot (GZSL).

A :class:`KGClassifier` scores an image against every class of a knowledge graph by the cosine of
its projected features and the class embeddings a GNN propagates from the graph
(:class:`fgmm.gnn.ClassEmbeddingNetwork`). Train it on the images of the seen classes only
(:func:`fit_classifier` with ``classes=seen``); classes without images get their weights from the
graph, so the same model classifies them::

    net = ClassEmbeddingNetwork(ClassGraph.from_hetero(kg.to_pyg()), out_dim=512)
    model = KGClassifier(in_dim=1280, class_net=net)
    fit_classifier(model, features[train], labels[train], classes=seen)
    scores = model(features[test])                       # [N, num_labels], all classes
    zsl = mean_class_accuracy(scores[:, unseen].argmax(1), ...)  # see zsl_accuracy

GZSL scores all classes at once; seen classes dominate, which calibrated stacking (Chao et al.,
2016) corrects by subtracting :math:`\\gamma` from every seen-class score, with :math:`\\gamma`
chosen on seen classes only (:func:`choose_gamma`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.errors import ConfigError
from fgmm.gnn.propagation import ClassEmbeddingNetwork


class KGClassifier(nn.Module):
    r"""Cosine classifier whose class weights come from GNN propagation over a knowledge graph.

    .. math::
        \mathbf{z} &= \mathbf{P}\,\mathrm{Dropout}(\mathbf{x}), \qquad
        \mathbf{w}_c = \mathrm{GNN}(\mathcal{G})_c + \mathbf{u}_c

        s_c(\mathbf{x}) &= \tau \cos(\mathbf{z}, \mathbf{w}_c)

    :math:`\mathbf{P}` projects image features into the joint space (identity when
    ``projection=False``: the GNN then predicts class prototypes in the image feature space),
    :math:`\mathbf{u}_c` are optional free per-class weights (zero for classes never trained on,
    so unseen classes rely on the graph alone) and :math:`\tau` a learned temperature.

    Args:
        in_dim: width of the image features.
        class_net: the network giving the class embeddings :math:`\mathrm{GNN}(\mathcal{G})`.
        projection: learn :math:`\mathbf{P}` (else ``in_dim`` must equal the class embedding width).
        free_weights: add the free per-class weights :math:`\mathbf{u}_c`.
        input_dropout: dropout on the image features.
        scale: initial temperature :math:`\tau`.
    """

    def __init__(self, in_dim: int, class_net: ClassEmbeddingNetwork, projection: bool = True,
                 free_weights: bool = False, input_dropout: float = 0.2, scale: float = 16.0):
        super().__init__()
        dim = class_net.readout.out_features
        if not projection and dim != in_dim:
            raise ConfigError(f"without a projection the class embeddings ({dim}-d) must have the image "
                              f"feature width ({in_dim})")
        self.class_net = class_net
        self.projection = nn.Sequential(nn.Dropout(input_dropout),
                                        nn.Linear(in_dim, dim) if projection else nn.Identity())
        self.free = nn.Parameter(torch.zeros(class_net.num_labels, dim)) if free_weights else None
        self.log_scale = nn.Parameter(torch.tensor(math.log(scale)))

    def class_embeddings(self) -> Tensor:
        """``[num_labels, dim]`` unit-norm class weights."""
        weights = self.class_net()
        if self.free is not None:
            weights = weights + self.free
        return F.normalize(weights, dim=-1)

    def image_embeddings(self, features: Tensor) -> Tensor:
        """``[B, dim]`` unit-norm image embeddings in the joint space."""
        return F.normalize(self.projection(features), dim=-1)

    def forward(self, features: Tensor, class_weights: Tensor | None = None) -> Tensor:
        """``[B, num_labels]`` scores (pass ``class_weights`` to reuse one propagation)."""
        weights = self.class_embeddings() if class_weights is None else class_weights
        return self.log_scale.exp() * self.image_embeddings(features) @ weights.T


@dataclass
class FitConfig:
    """How :func:`fit_classifier` trains.

    Attributes:
        epochs: passes over the training features.
        batch_size: images per step (the graph is propagated once per step).
        lr: AdamW learning rate (cosine-decayed to zero).
        weight_decay: AdamW weight decay.
        label_smoothing: of the cross-entropy.
        seed: seeds initialisation-independent randomness (data order, dropout).
    """

    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.1
    seed: int = 0


def fit_classifier(model: KGClassifier, features: Tensor, labels: Tensor, classes: Sequence[int] | None = None,
                   config: FitConfig | None = None) -> KGClassifier:
    """Train ``model`` by cross-entropy over ``classes`` (default: all labels) on ``features``.

    Only the scores of ``classes`` enter the softmax, so classes outside it (unseen classes) are
    neither pushed down nor trained on; their embeddings still change through the shared GNN.
    Every label in ``labels`` must be in ``classes``.
    """
    config = config or FitConfig()
    device = next(model.parameters()).device
    features, labels = features.to(device).float(), labels.to(device).long()
    class_ids = torch.arange(model.class_net.num_labels, device=device) if classes is None \
        else torch.as_tensor(list(classes), device=device).long()
    position = torch.full((model.class_net.num_labels,), -1, dtype=torch.long, device=device)
    position[class_ids] = torch.arange(class_ids.numel(), device=device)
    targets = position[labels]
    if (targets < 0).any():
        raise ValueError("fit_classifier: some training labels are not among `classes`")
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(features) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, pct_start=0.1,
                                                    total_steps=config.epochs * steps_per_epoch)
    model.train()
    for _ in range(config.epochs):
        order = torch.randperm(len(features), generator=generator).to(device)
        for start in range(0, len(features), config.batch_size):
            batch = order[start:start + config.batch_size]
            weights = model.class_embeddings()[class_ids]
            loss = F.cross_entropy(model(features[batch], weights), targets[batch],
                                   label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    model.eval()
    return model


@torch.no_grad()
def predict_scores(model: KGClassifier, features: Tensor, batch_size: int = 4096) -> Tensor:
    """``[N, num_labels]`` cosine similarities of ``features`` to every class (eval mode).

    Cosines (not the temperature-scaled logits) so that a calibrated-stacking ``gamma`` chosen
    with one model carries over to another.
    """
    model.eval()
    device = next(model.parameters()).device
    weights = model.class_embeddings()
    return torch.cat([(model.image_embeddings(features[i:i + batch_size].to(device).float()) @ weights.T).cpu()
                      for i in range(0, len(features), batch_size)])


def mean_class_accuracy(predictions: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy averaged over the classes present in ``labels`` (the ZSL/GZSL convention)."""
    predictions, labels = torch.as_tensor(predictions), torch.as_tensor(labels)
    per_class = [(predictions[labels == c] == c).float().mean() for c in labels.unique()]
    return float(torch.stack(per_class).mean()) if per_class else float("nan")


def zsl_accuracy(scores: Tensor, labels: Tensor, unseen: Sequence[int]) -> float:
    """Mean per-class top-1 when only the ``unseen`` classes compete (conventional ZSL)."""
    unseen_ids = torch.as_tensor(list(unseen)).long()
    return mean_class_accuracy(unseen_ids[scores[:, unseen_ids].argmax(1)], labels)


@dataclass
class GZSLResult:
    """Generalised zero-shot accuracies (mean per class) and their harmonic mean ``h``."""

    seen: float
    unseen: float
    h: float
    gamma: float


def calibrated_stacking(scores: Tensor, seen: Sequence[int], gamma: float) -> Tensor:
    """Subtract ``gamma`` from the scores of the ``seen`` classes (Chao et al., 2016)."""
    calibrated = scores.clone()
    calibrated[:, torch.as_tensor(list(seen)).long()] -= gamma
    return calibrated


def gzsl_accuracy(scores: Tensor, labels: Tensor, seen: Sequence[int], gamma: float = 0.0) -> GZSLResult:
    """Seen, unseen and harmonic-mean accuracy with all classes competing, after stacking ``gamma``.

    Test samples whose label is in ``seen`` count towards ``seen``, all others towards ``unseen``.
    """
    predictions = calibrated_stacking(scores, seen, gamma).argmax(1)
    labels = torch.as_tensor(labels)
    is_seen = torch.isin(labels, torch.as_tensor(list(seen)))
    acc_seen = mean_class_accuracy(predictions[is_seen], labels[is_seen])
    acc_unseen = mean_class_accuracy(predictions[~is_seen], labels[~is_seen])
    h = 0.0 if acc_seen + acc_unseen == 0 else 2 * acc_seen * acc_unseen / (acc_seen + acc_unseen)
    return GZSLResult(acc_seen, acc_unseen, h, gamma)


def choose_gamma(scores: Tensor, labels: Tensor, seen: Sequence[int], grid: Sequence[float] | None = None
                 ) -> GZSLResult:
    """The calibrated-stacking ``gamma`` with the best harmonic mean on a validation set.

    ``scores`` are cosines (:func:`predict_scores`); the default grid runs from -0.2 to 0.6 in
    steps of 0.005. Ties go to the ``gamma`` closest to zero.

    Use a validation set drawn from the seen classes only: held-out images of the classes a model
    was trained on (``seen``) plus images of seen classes that the model was *not* trained on,
    acting as stand-in unseen classes.
    """
    grid = np.round(np.arange(-0.2, 0.6001, 0.005), 3) if grid is None else grid
    results = [gzsl_accuracy(scores, labels, seen, float(g)) for g in grid]
    return max(results, key=lambda r: (r.h, -abs(r.gamma)))


@dataclass
class ZeroShotSplit:
    """Which samples train and test a zero-shot model; no sample of an unseen class trains.

    Attributes:
        train: training samples of the seen classes (split ``"train"``).
        test_seen: test samples of the seen classes (split ``"test"``).
        test_unseen: every sample of the unseen classes, whatever its split.
        seen, unseen: class indices.
    """

    train: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    seen: list[int]
    unseen: list[int]


def zero_shot_split(labels: Sequence[int] | np.ndarray, split: Sequence[str], unseen: Sequence[int],
                    num_classes: int) -> ZeroShotSplit:
    """The (G)ZSL protocol on a split dataset: train on seen classes' training samples only."""
    labels = np.asarray(labels)
    split = np.asarray(split)
    is_unseen = np.isin(labels, list(unseen))
    known = labels >= 0
    return ZeroShotSplit(
        train=np.flatnonzero((split == "train") & known & ~is_unseen),
        test_seen=np.flatnonzero((split == "test") & known & ~is_unseen),
        test_unseen=np.flatnonzero(is_unseen),
        seen=[c for c in range(num_classes) if c not in set(unseen)],
        unseen=sorted(set(unseen)),
    )


def calibration_split(labels: np.ndarray, train: np.ndarray, seen: Sequence[int], fraction: float = 0.2,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A stand-in GZSL split inside the training data, for choosing ``gamma`` without unseen classes.

    ``fraction`` of the ``seen`` classes become stand-in unseen classes (all their training samples
    go to validation); of each remaining class, ``fraction`` of its samples go to validation too.
    Returns ``(fit, validation, stand_in_seen)`` sample indices and classes.
    """
    rng = np.random.default_rng([seed, 7])
    seen = np.asarray(list(seen))
    stand_in_unseen = set(rng.choice(seen, size=max(1, round(fraction * len(seen))), replace=False).tolist())
    fit, validation = [], []
    for c in seen.tolist():
        members = train[labels[train] == c]
        if c in stand_in_unseen:
            validation.extend(members.tolist())
            continue
        members = rng.permutation(members)
        n_val = int(round(fraction * len(members))) if len(members) > 1 else 0
        validation.extend(members[:n_val].tolist())
        fit.extend(members[n_val:].tolist())
    stand_in_seen = [c for c in seen.tolist() if c not in stand_in_unseen]
    return np.sort(np.array(fit, dtype=np.int64)), np.sort(np.array(validation, dtype=np.int64)), stand_in_seen


@dataclass
class ZeroShotReport:
    """Results of :func:`evaluate_zero_shot` (accuracies are mean per class)."""

    zsl: float
    gzsl: GZSLResult
    gzsl_uncalibrated: GZSLResult


def evaluate_zero_shot(make_model: Callable[[], KGClassifier], features: Tensor, labels: Tensor,
                       split: ZeroShotSplit, config: FitConfig | None = None,
                       calibrate: bool = True) -> ZeroShotReport:
    """Train on the seen classes, then measure ZSL and GZSL (calibrated stacking) accuracy.

    ``gamma`` is chosen by :func:`choose_gamma` on :func:`calibration_split` of the seen classes'
    training samples with a second model made by ``make_model`` (skipped when ``calibrate`` is
    false: ``gamma = 0``). No sample of an unseen class is used before testing.
    """
    config = config or FitConfig()
    labels = torch.as_tensor(labels).long()
    gamma = 0.0
    if calibrate:
        fit, validation, stand_in_seen = calibration_split(labels.numpy(), split.train, split.seen,
                                                           seed=config.seed)
        model = fit_classifier(make_model(), features[fit], labels[fit], stand_in_seen, config)
        scores = predict_scores(model, features[validation])[:, split.seen]
        position = {c: i for i, c in enumerate(split.seen)}
        local = torch.tensor([position[int(c)] for c in labels[validation]])
        gamma = choose_gamma(scores, local, [position[c] for c in stand_in_seen]).gamma
    model = fit_classifier(make_model(), features[split.train], labels[split.train], split.seen, config)
    unseen_scores = predict_scores(model, features[split.test_unseen])
    zsl = zsl_accuracy(unseen_scores, labels[split.test_unseen], split.unseen)
    test = np.concatenate([split.test_seen, split.test_unseen])
    scores = torch.cat([predict_scores(model, features[split.test_seen]), unseen_scores])
    return ZeroShotReport(zsl=zsl, gzsl=gzsl_accuracy(scores, labels[test], split.seen, gamma),
                          gzsl_uncalibrated=gzsl_accuracy(scores, labels[test], split.seen, 0.0))
