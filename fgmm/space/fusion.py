r"""Fusion of per-modality joint embeddings into one, with masks for missing modalities.

Every fusion module takes ``embeddings`` (``{modality: [B, d]}``) and ``masks``
(``{modality: [B]}`` bool, ``True`` where the sample carries the modality) and returns ``[B, d]``.
Absent modalities contribute nothing: their rows may hold anything (zeros by convention). A sample
with a single modality gets (a function of) that modality's embedding alone, so one model serves
image-only and image+text recognition. Modules are created by name from :data:`FUSIONS`::

    fusion = FUSIONS.create("gated", modalities=["image", "text"], dim=256)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from fgmm.errors import DataError
from fgmm.registry import Registry

FUSIONS: Registry[nn.Module] = Registry("fusion")


def stack_present(modalities: Sequence[str], embeddings: Mapping[str, torch.Tensor],
                  masks: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, M, d]`` embeddings (absent ones zeroed) and the ``[B, M]`` presence mask, in ``modalities`` order.

    Raises:
        DataError: a sample carries none of the modalities.
    """
    reference = next(embeddings[m] for m in modalities if m in embeddings)
    rows = []
    present = []
    for m in modalities:
        if m in embeddings:
            mask = masks[m].bool()
            rows.append(embeddings[m] * mask[:, None].to(embeddings[m].dtype))
        else:
            mask = torch.zeros(reference.shape[0], dtype=torch.bool, device=reference.device)
            rows.append(torch.zeros_like(reference))
        present.append(mask)
    mask = torch.stack(present, dim=1)
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        raise DataError(None, f"{int(empty.sum())} sample(s) carry none of the modalities {list(modalities)}; "
                              "fusion needs at least one")
    return torch.stack(rows, dim=1), mask


@FUSIONS.register("mean")
class MeanFusion(nn.Module):
    r"""Average of the present modalities: :math:`z = \frac{1}{|M_b|} \sum_{m \in M_b} z_m`."""

    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim

    def forward(self, embeddings: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        stacked, mask = stack_present(self.modalities, embeddings, masks)
        return stacked.sum(1) / mask.sum(1, keepdim=True).to(stacked.dtype)


@FUSIONS.register("gated")
class GatedFusion(nn.Module):
    r"""Per-dimension softmax gates over the present modalities.

    .. math::
        h = [\,z_1 \odot \mu_1; \dots; z_M \odot \mu_M; \mu\,], \qquad
        a = W h + b \in \mathbb{R}^{M \times d}

    .. math::
        \alpha_{m,k} = \frac{\mu_m\, e^{a_{m,k}}}{\sum_{m'} \mu_{m'}\, e^{a_{m',k}}}, \qquad
        z_k = \sum_m \alpha_{m,k}\, z_{m,k}

    with :math:`\mu_m \in \{0, 1\}` the presence mask. Gates see every present modality, so the
    weight of text can depend on how informative the image is; with one modality present its gate
    is 1 and :math:`z = z_m`. The bias is initialised to zero: training starts from the mean.

    Args:
        modalities: the modalities fused, in a fixed order.
        dim: joint dimension :math:`d`.
    """

    def __init__(self, modalities: Sequence[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim
        m = len(self.modalities)
        self.gate = nn.Linear(m * dim + m, m * dim)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, embeddings: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        stacked, mask = stack_present(self.modalities, embeddings, masks)
        b, m, d = stacked.shape
        h = torch.cat([stacked.reshape(b, m * d), mask.to(stacked.dtype)], dim=1)
        logits = self.gate(h).reshape(b, m, d).masked_fill(~mask[:, :, None], float("-inf"))
        return (torch.softmax(logits, dim=1) * stacked).sum(1)


@FUSIONS.register("attention")
class AttentionFusion(nn.Module):
    r"""A transformer layer over modality tokens, pooled over the present ones.

    .. math::
        t_m = z_m + e_m, \qquad
        (o_1, \dots, o_M) = \mathrm{TransformerLayer}(t_1, \dots, t_M;\ \text{key mask } \mu), \qquad
        z = \frac{\sum_m \mu_m o_m}{\sum_m \mu_m}

    where :math:`e_m` is a learned modality-type embedding and absent modalities are excluded from
    attention by the key padding mask.

    Args:
        modalities: the modalities fused, in a fixed order.
        dim: joint dimension :math:`d`.
        heads: attention heads (must divide ``dim``).
        dropout: dropout inside the transformer layer.
    """

    def __init__(self, modalities: Sequence[str], dim: int, heads: int = 4, dropout: float = 0.1):
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim
        self.type_embedding = nn.Parameter(torch.zeros(len(self.modalities), dim))
        self.layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                                batch_first=True, norm_first=True)

    def forward(self, embeddings: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
        stacked, mask = stack_present(self.modalities, embeddings, masks)
        out = self.layer(stacked + self.type_embedding, src_key_padding_mask=~mask)
        weights = mask.to(out.dtype)[:, :, None]
        return (out * weights).sum(1) / weights.sum(1)
