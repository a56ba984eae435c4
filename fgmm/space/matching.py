r"""Class-aware cross-media matching in the joint space of an :class:`~fgmm.space.FGModel`.

Two items (a text and a photo, a photo and a recording) match when they show the same species.
With the model's class posteriors :math:`p(c \mid q)`, :math:`p(c \mid g)` of the two items (each
from its own modality alone, with that modality's calibration) and their joint embeddings
:math:`z_q, z_g`,

.. math::
    \operatorname{score}(q, g) = \log \sum_c p(c \mid q)\, p(c \mid g) \;+\; s \langle z_q, z_g \rangle ,

the log-probability that both items belong to the same class (the Bayes-optimal ranking for
class-level relevance when the posteriors are calibrated) plus the instance-level cosine at the
model's class scale :math:`s`, which orders items within a class and carries what the class
posteriors miss. The posterior term reaches classes the query's modality never trained on (a
description of a species nobody captioned is scored through the knowledge graph's class
embeddings, with the calibrated offset :math:`\gamma_m` of :mod:`fgmm.space.fitting`); the cosine
term alone is :meth:`FGModel.embed` retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

EPS = 1e-12
"""Floor of the same-class probability (keeps the logarithm finite)."""


@dataclass
class RetrievalKeys:
    """What one side of a class-aware match needs: ``embeddings`` ``[N, d]`` (unit norm) and
    ``posteriors`` ``[N, C]`` (rows sum to one)."""

    embeddings: Tensor
    posteriors: Tensor

    def __post_init__(self) -> None:
        if self.embeddings.shape[0] != self.posteriors.shape[0]:
            raise ValueError(f"{self.embeddings.shape[0]} embeddings but {self.posteriors.shape[0]} posteriors")

    def __len__(self) -> int:
        return int(self.embeddings.shape[0])

    def select(self, index: Tensor | list[int]) -> RetrievalKeys:
        return RetrievalKeys(self.embeddings[index], self.posteriors[index])


def class_aware_scores(query: RetrievalKeys, gallery: RetrievalKeys, scale: float) -> Tensor:
    """``[Q, G]`` scores of the module docstring."""
    same_class = query.posteriors.float() @ gallery.posteriors.float().T
    return torch.log(same_class.clamp_min(EPS)) + scale * (query.embeddings.float() @ gallery.embeddings.float().T)
