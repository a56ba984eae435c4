"""Heads into and out of the joint embedding space.

:class:`ProjectionHead` maps one modality's encoder features into the shared space of dimension
:math:`d`; :class:`CosineClassifier` scores an embedding against one prototype per class in that
same space, so classification and retrieval read the same geometry.
"""

from __future__ import annotations

import math

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


class CosineClassifier(nn.Module):
    r"""Class logits as scaled cosine similarity to class prototypes in the joint space.

    .. math::
        \ell_c = e^{\sigma}\, \frac{z^\top w_c}{\lVert z \rVert\, \lVert w_c \rVert}

    with prototypes :math:`W \in \mathbb{R}^{C \times d}` and a learnable log-scale :math:`\sigma`.
    Prototypes may be initialised from external class embeddings (e.g. a GNN over the knowledge
    graph, or projected class descriptions).

    Args:
        dim: joint dimension :math:`d`.
        num_classes: :math:`C`.
        init_scale: initial :math:`e^{\sigma}`.
        prototypes: optional ``[C, d]`` initial prototypes.
    """

    def __init__(self, dim: int, num_classes: int, init_scale: float = 16.0,
                 prototypes: torch.Tensor | None = None):
        super().__init__()
        if prototypes is not None and tuple(prototypes.shape) != (num_classes, dim):
            raise ValueError(f"prototypes must be [{num_classes}, {dim}], got {tuple(prototypes.shape)}")
        weight = prototypes.clone().float() if prototypes is not None else torch.randn(num_classes, dim) / dim**0.5
        self.prototypes = nn.Parameter(weight)
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        scale = self.log_scale.clamp(max=math.log(100.0)).exp()
        return scale * F.normalize(z, dim=-1) @ F.normalize(self.prototypes, dim=-1).T
