"""Deterministic train/test splits.

The benchmark contract (DESIGN.md, section 3) holds out a fixed, seeded fraction of each class when a
dataset has no official test split. The split of a class depends only on ``(seed, class label,
the class's samples in order)``, so adding or removing other classes never changes it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def holdout_split(labels: Sequence[int] | np.ndarray, fraction: float, seed: int = 0) -> list[str]:
    """Hold out ``fraction`` of every class as ``"test"``; the rest is ``"train"``.

    A class of :math:`n \\ge 2` samples gets :math:`\\max(1, \\min(n - 1, \\lfloor f n + 1/2 \\rfloor))`
    test samples, so every class keeps at least one training sample and one test sample; a class
    of one sample stays in train. Samples with label ``-1`` (unknown) stay in train.

    Args:
        labels: class index of each sample, in dataset order.
        fraction: share of each class to hold out, in ``(0, 1)``.
        seed: the split is a pure function of ``(labels, fraction, seed)``.

    Returns:
        ``"train"`` / ``"test"`` for each sample, in the order of ``labels``.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    by_class: dict[int, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        if int(label) >= 0:
            by_class[int(label)].append(index)
    split = ["train"] * len(labels)
    for label, members in by_class.items():
        n = len(members)
        if n < 2:
            continue
        n_test = max(1, min(n - 1, math.floor(fraction * n + 0.5)))
        order = np.random.default_rng([seed, label]).permutation(n)
        for position in order[:n_test]:
            split[members[position]] = "test"
    return split


def holdout_protocol(fraction: float, seed: int) -> str:
    """The ``split_protocol`` string of :func:`holdout_split`, e.g. ``"holdout-20%-per-class-seed0"``."""
    return f"holdout-{fraction * 100:g}%-per-class-seed{seed}"
