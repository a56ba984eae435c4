r"""Knowledge-graph classifiers: supervised, zero-shot (ZSL) and generalised zero-shot (GZSL).

Two models share one interface (:class:`ZeroShotModel`: ``fit(features, labels, classes)`` then
``scores(features)``, cosines against every class of the graph) and the registry
:data:`ZSL_MODELS`:

* ``"prototypes"`` (:class:`KGPrototypes`): class prototypes regressed in closed form (kernel
  ridge) from parameter-free propagation descriptors of the graph
  (:func:`fgmm.gnn.propagation_features`: attributes one hop away, every taxonomic ancestor).
* ``"gnn"`` (:class:`GNNZeroShot`): a learned GNN (:data:`fgmm.gnn.GNN_LAYERS`: GGNN, GCN, GAT)
  propagating over the graph gives cosine-classifier weights (:class:`KGClassifier`), trained by
  cross-entropy on the images of the seen classes.

Both work on image features normalised by :class:`FeatureWhitening`. Train on the images of the
seen classes only; classes without images get their weights from the graph, so the same model
scores them::

    model = create_zero_shot_model("prototypes", graph=ClassGraph.from_hetero(kg.to_pyg()))
    model.fit(features[train], labels[train], classes=seen)
    scores = model.scores(features[test])               # [N, num_labels] cosines, all classes

GZSL scores all classes at once; seen classes dominate, which calibrated stacking (Chao et al.,
2016) corrects by subtracting :math:`\gamma` from every seen-class score, with :math:`\gamma`
chosen on seen classes only (:func:`choose_gamma`, :func:`evaluate_zero_shot`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.errors import ConfigError
from fgmm.gnn.propagation import ClassEmbeddingNetwork, ClassGraph, propagation_features
from fgmm.registry import Registry


class FeatureWhitening:
    r"""Power normalisation, centring and shrunk within-class whitening of image features.

    .. math::
        \mathbf{u} &= \frac{\operatorname{sign}(\mathbf{x})|\mathbf{x}|^{p}}
        {\lVert \operatorname{sign}(\mathbf{x})|\mathbf{x}|^{p} \rVert}, \qquad
        \mathbf{v} = \frac{\mathbf{u} - \boldsymbol{\mu}}{\lVert \mathbf{u} - \boldsymbol{\mu} \rVert}

        \mathbf{z} &= \frac{\mathbf{W}\mathbf{v}}{\lVert \mathbf{W}\mathbf{v} \rVert}, \qquad
        \mathbf{W} = \big(\boldsymbol{\Sigma}_w + \varepsilon\, \bar{\lambda}\, \mathbf{I}\big)^{-1/2}

    :math:`\boldsymbol{\mu}` is the training mean of :math:`\mathbf{u}`, :math:`\boldsymbol{\Sigma}_w`
    the pooled within-class covariance of :math:`\mathbf{v}` (training images, their labels) and
    :math:`\bar\lambda` its mean eigenvalue. Whitening the within-class scatter makes the
    directions that separate classes count more in cosine similarity (LDA-like); the shrinkage
    :math:`\varepsilon` keeps it stable with few images per class.

    Args:
        power: :math:`p` (0.5: signed square root; 1: none).
        shrinkage: :math:`\varepsilon`. The defaults (with :class:`KGPrototypes`' ``ridge`` and
            ``taxonomy_weight``) were chosen by zero-shot accuracy on CUB's seen classes only
            (three splits of 30 stand-in unseen among the 150 seen classes; benchmarks/README.md).
    """

    def __init__(self, power: float = 0.5, shrinkage: float = 3.0):
        self.power = power
        self.shrinkage = shrinkage
        self.mean: Tensor | None = None
        self.transform: Tensor | None = None

    def _centred(self, features: Tensor) -> Tensor:
        powered = F.normalize(features.float().sign() * features.float().abs().pow(self.power), dim=1)
        return F.normalize(powered - self.mean, dim=1)

    def fit(self, features: Tensor, labels: Tensor) -> FeatureWhitening:
        r"""Estimate :math:`\boldsymbol{\mu}` and :math:`\mathbf{W}` from training features and labels."""
        features, labels = features.double(), torch.as_tensor(labels)
        powered = F.normalize(features.sign() * features.abs().pow(self.power), dim=1)
        self.mean = powered.mean(0).float()
        centred = self._centred(features).double()
        _, inverse = labels.unique(return_inverse=True)
        sums = torch.zeros(int(inverse.max()) + 1, centred.shape[1], dtype=torch.float64)
        sums.index_add_(0, inverse, centred)
        residual = centred - (sums / torch.bincount(inverse).unsqueeze(1))[inverse]
        eigenvalues, eigenvectors = torch.linalg.eigh(residual.T @ residual / len(residual))
        eigenvalues = eigenvalues.clamp_min(0) + self.shrinkage * eigenvalues.clamp_min(0).mean() + 1e-12
        self.transform = ((eigenvectors * eigenvalues.rsqrt()) @ eigenvectors.T).float()
        return self

    def __call__(self, features: Tensor) -> Tensor:
        if self.transform is None:
            raise ConfigError("FeatureWhitening is used before fit()")
        return F.normalize(self._centred(features) @ self.transform, dim=1)


class ZeroShotModel(Protocol):
    """What :func:`evaluate_zero_shot` and the ``kg``/``zsl`` tasks need of a model.

    Attributes:
        trained: the classes the last :meth:`fit` trained on.
    """

    trained: list[int]

    def fit(self, features: Tensor, labels: Tensor, classes: Sequence[int] | None = None) -> ZeroShotModel:
        """Train on ``features`` of the classes ``classes`` (default: the classes in ``labels``)."""

    def scores(self, features: Tensor) -> Tensor:
        """``[N, num_labels]`` cosine scores against every class of the graph."""


ZSL_MODELS: Registry[ZeroShotModel] = Registry("zero-shot model")


def create_zero_shot_model(name: str, graph: ClassGraph, **kwargs) -> ZeroShotModel:
    """Create the model ``name`` (``"prototypes"`` or ``"gnn"``) over ``graph``."""
    return ZSL_MODELS.create(name, graph=graph, **kwargs)


def _classes(labels: Tensor, classes: Sequence[int] | None) -> list[int]:
    trained = labels.unique().tolist() if classes is None else sorted({int(c) for c in classes})
    if not set(labels.unique().tolist()) <= set(trained):
        raise ValueError("some training labels are not among `classes`")
    return trained


@ZSL_MODELS.register("prototypes")
class KGPrototypes:
    r"""Class prototypes regressed from knowledge-graph propagation descriptors (kernel ridge).

    .. math::
        \mathbf{m}_c &= \frac{1}{|I_c|}\sum_{i \in I_c} \mathbf{z}_i, \qquad
        \mathbf{K} = \boldsymbol{\Phi}\boldsymbol{\Phi}^{\top}

        \mathbf{P} &= \mathbf{K}_{:,S}\,(\mathbf{K}_{S,S} + \lambda \mathbf{I})^{-1}\,
        \hat{\mathbf{M}}_S

        \mathbf{w}_c &= \begin{cases}
        \operatorname{normalize}\big(\alpha\, \hat{\mathbf{m}}_c + (1-\alpha)\, \hat{\mathbf{p}}_c\big)
        & c \in S \\ \hat{\mathbf{p}}_c & \text{otherwise} \end{cases}
        \qquad s_c(\mathbf{x}) = \cos(\mathbf{z}, \mathbf{w}_c)

    :math:`\mathbf{z}` are whitened image features (:class:`FeatureWhitening`), :math:`S` the trained
    classes, :math:`\hat{\cdot}` unit normalisation and :math:`\boldsymbol{\Phi}` the descriptors of
    :func:`fgmm.gnn.propagation_features`: ridge regression from graph descriptors to visual
    prototypes (Shigeto et al., 2015: mapping the semantic side to the visual one limits hubness),
    solved in closed form. Classes without images get :math:`\hat{\mathbf{p}}_c`; classes with
    images blend their mean with it (``mean_weight`` :math:`\alpha`; 1 ignores the graph for them).

    Args:
        graph: the class graph.
        ridge: :math:`\lambda`.
        taxonomy_weight: weight of the ancestor block of the descriptors.
        mean_weight: :math:`\alpha`.
        whitening: the image-feature normalisation (fitted in :meth:`fit`).
    """

    def __init__(self, graph: ClassGraph, ridge: float = 0.3, taxonomy_weight: float = 0.5,
                 mean_weight: float = 0.5, whitening: FeatureWhitening | None = None):
        self.graph = graph
        self.ridge = ridge
        self.mean_weight = mean_weight
        self.whitening = whitening or FeatureWhitening()
        descriptors = propagation_features(graph, taxonomy_weight)
        self.kernel = torch.as_tensor((descriptors @ descriptors.T).toarray(), dtype=torch.float64)
        self.means: Tensor | None = None
        self.regressed: Tensor | None = None
        self.trained: list[int] = []

    def fit(self, features: Tensor, labels: Tensor, classes: Sequence[int] | None = None) -> KGPrototypes:
        labels = torch.as_tensor(labels).long()
        self.trained = _classes(labels, classes)
        z = self.whitening.fit(features, labels)(features).double()
        seen = torch.tensor(self.trained)
        sums = torch.zeros(self.graph.num_labels, z.shape[1], dtype=torch.float64).index_add_(0, labels, z)
        self.means = F.normalize(sums, dim=1)
        k_seen = self.kernel[seen][:, seen] + self.ridge * torch.eye(len(seen), dtype=torch.float64)
        coefficients = torch.linalg.solve(k_seen, self.means[seen])
        self.regressed = F.normalize(self.kernel[:, seen] @ coefficients, dim=1)
        return self

    def prototypes(self, mean_weight: float | None = None) -> Tensor:
        r"""``[num_labels, d]`` unit class prototypes (``mean_weight`` overrides :math:`\alpha`)."""
        if self.regressed is None or self.means is None:
            raise ConfigError("KGPrototypes is used before fit()")
        alpha = self.mean_weight if mean_weight is None else mean_weight
        prototypes = self.regressed.clone()
        seen = torch.tensor(self.trained)
        prototypes[seen] = F.normalize(alpha * self.means[seen] + (1 - alpha) * self.regressed[seen], dim=1)
        return prototypes.float()

    def scores(self, features: Tensor, mean_weight: float | None = None) -> Tensor:
        return self.whitening(features) @ self.prototypes(mean_weight).T


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
        lr: peak AdamW learning rate (one-cycle schedule: 10% warm-up, then cosine decay).
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


@ZSL_MODELS.register("gnn")
class GNNZeroShot:
    """A :class:`KGClassifier` on whitened features behind the :class:`ZeroShotModel` interface.

    The GNN predicts class weights directly in the whitened image-feature space (no image
    projection), trained by :func:`fit_classifier`.

    Args:
        graph: the class graph.
        layer, hidden, num_layers, dropout: of the :class:`~fgmm.gnn.ClassEmbeddingNetwork`.
        free_weights: add free per-class weights (for supervised use; unseen classes keep zero).
        config: the training recipe.
        device: where to train.
        whitening: the image-feature normalisation (fitted in :meth:`fit`).
    """

    def __init__(self, graph: ClassGraph, layer: str = "gcn", hidden: int = 256, num_layers: int = 2,
                 dropout: float = 0.0, free_weights: bool = False, config: FitConfig | None = None,
                 device: str = "cpu", whitening: FeatureWhitening | None = None):
        self.graph = graph
        self.net_options = {"layer": layer, "hidden": hidden, "num_layers": num_layers, "dropout": dropout}
        self.free_weights = free_weights
        self.config = config or FitConfig()
        self.device = device
        self.whitening = whitening or FeatureWhitening()
        self.model: KGClassifier | None = None
        self.trained: list[int] = []

    def fit(self, features: Tensor, labels: Tensor, classes: Sequence[int] | None = None) -> GNNZeroShot:
        labels = torch.as_tensor(labels).long()
        self.trained = _classes(labels, classes)
        z = self.whitening.fit(features, labels)(features)
        torch.manual_seed(self.config.seed)
        net = ClassEmbeddingNetwork(self.graph, out_dim=z.shape[1], **self.net_options)
        model = KGClassifier(z.shape[1], net, projection=False, free_weights=self.free_weights, input_dropout=0.0)
        self.model = fit_classifier(model.to(self.device), z, labels, self.trained, self.config)
        return self

    def scores(self, features: Tensor) -> Tensor:
        if self.model is None:
            raise ConfigError("GNNZeroShot is used before fit()")
        return predict_scores(self.model, self.whitening(features))


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


def calibrate_gamma(make_model: Callable[[], ZeroShotModel], features: Tensor, labels: Tensor,
                    train: np.ndarray, seen: Sequence[int], seed: int = 0) -> float:
    """The calibrated-stacking ``gamma`` for a model trained on ``seen``, from seen classes only.

    A second model made by ``make_model`` is trained on :func:`calibration_split` of the ``train``
    samples; ``gamma`` maximises the harmonic mean on its validation part (:func:`choose_gamma`).
    """
    labels = torch.as_tensor(labels).long()
    fit, validation, stand_in_seen = calibration_split(labels.numpy(), train, seen, seed=seed)
    scores = make_model().fit(features[fit], labels[fit], stand_in_seen).scores(features[validation])
    position = {c: i for i, c in enumerate(seen)}
    local = torch.tensor([position[int(c)] for c in labels[validation]])
    return choose_gamma(scores[:, list(seen)], local, [position[c] for c in stand_in_seen]).gamma


def evaluate_zero_shot(make_model: Callable[[], ZeroShotModel], features: Tensor, labels: Tensor,
                       split: ZeroShotSplit, calibrate: bool = True, seed: int = 0) -> ZeroShotReport:
    """Train on the seen classes, then measure ZSL and GZSL (calibrated stacking) accuracy.

    ``gamma`` comes from :func:`calibrate_gamma` (``0`` when ``calibrate`` is false). No sample of
    an unseen class is used before testing.
    """
    labels = torch.as_tensor(labels).long()
    gamma = calibrate_gamma(make_model, features, labels, split.train, split.seen, seed) if calibrate else 0.0
    model = make_model().fit(features[split.train], labels[split.train], split.seen)
    test = np.concatenate([split.test_seen, split.test_unseen])
    scores = model.scores(features[test])
    unseen_part = scores[len(split.test_seen):]
    zsl = zsl_accuracy(unseen_part, labels[split.test_unseen], split.unseen)
    return ZeroShotReport(zsl=zsl, gzsl=gzsl_accuracy(scores, labels[test], split.seen, gamma),
                          gzsl_uncalibrated=gzsl_accuracy(scores, labels[test], split.seen, 0.0))
