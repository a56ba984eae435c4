r"""Open-set detection: training samples that belong to none of the classes (web noise).

A crawled image of a bird outside the class list (or of no bird at all) has no right label to
relabel to; it must be dropped. :class:`OpenSetFilter` scores how far a sample is from every class
(higher: more likely open-set) with one of :data:`OPEN_SET_SCORES`:

.. math::
    \text{msp}(\mathbf{x}) &= 1 - \max_c \hat p_c(\mathbf{x})
    \qquad \text{(maximum softmax probability; Hendrycks \& Gimpel, ICLR 2017)}

    \text{energy}(\mathbf{x}) &= -T \log \sum_c e^{f_c(\mathbf{x}) / T}
    \qquad \text{(Liu et al., NeurIPS 2020)}

    \text{prototype}(\mathbf{x}) &= 1 - \max_c \cos(\mathbf{z}, \mathbf{w}_c)

with out-of-sample probabilities :math:`\hat p` / scores :math:`f` of the run, and class prototypes
:math:`\mathbf{w}_c`: ``signals.class_embeddings[modality]`` when given (e.g. KG class prototypes),
else leave-one-out means of the centred, unit-norm features of each given class. Scores are split by
a two-component Gaussian mixture (:func:`fgmm.filters.base.mixture_split`) or, with ``rate``, the
top ``rate`` share is flagged. Flagged samples are dropped with the suggestion
:data:`~fgmm.filters.base.OPEN_SET`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.errors import ConfigError
from fgmm.filters.base import FILTERS, OPEN_SET, Decision, FilterResult, FilterSignals, NoiseFilter, mixture_split
from fgmm.registry import Registry

OPEN_SET_SCORES: Registry[Callable[..., np.ndarray]] = Registry("open-set score")


@OPEN_SET_SCORES.register("msp")
def msp_score(signals: FilterSignals, **_) -> np.ndarray:
    if signals.probabilities is None:
        raise ConfigError("the 'msp' open-set score needs out-of-sample probabilities")
    return 1.0 - np.asarray(signals.probabilities).max(1)


@OPEN_SET_SCORES.register("energy")
def energy_score(signals: FilterSignals, temperature: float = 1.0, **_) -> np.ndarray:
    if signals.logits is None:
        raise ConfigError("the 'energy' open-set score needs out-of-sample logits (FilterSignals.logits)")
    logits = torch.as_tensor(np.asarray(signals.logits), dtype=torch.float64)
    return (-temperature * torch.logsumexp(logits / temperature, dim=1)).numpy()


def leave_one_out_prototypes(features: torch.Tensor, labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """``[N, C]`` cosines of each sample to every class mean of centred unit features, its own
    contribution removed from its own class' mean."""
    z = F.normalize(features.double(), dim=1)
    z = F.normalize(z - z.mean(0), dim=1)
    target = torch.as_tensor(labels)
    sums = torch.zeros(num_classes, z.shape[1], dtype=torch.float64).index_add_(0, target, z)
    counts = torch.bincount(target, minlength=num_classes)
    dots = z @ sums.T
    own = dots[torch.arange(len(z)), target] - 1.0  # z_i . (sum_c - z_i)
    dots[torch.arange(len(z)), target] = own
    norms = sums.norm(dim=1).expand(len(z), -1).clone()
    own_norm = (sums[target] - z).norm(dim=1)
    norms[torch.arange(len(z)), target] = own_norm
    cosines = dots / norms.clamp_min(1e-12)
    cosines[:, counts == 0] = -1.0
    cosines[(counts[target] <= 1), target[counts[target] <= 1]] = -1.0
    return cosines


@OPEN_SET_SCORES.register("prototype")
def prototype_score(signals: FilterSignals, modality: str = "image", **_) -> np.ndarray:
    if modality in signals.class_embeddings and modality in signals.embeddings:
        z = F.normalize(signals.embeddings[modality].double(), dim=1)
        cosines = z @ F.normalize(signals.class_embeddings[modality].double(), dim=1).T
    elif signals.features is not None:
        cosines = leave_one_out_prototypes(torch.as_tensor(signals.features), signals.labels, signals.num_classes)
    else:
        raise ConfigError("the 'prototype' open-set score needs features, or embeddings and class_embeddings "
                          f"of modality '{modality}'")
    return (1.0 - cosines.max(1).values).numpy()


@FILTERS.register("openset")
class OpenSetFilter(NoiseFilter):
    """Flags samples far from every class and drops them (module docstring).

    Args:
        score: ``"energy"``, ``"msp"`` or ``"prototype"``.
        rate: flag the top ``rate`` share of scores instead of the mixture split.
        temperature: of the energy score.
        modality: whose embeddings / class embeddings the prototype score reads.
    """

    name = "openset"

    def __init__(self, score: str = "energy", rate: float | None = None, temperature: float = 1.0,
                 modality: str = "image"):
        self.score_fn = OPEN_SET_SCORES.get(score)
        self.score = score
        self.rate = rate
        self.temperature = temperature
        self.modality = modality

    def _fit(self, signals: FilterSignals) -> FilterResult:
        scores = self.score_fn(signals, temperature=self.temperature, modality=self.modality)
        if self.rate is not None:
            flagged = scores > np.quantile(scores, 1.0 - self.rate) if self.rate > 0 else np.zeros(len(scores), bool)
        else:
            flagged, _ = mixture_split(scores)
        decisions = np.where(flagged, Decision.DROP, Decision.KEEP).astype(np.int8)
        suggested = np.where(flagged, OPEN_SET, signals.labels)
        return FilterResult(decisions, scores, suggested, name=f"openset_{self.score}",
                            info={"score": self.score, "flagged": int(flagged.sum())})
