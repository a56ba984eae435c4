"""An image classifier that trains on cached features or end to end through its backbone."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.encoders.base import Encoder


class FeatureNorm(nn.Module):
    r"""L2-normalise, then standardise with statistics of the training features.

    .. math:: \tilde{\mathbf{x}} = \frac{\mathbf{x}/\lVert\mathbf{x}\rVert_2 - \boldsymbol\mu}{\boldsymbol\sigma}

    :math:`\boldsymbol\mu, \boldsymbol\sigma` are buffers set by :meth:`fit` (identity until then),
    so they travel with checkpoints.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    @torch.no_grad()
    def fit(self, features: Tensor) -> FeatureNorm:
        unit = F.normalize(features.float(), dim=1)
        self.mean.copy_(unit.mean(0))
        self.std.copy_(unit.std(0).clamp_min(1e-6))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return (F.normalize(x, dim=-1) - self.mean) / self.std


class ImageClassifier(nn.Module):
    r"""Backbone (optional) → :class:`FeatureNorm` → dropout → head.

    .. math:: \mathbf{z} = \mathrm{head}\big(\mathrm{Dropout}_p(\mathrm{norm}(f_\theta(\mathbf{I})))\big)

    A batch holding ``"image"`` (preprocessed pixels) goes through ``encoder``; one holding
    ``"features"`` (cached encoder outputs) skips it. The same module therefore trains a head on
    cached features on a CPU and fine-tunes the backbone end to end on a GPU
    (``encoder.frozen = False``). ``forward`` returns ``{"logits", "embedding"}``.
    """

    def __init__(self, head: nn.Module, dim: int, encoder: Encoder | None = None, dropout: float = 0.0):
        super().__init__()
        self.encoder = encoder
        self.norm = FeatureNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.head = head

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        if "features" in batch:
            features = batch["features"]
        elif "image" in batch and self.encoder is not None:
            features = self.encoder.encode(batch["image"])
        else:
            raise KeyError(f"batch needs 'features' or 'image' (with an encoder); got {sorted(batch)}")
        embedding = self.norm(features)
        return {"logits": self.head(self.dropout(embedding)), "embedding": embedding}
