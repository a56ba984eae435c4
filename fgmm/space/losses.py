r"""The contrastive loss of the joint embedding space: class-aware cross-modal alignment.

Fine-grained data breaks one assumption of CLIP's InfoNCE: that every other caption in a batch is
a negative. Two captions of the same species describe the same visual concept, and pushing them
apart fights the classifier. :class:`ClassAwareInfoNCE` therefore treats every same-class item as
a positive (multi-positive contrastive loss, SupCon's :math:`\mathcal{L}_{out}` applied across
modalities); :class:`fgmm.space.objective.Objective` adds it to the model's cross-entropy.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ClassAwareInfoNCE(nn.Module):
    r"""Symmetric multi-positive InfoNCE between two modalities with a learnable temperature.

    For L2-normalised embeddings :math:`u_i` (modality *a*) and :math:`v_j` (modality *b*) of a
    batch of :math:`B` pairs :math:`(u_i, v_i)` with labels :math:`y_i`:

    .. math::
        s_{ij} = e^{\tau}\, u_i^\top v_j, \qquad
        p_{ij} = \frac{e^{s_{ij}}}{\sum_k e^{s_{ik}}}, \qquad
        P(i) = \{\, j : y_j = y_i \ge 0 \,\} \cup \{ i \}

    .. math::
        q_{ij} = w\, [j = i] + (1 - w)\, \frac{[j \in P(i)]}{|P(i)|}, \qquad
        \mathcal{L}_{a \to b} = -\frac{1}{B} \sum_i \sum_j q_{ij} \log p_{ij}

    and :math:`\mathcal{L} = \tfrac12 (\mathcal{L}_{a \to b} + \mathcal{L}_{b \to a})`, the
    second term using :math:`s^\top`. :math:`\tau` is a learnable log-scale (CLIP: initial
    temperature 0.07, scale clamped to 100).

    The gradient is :math:`\partial \mathcal{L}_i / \partial s_{ij} = p_{ij} - q_{ij}`: an
    other-class pair (:math:`q_{ij} = 0`) is always pushed apart, while a same-class pair is pulled
    towards its share :math:`q_{ij} > 0` of the probability mass instead of being driven to zero as
    in CLIP. The instance weight :math:`w` interpolates between the purely class-level loss
    (:math:`w = 0`, the default) and CLIP's InfoNCE (:math:`w = 1`, every other item a negative);
    intermediate values keep the own pair slightly ahead of its classmates, which helps
    instance-level Recall@K.

    Args:
        init_temperature: initial temperature :math:`e^{-\tau}`.
        instance_weight: :math:`w \in [0, 1]`.
        max_scale: upper clamp of :math:`e^{\tau}`.
    """

    def __init__(self, init_temperature: float = 0.07, instance_weight: float = 0.0, max_scale: float = 100.0):
        super().__init__()
        if not 0.0 <= instance_weight <= 1.0:
            raise ValueError(f"instance_weight must be in [0, 1], got {instance_weight}")
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.instance_weight = instance_weight
        self.max_log_scale = math.log(max_scale)

    @property
    def temperature(self) -> float:
        return float(torch.exp(-self.log_scale.detach().clamp(max=self.max_log_scale)))

    def targets(self, labels: torch.Tensor) -> torch.Tensor:
        """The target distribution :math:`q` (rows sum to one) for a batch of ``labels``.

        A label of ``-1`` (unknown class) makes the item its own only positive.
        """
        eye = torch.eye(len(labels), device=labels.device)
        same = ((labels[:, None] == labels[None, :]) & (labels[:, None] >= 0)).float().maximum(eye)
        return self.instance_weight * eye + (1.0 - self.instance_weight) * same / same.sum(1, keepdim=True)

    def forward(self, u: torch.Tensor, v: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of the paired batch: ``u[i]`` and ``v[i]`` belong together, ``labels[i]`` is their class."""
        if u.shape != v.shape or u.shape[0] != labels.shape[0]:
            raise ValueError(f"paired embeddings must match: {tuple(u.shape)}, {tuple(v.shape)}, "
                             f"{tuple(labels.shape)} labels")
        scores = self.log_scale.clamp(max=self.max_log_scale).exp() * u @ v.T
        q = self.targets(labels)  # symmetric, so it serves both directions
        a_to_b = -(q * F.log_softmax(scores, dim=1)).sum(1).mean()
        b_to_a = -(q * F.log_softmax(scores.T, dim=1)).sum(1).mean()
        return 0.5 * (a_to_b + b_to_a)
