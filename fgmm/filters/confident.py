r"""Confident learning on out-of-sample probabilities: fgmm's own, and cleanlab's side by side.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 2021) counts, from out-of-sample probabilities :math:`\hat p`, how many samples
given label :math:`i` confidently belong to class :math:`j`:

.. math::
    t_j = \frac{1}{|X_{\tilde y = j}|} \sum_{x \in X_{\tilde y = j}} \hat p_j(x), \qquad
    C_{ij} = \big|\{x \in X_{\tilde y = i} : y^*(x) = j\}\big|, \qquad
    y^*(x) = \operatorname*{arg\,max}_{j:\ \hat p_j(x) \ge t_j} \hat p_j(x)

calibrates the confident joint :math:`C` to the class counts,
:math:`\tilde C_{ij} = C_{ij}\, |X_{\tilde y=i}| / \sum_{j'} C_{ij'}`, and prunes by noise rate: of the
samples labelled :math:`i`, the :math:`\sum_{j \ne i} \tilde C_{ij}` with the largest margin
:math:`\max_{j \ne i} \hat p_j - \hat p_i` are label issues. With ``method="both"`` a sample must also
be off the diagonal of :math:`C` (its :math:`y^*` differs from its label). The estimated noise rate
is :math:`\sum_{i \ne j} \tilde C_{ij} / N`.

:class:`ConfidentLearning` implements this with numpy (no extra dependency). :class:`CleanlabFilter`
calls ``cleanlab.filter.find_label_issues`` on the same probabilities (``pip install "fgmm[cleanlab]"``).
Both relabel a flagged sample to :math:`\arg\max_j \hat p_j` when that class holds at least
``relabel_threshold`` of the probability, and drop it otherwise.
"""

from __future__ import annotations

import numpy as np

from fgmm.errors import require
from fgmm.filters.base import FILTERS, FilterResult, FilterSignals, NoiseFilter, decide


def confident_joint(probabilities: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(C [K, K], y_star [N])``: the confident joint and each sample's confident class (-1: none)."""
    num_classes = probabilities.shape[1]
    counts = np.bincount(labels, minlength=num_classes)
    sums = np.zeros(num_classes)
    np.add.at(sums, labels, probabilities[np.arange(len(labels)), labels])
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), 1.0)
    above = probabilities >= thresholds[None, :]
    masked = np.where(above, probabilities, -np.inf)
    y_star = np.where(above.any(1), masked.argmax(1), -1)
    joint = np.zeros((num_classes, num_classes), dtype=np.int64)
    confident = y_star >= 0
    np.add.at(joint, (labels[confident], y_star[confident]), 1)
    return joint, y_star


def calibrated_joint(joint: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``C~``: each row of the confident joint rescaled to the number of samples with that label."""
    counts = np.bincount(labels, minlength=joint.shape[0]).astype(np.float64)
    rows = joint.sum(1, keepdims=True).astype(np.float64)
    return np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)


def prune_by_noise_rate(probabilities: np.ndarray, labels: np.ndarray, calibrated: np.ndarray) -> np.ndarray:
    """Of each class' samples, the estimated number of issues with the largest margin (bool [N])."""
    n = len(labels)
    given = probabilities[np.arange(n), labels]
    others = probabilities.copy()
    others[np.arange(n), labels] = -np.inf
    margin = others.max(1) - given
    off_diagonal = calibrated.sum(1) - np.diag(calibrated)
    flagged = np.zeros(n, dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = min(int(round(off_diagonal[c])), len(members) - 1)
        if k > 0:
            flagged[members[np.argsort(-margin[members], kind="stable")[:k]]] = True
    return flagged


@FILTERS.register("confident")
class ConfidentLearning(NoiseFilter):
    """fgmm's confident learning (module docstring) on ``signals.probabilities``.

    Args:
        method: ``"prune_by_noise_rate"``, ``"confident_joint"`` (off-diagonal samples of C) or
            ``"both"`` (the intersection; cleanlab's default is the first).
        relabel_threshold: least probability of the suggested class to relabel instead of drop.

    ``info`` holds ``noise_rate`` (the estimate) and ``method``.
    """

    name = "confident"
    needs = ("probabilities",)

    def __init__(self, method: str = "prune_by_noise_rate", relabel_threshold: float = 0.5):
        if method not in ("prune_by_noise_rate", "confident_joint", "both"):
            raise ValueError(f"method must be prune_by_noise_rate, confident_joint or both, got '{method}'")
        self.method = method
        self.relabel_threshold = relabel_threshold

    def _fit(self, signals: FilterSignals) -> FilterResult:
        probabilities, labels = np.asarray(signals.probabilities, dtype=np.float64), signals.labels
        joint, y_star = confident_joint(probabilities, labels)
        calibrated = calibrated_joint(joint, labels)
        off_joint = (y_star >= 0) & (y_star != labels)
        pruned = prune_by_noise_rate(probabilities, labels, calibrated)
        flagged = {"prune_by_noise_rate": pruned, "confident_joint": off_joint, "both": pruned & off_joint}[self.method]
        suggested = probabilities.argmax(1)
        confidence = probabilities.max(1)
        decisions = decide(flagged, labels, suggested, confidence, self.relabel_threshold)
        noise_rate = float((calibrated.sum() - np.trace(calibrated)) / max(1, len(labels)))
        return FilterResult(decisions, 1.0 - probabilities[np.arange(len(labels)), labels], suggested,
                            info={"noise_rate": noise_rate, "method": self.method})


def estimate_noise_rate(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Share of wrong labels estimated by confident learning's calibrated joint."""
    joint, _ = confident_joint(np.asarray(probabilities, dtype=np.float64), np.asarray(labels, dtype=np.int64))
    calibrated = calibrated_joint(joint, np.asarray(labels))
    return float((calibrated.sum() - np.trace(calibrated)) / max(1, len(labels)))


@FILTERS.register("cleanlab")
class CleanlabFilter(NoiseFilter):
    """``cleanlab.filter.find_label_issues`` on ``signals.probabilities`` (the standard tool).

    Args:
        filter_by: cleanlab's ``filter_by`` (default ``"prune_by_noise_rate"``, cleanlab's own default).
        relabel_threshold: as in :class:`ConfidentLearning`.
        options: more keyword arguments for ``find_label_issues``.
    """

    name = "cleanlab"
    needs = ("probabilities",)

    def __init__(self, filter_by: str = "prune_by_noise_rate", relabel_threshold: float = 0.5, **options):
        self.filter_by = filter_by
        self.relabel_threshold = relabel_threshold
        self.options = options

    def _fit(self, signals: FilterSignals) -> FilterResult:
        cleanlab_filter = require("cleanlab.filter", "cleanlab")
        probabilities, labels = np.asarray(signals.probabilities, dtype=np.float64), signals.labels
        probabilities = probabilities / probabilities.sum(1, keepdims=True)
        flagged = np.asarray(cleanlab_filter.find_label_issues(labels, probabilities, filter_by=self.filter_by,
                                                               **self.options), dtype=bool)
        suggested = probabilities.argmax(1)
        decisions = decide(flagged, labels, suggested, probabilities.max(1), self.relabel_threshold)
        return FilterResult(decisions, 1.0 - probabilities[np.arange(len(labels)), labels], suggested,
                            info={"filter_by": self.filter_by})
