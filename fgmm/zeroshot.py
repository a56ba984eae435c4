r"""The zero-shot (ZSL) and generalised zero-shot (GZSL) evaluation protocol.

The classifiers are :class:`fgmm.FGModel` class sources that name every class of a knowledge graph
(``"kg"``, ``"gnn"``, ``"attributes"``: :mod:`fgmm.space.class_sources`); this module holds what
measures them, whatever the model:

* :func:`zero_shot_split`: train on the seen classes' training samples only; every sample of an
  unseen class is a test sample.
* :func:`zsl_accuracy`: mean per-class top-1 when only the unseen classes compete.
* :func:`gzsl_accuracy`: all classes compete; seen, unseen and their harmonic mean. Seen classes
  dominate, which calibrated stacking (Chao et al., 2016) corrects by subtracting :math:`\gamma` from
  every seen-class score (:func:`calibrated_stacking`), with :math:`\gamma` chosen on seen classes only
  (:func:`calibration_split`, :func:`choose_gamma`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


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

    ``scores`` are cosines or logits of one scale; the default grid runs from -0.2 to 0.6 in
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
