r"""Cross-modal agreement: does a sample's image agree with what its other modalities say?

Single-modality filters judge a label with the same pixels that make a hard image hard. fgmm has
more witnesses per sample — the image in the joint space, the sample's own text (captions, the
words around a crawled image), and class embeddings from text or the knowledge graph (e.g.
the ``"kg"`` class source of :class:`fgmm.FGModel`) — whose errors are largely independent. Each modality
:math:`m` gives a class distribution: out-of-sample probabilities
(``signals.modality_probabilities[m]``), or cosines of the sample's embedding to the class
embeddings, :math:`s_m(\mathbf{x}, c) = \cos(\mathbf{e}_m(\mathbf{x}), \mathbf{w}_{m,c})`, turned into
probabilities with a temperature fitted by likelihood. The evidence is combined as a product of
experts over the modalities a sample has (:math:`M_i`):

.. math::
    \log p(c \mid \mathbf{x}_i) = \sum_{m \in M_i} \log p_m(c \mid \mathbf{x}_i) - \log Z_i

(or ``signals.probabilities`` when the run already fused them). A label is suspect when the
combined evidence does not support it: the log-odds against the given label,
:math:`s_i = \log \frac{1 - p(\tilde y_i \mid \mathbf{x}_i)}{p(\tilde y_i \mid \mathbf{x}_i)}`, falls in a
noise component of a mixture whose noise components are anchored to the scores of labels known to be
wrong (``threshold="anchored"``, the default; :func:`~fgmm.filters.base.anchored_noise_split`: it
flags almost nothing on a clean dataset, where a free mixture would split off the hard half), or
confident learning's prune-by-noise-rate on :math:`p(\cdot \mid \mathbf{x})` decides
(``threshold="noise_rate"``, :mod:`fgmm.filters.confident`).

A suspect sample is **relabelled** only on cross-modal consensus — every modality it has votes for
the same class :math:`c \ne \tilde y_i`, and :math:`p(c \mid \mathbf{x}_i) \ge` ``relabel_threshold``;
it is **dropped** otherwise, and marked :data:`~fgmm.filters.base.OPEN_SET` when no modality
gives any class more than ``open_set_threshold`` (a sample of none of the classes).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.errors import ConfigError
from fgmm.filters.base import (
    FILTERS,
    OPEN_SET,
    Decision,
    FilterResult,
    FilterSignals,
    NoiseFilter,
    anchored_noise_split,
)
from fgmm.filters.confident import calibrated_joint, confident_joint, prune_by_noise_rate
from fgmm.filters.probabilities import fit_temperatures


def modality_distributions(signals: FilterSignals, modalities: list[str] | None = None) -> dict[str, np.ndarray]:
    """``{modality: [N, C]}`` class distributions of every modality the signals describe.

    ``modality_probabilities`` are used as they are; a modality with ``embeddings`` and
    ``class_embeddings`` gets softmax-normalised cosines with a temperature fitted to the given labels
    (on the samples that have the modality; rows of absent samples are uniform).
    """
    out: dict[str, np.ndarray] = {m: np.asarray(p, dtype=np.float64)
                                  for m, p in signals.modality_probabilities.items()}
    for m in signals.embeddings:
        if m in out or m not in signals.class_embeddings:
            continue
        cosines = F.normalize(signals.embeddings[m].float(), dim=1) @ F.normalize(
            signals.class_embeddings[m].float(), dim=1).T
        present = signals.mask(m)
        tau = fit_temperatures({m: cosines[present]}, signals.labels[present.numpy()])[m]
        probabilities = torch.softmax(tau * cosines, dim=1).double().numpy()
        probabilities[~present.numpy()] = 1.0 / signals.num_classes
        out[m] = probabilities
    if modalities is not None:
        unknown = [m for m in modalities if m not in out]
        if unknown:
            raise ConfigError(f"cross-modal agreement: no signal for modality {', '.join(unknown)} "
                              f"(available: {', '.join(out) or 'none'})")
        out = {m: out[m] for m in modalities}
    return out


@FILTERS.register("crossmodal")
class CrossModalAgreement(NoiseFilter):
    """Cross-modal agreement filter (module docstring).

    Args:
        modalities: which modalities vote (default: all that the signals describe).
        threshold: ``"anchored"`` (:func:`~fgmm.filters.base.anchored_noise_split` of the log-odds against
            the given label) or ``"noise_rate"`` (confident learning's prune-by-noise-rate).
        relabel_threshold: least combined probability of the consensus class to relabel.
        open_set_threshold: a suspect sample whose modalities all give every class less is open-set.
        seed: of the draws of known-wrong labels that anchor the mixture.

    ``info``: ``modalities``, ``noise_rate`` (estimated: one minus the mixture's clean share, or
    confident learning's estimate), ``shares`` (the mixture's weights), ``consensus`` (suspects
    relabelled on consensus).
    """

    name = "crossmodal"

    def __init__(self, modalities: list[str] | None = None, threshold: str = "anchored",
                 relabel_threshold: float = 0.5, open_set_threshold: float = 0.0, seed: int = 0):
        if threshold not in ("anchored", "noise_rate"):
            raise ConfigError(f"cross-modal agreement: threshold must be 'anchored' or 'noise_rate', got '{threshold}'")
        self.modalities = modalities
        self.threshold = threshold
        self.relabel_threshold = relabel_threshold
        self.open_set_threshold = open_set_threshold
        self.seed = seed

    def combined(self, signals: FilterSignals, per_modality: dict[str, np.ndarray]) -> np.ndarray:
        """The product of experts over each sample's modalities (or the run's fused probabilities)."""
        if signals.probabilities is not None:
            return np.asarray(signals.probabilities, dtype=np.float64)
        log_total = np.zeros((len(signals), signals.num_classes))
        for m, p in per_modality.items():
            log_total += np.log(np.clip(p, 1e-12, None)) * signals.mask(m).numpy()[:, None]
        log_total -= log_total.max(1, keepdims=True)
        total = np.exp(log_total)
        return total / total.sum(1, keepdims=True)

    def _fit(self, signals: FilterSignals) -> FilterResult:
        per_modality = modality_distributions(signals, self.modalities)
        if not per_modality and signals.probabilities is None:
            raise ConfigError("cross-modal agreement needs modality_probabilities, or embeddings with "
                              "class_embeddings, for at least one modality")
        labels = signals.labels
        rows = np.arange(len(labels))
        combined = self.combined(signals, per_modality)
        shares = None
        if self.threshold == "noise_rate":
            joint, _ = confident_joint(combined, labels)
            calibrated = calibrated_joint(joint, labels)
            noise_rate = float((calibrated.sum() - np.trace(calibrated)) / len(labels))
            flagged = prune_by_noise_rate(combined, labels, calibrated)
        else:
            split = anchored_noise_split(combined, labels, seed=self.seed)
            flagged, noise_rate, shares = split.flagged, split.noise_rate, split.shares
        # consensus: every modality a sample has votes for the same class
        votes = np.stack([np.where(signals.mask(m).numpy(), p.argmax(1), -1) for m, p in per_modality.items()]) \
            if per_modality else combined.argmax(1)[None, :]
        voted = votes >= 0
        first = np.where(voted.any(0), votes.max(0), -1)
        consensus = voted.any(0) & np.all((votes == first) | ~voted, axis=0)
        suggested = np.where(consensus, first, combined.argmax(1))
        relabel = flagged & consensus & (suggested != labels) & (combined[rows, suggested] >= self.relabel_threshold)
        strongest = np.max([np.where(signals.mask(m).numpy(), p.max(1), 0.0) for m, p in per_modality.items()],
                           axis=0) if per_modality else combined.max(1)
        open_set = flagged & ~relabel & (strongest < self.open_set_threshold)
        suggested = np.where(open_set, OPEN_SET, suggested)
        decisions = np.full(len(labels), Decision.KEEP, dtype=np.int8)
        decisions[flagged] = Decision.DROP
        decisions[relabel] = Decision.RELABEL
        return FilterResult(decisions, 1.0 - combined[rows, labels], suggested,
                            info={"modalities": list(per_modality), "noise_rate": noise_rate, "shares": shares,
                                  "consensus": int(relabel.sum())})
