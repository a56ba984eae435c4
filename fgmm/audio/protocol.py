r"""Development protocols for a recording set without held-out recordings, and duplicate detection.

The CUB bundle holds no held-out recording (its ``is_train=0`` rows are kept apart), so development
holds out one recording of a class that has at least two at a time:

* :func:`leave_one_out_folds`: each such recording once, every other recording trains;
* :func:`one_shot_folds`: the held-out recording's class keeps only **one** other training recording,
  the situation of most classes (one recording each).

:func:`duplicate_recordings` finds recordings that repeat another one (the same audio under another
file name), which would otherwise be their own nearest neighbour.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def duplicate_recordings(vectors: torch.Tensor, threshold: float = 0.999) -> list[int]:
    """Indices of recordings that repeat an earlier one: cosine of their ``[N, d]`` recording vectors
    ``>= threshold`` (the same audio, whatever the file name or encoding). The CUB bundle has one such pair."""
    pooled = F.normalize(vectors.float(), dim=1)
    similar = torch.triu(pooled @ pooled.T >= threshold, diagonal=1)
    return sorted({int(j) for j in similar.nonzero()[:, 1]})


@dataclass(frozen=True)
class Fold:
    """One dev evaluation: fit on ``train`` recordings, classify ``test`` (indices into a recording list)."""

    train: np.ndarray
    test: np.ndarray


def _by_class(labels: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        groups[int(y)].append(i)
    return groups


def leave_one_out_folds(labels: Sequence[int], min_recordings: int = 2) -> list[Fold]:
    """Leave-one-recording-out over the classes with at least ``min_recordings`` recordings: each of their
    recordings is held out once; every other recording trains."""
    everything = np.arange(len(labels))
    return [Fold(everything[everything != i], np.array([i]))
            for members in _by_class(labels).values() if len(members) >= min_recordings for i in members]


def one_shot_folds(labels: Sequence[int], seed: int = 0, repeats: int = 3, min_recordings: int = 2) -> list[Fold]:
    """Like :func:`leave_one_out_folds`, but the held-out recording's class keeps only **one** other training
    recording (drawn ``repeats`` times, seeded): the situation of most classes in the CUB audio bundle."""
    rng = np.random.default_rng(seed)
    groups = _by_class(labels)
    folds = []
    for members in groups.values():
        if len(members) < min_recordings:
            continue
        for i in members:
            others = [j for j in members if j != i]
            for _ in range(repeats):
                keep = int(rng.choice(others))
                train = [j for j in range(len(labels)) if j not in members or j == keep]
                folds.append(Fold(np.array(train), np.array([i])))
    return folds
