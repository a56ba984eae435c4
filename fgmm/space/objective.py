r"""The training objective of :class:`~fgmm.space.FGModel`.

.. math::
    \mathcal{L} = \lambda_{ce} \frac{1}{|V|} \sum_{v \in V} \mathrm{CE}_\epsilon(\ell_v, y)
        + \lambda_{con} \sum_{(a, b)} \mathcal{L}^{ab}_{con}
        + \lambda_{met}\, \mathcal{L}_{met}(z_{image}, y)

:math:`V` are the classified views (each modality alone and the fused embedding), each restricted
to the samples where it exists, :math:`\mathrm{CE}_\epsilon` cross-entropy with label smoothing
:math:`\epsilon`, :math:`\mathcal{L}^{ab}_{con}` the class-aware InfoNCE
(:class:`~fgmm.space.losses.ClassAwareInfoNCE`, one learnable temperature per modality pair) over
the samples that carry both *a* and *b* (recordings and photos need not be paired: same-class items
are positives), and :math:`\mathcal{L}_{met}` an optional metric-learning loss
(:data:`METRIC_LOSSES`) on the embeddings of the first modality, for image→image retrieval.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from fgmm.registry import Registry
from fgmm.space.config import ObjectiveConfig
from fgmm.space.losses import ClassAwareInfoNCE

METRIC_LOSSES: Registry[nn.Module] = Registry("metric loss", populate="fgmm.retrieval.metric")
"""Metric-learning losses ``loss(embeddings [B, d], labels [B]) -> scalar``, created with
``(num_classes=..., dim=..., **options)``."""


class Objective(nn.Module):
    """The loss above (see the module docstring).

    Args:
        pairs: modality pairs aligned contrastively.
        config: weights and options (:class:`~fgmm.space.config.ObjectiveConfig`).
        num_classes, dim: passed to the metric loss (proxy-based losses own per-class proxies).
    """

    def __init__(self, pairs: list[tuple[str, str]], config: ObjectiveConfig, num_classes: int, dim: int):
        super().__init__()
        self.pairs = list(pairs)
        self.config = config
        self.contrastive = nn.ModuleDict({
            f"{a}__{b}": ClassAwareInfoNCE(config.init_temperature, config.instance_weight) for a, b in self.pairs})
        self.metric = (METRIC_LOSSES.create(config.metric, num_classes=num_classes, dim=dim, **config.metric_options)
                       if config.metric else None)

    def forward(self, embeddings: Mapping[str, torch.Tensor], masks: Mapping[str, torch.Tensor],
                logits: Mapping[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"loss": total, "loss_con_<a>_<b>": ..., "loss_ce_<view>": ..., "loss_metric": ...}``.

        Args:
            embeddings: unit ``[B, d]`` embedding per modality (rows of absent samples ignored).
            masks: ``[B]`` bool per modality and per view in ``logits``.
            logits: ``[B, C]`` class logits per view (classes the model cannot train on at ``-inf``).
            labels: ``[B]`` class indices (``-1``: unknown, left out).
        """
        cfg = self.config
        terms: dict[str, torch.Tensor] = {}
        total = labels.new_zeros((), dtype=torch.float32)
        for a, b in self.pairs:
            if a not in embeddings or b not in embeddings:
                continue
            both = masks[a] & masks[b]
            if int(both.sum()) < 2:
                continue
            term = self.contrastive[f"{a}__{b}"](embeddings[a][both], embeddings[b][both], labels[both])
            terms[f"loss_con_{a}_{b}"] = term.detach()
            total = total + cfg.contrastive_weight * term
        ce_terms = []
        for view, view_logits in logits.items():
            present = masks[view] & (labels >= 0)
            if cfg.ce_weight > 0 and bool(present.any()):
                # only the classes the model trains on compete (masked ones are -inf in every row)
                columns = torch.nonzero(~torch.isinf(view_logits[0])).flatten()
                position = torch.full((view_logits.shape[1],), -1, dtype=torch.long, device=labels.device)
                position[columns] = torch.arange(len(columns), device=labels.device)
                term = F.cross_entropy(view_logits[present][:, columns], position[labels[present]],
                                       label_smoothing=cfg.label_smoothing)
                terms[f"loss_ce_{view}"] = term.detach()
                ce_terms.append(term)
        if ce_terms:
            total = total + cfg.ce_weight * torch.stack(ce_terms).mean()
        if self.metric is not None:
            first = next(iter(embeddings))
            present = masks[first] & (labels >= 0)
            if int(present.sum()) >= 2:
                term = self.metric(embeddings[first][present], labels[present])
                terms["loss_metric"] = term.detach()
                total = total + cfg.metric_weight * term
        terms["loss"] = total
        return terms
