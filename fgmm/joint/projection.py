"""Heads into the joint embedding space.

:class:`ProjectionHead` maps one modality's encoder features into the shared space of dimension
:math:`d`; the joint model scores embeddings there with :class:`fgmm.models.heads.CosineClassifier`
(one prototype per class), so classification and retrieval read the same geometry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    r"""Project encoder features :math:`f \in \mathbb{R}^{d_m}` into the joint space.

    .. math::
        z = \frac{g(\mathrm{LN}(f))}{\lVert g(\mathrm{LN}(f)) \rVert_2}, \qquad
        g = \begin{cases} W_2\,\mathrm{Dropout}(\mathrm{GELU}(W_1 \cdot)) & \text{hidden} > 0 \\
                          W \cdot & \text{hidden} = 0 \end{cases}

    Layer norm makes heads indifferent to the scale of frozen features (pooled CNN activations
    and unit-norm sentence embeddings alike).

    Args:
        in_dim: encoder feature dimension :math:`d_m`.
        out_dim: joint dimension :math:`d`.
        hidden: width of the hidden layer; ``0`` gives a linear projection (as in CLIP).
        dropout: dropout after the hidden activation.
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        if hidden > 0:
            self.body: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        else:
            self.body = nn.Linear(in_dim, out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(self.norm(features)), dim=-1)
