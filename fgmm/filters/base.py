r"""The noisy-label filter interface: signals in, per-sample decisions out.

A filter reads what a training run knows about each training sample (:class:`FilterSignals`) and
returns a :class:`FilterResult`: for every sample a decision (:class:`Decision`: keep, drop or
relabel), a suspicion score (higher: more likely mislabelled) and a suggested label. Filters are
registered in :data:`FILTERS` and created by name::

    signals = FilterSignals(labels=y, num_classes=200, probabilities=oof_probs)
    result = create_filter("confident").fit(signals)
    keep, new_labels = result.cleaned()          # indices to train on and their (possibly new) labels
    print(detection_scores(result.flagged, y != y_clean))

Which filter needs which signal is declared in :attr:`NoiseFilter.needs`; a missing one is a
:class:`~fgmm.errors.ConfigError` naming it.

Thresholds without ground truth: a filter either estimates how many labels are wrong (confident
learning) or splits its scores with a two-component Gaussian mixture (:func:`mixture_split`, as
DivideMix splits per-sample losses; Li et al., 2020), so no threshold is tuned on the answer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fgmm.errors import ConfigError
from fgmm.registry import Registry


class Decision(IntEnum):
    """What to do with one training sample."""

    KEEP = 0
    DROP = 1
    RELABEL = 2


OPEN_SET = -1
"""Suggested label of a sample that belongs to none of the classes (open-set noise)."""


@dataclass
class FilterSignals:
    """What a training run knows about its ``N`` training samples (every field but the labels optional).

    Attributes:
        labels: ``[N]`` given (possibly wrong) class indices.
        num_classes: ``C``.
        features: ``[N, d]`` image features or embeddings (small-loss training, prototypes).
        probabilities: ``[N, C]`` *out-of-sample* predicted class probabilities (cross-validated:
            each row from a model that did not train on that sample).
        logits: ``[N, C]`` the out-of-sample scores behind ``probabilities`` (before the softmax), for
            energy scores.
        losses: ``[E, N]`` per-epoch training losses of each sample (e.g. recorded by
            :class:`fgmm.filters.LossRecorder`).
        embeddings: ``{modality: [N, d_m]}`` per-modality sample embeddings in a joint space.
        class_embeddings: ``{modality: [C, d_m]}`` class embeddings in the same spaces (text / KG class
            prototypes), for cross-modal agreement.
        masks: ``{modality: bool [N]}`` which samples carry the modality (absent key: all do).
        modality_probabilities: ``{modality: [N, C]}`` out-of-sample probabilities from each modality alone.
    """

    labels: np.ndarray
    num_classes: int
    features: Tensor | None = None
    probabilities: np.ndarray | None = None
    logits: np.ndarray | None = None
    losses: np.ndarray | None = None
    embeddings: dict[str, Tensor] = field(default_factory=dict)
    class_embeddings: dict[str, Tensor] = field(default_factory=dict)
    masks: dict[str, Tensor] = field(default_factory=dict)
    modality_probabilities: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        if n == 0:
            raise ConfigError("filter signals: no training samples")
        if self.labels.min() < 0 or self.labels.max() >= self.num_classes:
            raise ConfigError(f"filter signals: labels must lie in 0..{self.num_classes - 1}")
        checks: list[tuple[str, Any, int]] = [("features", self.features, 0), ("probabilities", self.probabilities, 0),
                                              ("logits", self.logits, 0), ("losses", self.losses, 1)]
        checks += [(f"embeddings['{m}']", e, 0) for m, e in self.embeddings.items()]
        checks += [(f"masks['{m}']", e, 0) for m, e in self.masks.items()]
        checks += [(f"modality_probabilities['{m}']", p, 0) for m, p in self.modality_probabilities.items()]
        for name, value, axis in checks:
            if value is not None and value.shape[axis] != n:
                raise ConfigError(f"filter signals: {name} has {value.shape[axis]} samples, labels {n}")
        for name, value in [("probabilities", self.probabilities), ("logits", self.logits),
                            *self.modality_probabilities.items()]:
            if value is not None and value.shape[1] != self.num_classes:
                raise ConfigError(f"filter signals: {name} has {value.shape[1]} classes, expected {self.num_classes}")
        for modality, value in self.class_embeddings.items():
            if value.shape[0] != self.num_classes:
                raise ConfigError(f"filter signals: class_embeddings['{modality}'] has {value.shape[0]} rows, "
                                  f"expected {self.num_classes}")

    def __len__(self) -> int:
        return len(self.labels)

    def has(self, signal: str) -> bool:
        value = getattr(self, signal)
        return bool(value) if isinstance(value, Mapping) else value is not None

    def mask(self, modality: str) -> Tensor:
        """``bool [N]``: which samples carry ``modality``."""
        return self.masks.get(modality, torch.ones(len(self), dtype=torch.bool)).bool()


@dataclass
class FilterResult:
    """Per-sample decisions of one filter.

    Attributes:
        decisions: ``int8 [N]`` :class:`Decision` values.
        scores: ``[N]`` suspicion, higher = more likely a wrong label (comparable within one result).
        suggested: ``[N]`` the label the filter believes (the given one when it has no better idea,
            :data:`OPEN_SET` when the sample seems to belong to no class).
        name: the filter that produced it.
        info: what the filter estimated (noise rate, thresholds, ...), JSON-serialisable.
    """

    decisions: np.ndarray
    scores: np.ndarray
    suggested: np.ndarray
    name: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> np.ndarray:
        """``bool [N]``: samples the filter does not keep as they are (dropped or relabelled)."""
        return self.decisions != Decision.KEEP

    def counts(self) -> dict[str, int]:
        return {d.name.lower(): int((self.decisions == d).sum()) for d in Decision}

    def cleaned(self, labels: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices of the samples to train on and their labels: kept ones as given, relabelled ones
        with the suggestion, dropped ones left out."""
        labels = np.asarray(labels, dtype=np.int64)
        keep = np.flatnonzero(self.decisions != Decision.DROP)
        new = np.where(self.decisions == Decision.RELABEL, self.suggested, labels)[keep]
        return keep, new

    def weights(self, relabelled: float = 1.0) -> np.ndarray:
        """``float [N]`` per-sample loss weights: 1 kept, ``relabelled`` relabelled, 0 dropped."""
        return np.select([self.decisions == Decision.KEEP, self.decisions == Decision.RELABEL],
                         [1.0, relabelled], 0.0).astype(np.float32)


class NoiseFilter(ABC):
    """Fit on a run's signals, return per-sample decisions.

    Subclasses set :attr:`name` and :attr:`needs` (the :class:`FilterSignals` fields they read) and
    implement :meth:`_fit`.
    """

    name: str = "filter"
    needs: tuple[str, ...] = ()

    def fit(self, signals: FilterSignals) -> FilterResult:
        """Check that ``signals`` carries what this filter needs, then run it."""
        missing = [s for s in self.needs if not signals.has(s)]
        if missing:
            raise ConfigError(f"filter '{self.name}' needs the signal(s) {', '.join(missing)}, which the run "
                              "did not provide (see fgmm.filters.FilterSignals)")
        result = self._fit(signals)
        result.name = result.name or self.name
        return result

    @abstractmethod
    def _fit(self, signals: FilterSignals) -> FilterResult:
        """Decisions for every sample of ``signals``."""


FILTERS: Registry[NoiseFilter] = Registry("noise filter")


def create_filter(name: str, **options: Any) -> NoiseFilter:
    """The filter registered as ``name`` (see ``FILTERS.names()``), configured by ``options``."""
    return FILTERS.create(name, **options)


def mixture_split(scores: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    r"""Split 1-D suspicion scores into a low (clean) and a high (noisy) group with a 2-component GMM.

    .. math:: p(\text{noisy} \mid s) = \frac{\pi_2\,\mathcal N(s; \mu_2, \sigma_2^2)}
              {\sum_{k=1}^{2} \pi_k\,\mathcal N(s; \mu_k, \sigma_k^2)}, \qquad \mu_2 > \mu_1

    Returns ``(flagged, posterior)``: ``posterior > 0.5`` and the posterior of the high component
    (DivideMix's clean/noisy division, Li et al., 2020). Scores to the right of the high mean are
    always flagged, those left of the low mean never (a wide component would otherwise claim both tails).
    """
    from sklearn.mixture import GaussianMixture

    values = np.asarray(scores, dtype=np.float64).reshape(-1, 1)
    if len(values) < 4 or np.ptp(values) == 0:
        return np.zeros(len(values), dtype=bool), np.zeros(len(values))
    mixture = GaussianMixture(2, max_iter=200, tol=1e-4, reg_covar=1e-6, random_state=seed).fit(values)
    high = int(np.argmax(mixture.means_.ravel()))
    posterior = mixture.predict_proba(values)[:, high]
    means = np.sort(mixture.means_.ravel())
    posterior = np.where(values.ravel() >= means[1], np.maximum(posterior, 1.0), posterior)
    posterior = np.where(values.ravel() <= means[0], 0.0, posterior)
    return posterior > 0.5, posterior


def label_log_odds(probabilities: np.ndarray, labels: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    r"""``[N]`` suspicion :math:`\log \frac{1 - \hat p_{\tilde y}}{\hat p_{\tilde y}}`: the log-odds *against*
    each sample's given label (``probabilities`` clipped to ``[eps, 1 - eps]``)."""
    given = np.clip(np.asarray(probabilities, dtype=np.float64)[np.arange(len(labels)), labels], eps, 1 - eps)
    return np.log1p(-given) - np.log(given)


@dataclass
class NoiseSplit:
    """What :func:`anchored_noise_split` found.

    Attributes:
        flagged: ``bool [N]``, posterior of a wrong label above 0.5.
        posterior: ``[N]`` posterior probability that the label is wrong.
        shares: mixing weights ``{"clean", "random", "confusable"}`` (the estimated noise rate is
            ``1 - shares["clean"]``).
    """

    flagged: np.ndarray
    posterior: np.ndarray
    shares: dict[str, float]

    @property
    def noise_rate(self) -> float:
        return 1.0 - self.shares["clean"]


def _log_normal(x: np.ndarray, mean: float, sd: float) -> np.ndarray:
    sd = max(sd, 1e-3)
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd * np.sqrt(2 * np.pi))


def anchored_noise_split(probabilities: np.ndarray, labels: np.ndarray, seed: int = 0, draws: int = 5,
                         iterations: int = 300) -> NoiseSplit:
    r"""Which labels are wrong, from out-of-sample probabilities, with the wrong-label scores anchored.

    The suspicion :math:`s_i` (:func:`label_log_odds`) is modelled as a three-component mixture

    .. math::
        s \sim \pi_0\, \mathcal N(\mu_0, \sigma_0^2) + \pi_r\, \mathcal N(\mu_r, \sigma_r^2)
              + \pi_c\, \mathcal N(\mu_c, \sigma_c^2)

    where only the clean component :math:`(\mu_0, \sigma_0)` and the weights are fitted (EM). The two
    noise components are *anchored*: their means and deviations are those of the scores the same
    probabilities give to labels known to be wrong — a class drawn uniformly among the others
    (random, symmetric noise: :math:`\mu_r, \sigma_r`), and a class drawn from the model's own
    distribution over the other classes (confusable noise, e.g. a sibling species: :math:`\mu_c,
    \sigma_c`), ``draws`` per sample. A free two-component mixture always splits the scores, so on a
    clean dataset it calls the harder half wrong (79% of clean CUB training labels); anchored, it
    flags 0.1% there and keeps F1 0.95 at 20% and 40% symmetric noise. A sample is flagged when its
    posterior of a noise component exceeds 0.5.
    """
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None)
    p = p / p.sum(1, keepdims=True)
    labels = np.asarray(labels, dtype=np.int64)
    n, c = p.shape
    rows = np.arange(n)
    s = label_log_odds(p, labels)
    if n < 4 or c < 2:
        return NoiseSplit(np.zeros(n, dtype=bool), np.zeros(n), {"clean": 1.0, "random": 0.0, "confusable": 0.0})
    rng = np.random.default_rng([seed, 29])
    random_other = (labels[:, None] + rng.integers(1, c, (n, draws))) % c
    others = p.copy()
    others[rows, labels] = 0.0
    generator = torch.Generator().manual_seed(seed)
    confusable = torch.multinomial(torch.from_numpy(others / others.sum(1, keepdims=True)), draws,
                                   replacement=True, generator=generator).numpy()
    anchors = []
    for other in (random_other, confusable):
        reference = np.log1p(-np.clip(p[rows[:, None], other], 1e-6, 1 - 1e-6)) \
            - np.log(np.clip(p[rows[:, None], other], 1e-6, 1 - 1e-6))
        anchors.append((float(reference.mean()), float(reference.std())))
    weights = np.array([0.8, 0.1, 0.1])
    mean, sd = float(np.percentile(s, 25)), float(s.std())
    previous = -np.inf
    for _ in range(iterations):
        log_parts = np.stack([np.log(weights[0] + 1e-300) + _log_normal(s, mean, sd)]
                             + [np.log(weights[k + 1] + 1e-300) + _log_normal(s, m, d)
                                for k, (m, d) in enumerate(anchors)])
        top = log_parts.max(0)
        total = top + np.log(np.exp(log_parts - top).sum(0))
        responsibility = np.exp(log_parts - total)
        weights = responsibility.mean(1)
        clean = responsibility[0]
        mean = float((clean * s).sum() / max(clean.sum(), 1e-12))
        sd = float(np.sqrt((clean * (s - mean) ** 2).sum() / max(clean.sum(), 1e-12)))
        likelihood = float(total.mean())
        if likelihood - previous < 1e-9:
            break
        previous = likelihood
    posterior = 1.0 - responsibility[0]
    return NoiseSplit(posterior > 0.5, posterior,
                      {"clean": float(weights[0]), "random": float(weights[1]), "confusable": float(weights[2])})


def decide(flagged: np.ndarray, labels: np.ndarray, suggested: np.ndarray, confidence: np.ndarray,
           relabel_threshold: float) -> np.ndarray:
    """Decisions from a flag per sample: a flagged sample is relabelled when the suggestion is a
    different class held with ``confidence >= relabel_threshold``, else dropped."""
    relabel = flagged & (suggested >= 0) & (suggested != labels) & (confidence >= relabel_threshold)
    decisions = np.full(len(labels), Decision.KEEP, dtype=np.int8)
    decisions[flagged] = Decision.DROP
    decisions[relabel] = Decision.RELABEL
    return decisions


def detection_scores(flagged: Sequence[bool] | np.ndarray, noisy: Sequence[bool] | np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of ``flagged`` against the true ``noisy`` mask (both ``bool [N]``).

    Precision is 0 when nothing is flagged; F1 is the harmonic mean (0 when both are 0).
    """
    flagged, noisy = np.asarray(flagged, dtype=bool), np.asarray(noisy, dtype=bool)
    if flagged.shape != noisy.shape:
        raise ValueError(f"flagged {flagged.shape} and noisy {noisy.shape} differ in shape")
    hits = float((flagged & noisy).sum())
    precision = hits / float(flagged.sum()) if flagged.any() else 0.0
    recall = hits / float(noisy.sum()) if noisy.any() else 0.0
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return {"precision": precision, "recall": recall, "f1": f1}
