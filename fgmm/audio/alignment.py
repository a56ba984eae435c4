r"""Class-level alignment of images and recordings for cross-modal retrieval.

CUB's recordings are not paired with its photos: an image and a recording correspond when they show /
sound the same species (FG-XMedia's class-level relevance). Each modality therefore gets its own
classifier (images: a head on image features; audio: :mod:`fgmm.audio.recognition`), and both are
mapped into one shared space, the space of class distributions over the classes they have in common:

.. math::
    \mathbf{z}(x) = \sqrt{p(\cdot \mid x)} \in \mathbb{R}^{C}, \qquad \lVert \mathbf{z} \rVert_2 = 1,
    \qquad \operatorname{sim}(x_\text{img}, x_\text{aud}) = \mathbf{z}_\text{img}^\top \mathbf{z}_\text{aud}
    = \sum_c \sqrt{p(c \mid x_\text{img})\, p(c \mid x_\text{aud})},

the Bhattacharyya coefficient of the two posteriors (1 for identical distributions, 0 for disjoint
ones). Square-root posteriors are unit vectors, so the space is a cosine space that
:class:`~fgmm.retrieval.index.EmbeddingIndex` indexes as it is; the class "prototypes" of the space are
the one-hot vectors, shared by both modalities. (The plain product :math:`\sum_c p\,q`, the probability
that both items are of the same class under independent posteriors, is :func:`same_class_probability`.)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def restrict(log_probs: torch.Tensor, classes: Sequence[int], to: Sequence[int]) -> torch.Tensor:
    """Log-probabilities over ``classes`` (global labels of the columns) -> over ``to``, renormalised.

    Classes of ``to`` that ``classes`` lacks get probability 0 (``-inf``).

    Raises:
        ValueError: ``classes`` and ``to`` share no class.
    """
    position = {int(c): i for i, c in enumerate(classes)}
    columns = [position.get(int(c)) for c in to]
    if all(c is None for c in columns):
        raise ValueError("the two class lists share no class")
    out = torch.full((log_probs.shape[0], len(columns)), float("-inf"), dtype=log_probs.dtype)
    present = [i for i, c in enumerate(columns) if c is not None]
    out[:, present] = log_probs[:, [columns[i] for i in present]]
    return torch.log_softmax(out, dim=1)


def posterior_embedding(log_probs: torch.Tensor) -> torch.Tensor:
    """``[N, C]`` unit vectors :math:`\\sqrt{p}` of ``[N, C]`` log-probabilities (a cosine space)."""
    return torch.exp(0.5 * torch.log_softmax(log_probs, dim=1))


def bhattacharyya_scores(query_log_probs: torch.Tensor, item_log_probs: torch.Tensor) -> torch.Tensor:
    """``[Q, N]`` Bhattacharyya coefficients of two sets of posteriors over the same classes."""
    return posterior_embedding(query_log_probs) @ posterior_embedding(item_log_probs).T


def same_class_probability(query_log_probs: torch.Tensor, item_log_probs: torch.Tensor) -> torch.Tensor:
    """``[Q, N]`` :math:`\\sum_c p(c|q)\\,p(c|n)`: the probability that query and item share their class."""
    return torch.softmax(query_log_probs, dim=1) @ torch.softmax(item_log_probs, dim=1).T
