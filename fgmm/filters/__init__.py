"""Noisy-label filters: which training labels to trust, drop or fix (DESIGN.md, "Noisy web data").

Every filter reads a training run's signals (:class:`FilterSignals`: features, labels,
out-of-sample probabilities, per-epoch losses, per-modality embeddings and text/KG class
embeddings) and returns per-sample decisions (:class:`FilterResult`: keep / drop / relabel, scores,
suggested labels). Filters are created by name from :data:`FILTERS`::

    from fgmm.filters import build_signals, create_filter

    signals = build_signals({"image": x_img, "text": x_txt}, labels, num_classes)  # out-of-fold, per modality
    result = create_filter("crossmodal").fit(signals)
    keep, new_labels = result.cleaned(labels)

Registered: ``confident`` (confident learning), ``cleanlab`` (cleanlab's ``find_label_issues``),
``crossmodal`` (cross-modal agreement), ``small_loss`` (per-epoch losses + GMM), ``coteaching``,
``coteaching_plus``, ``peer`` (two heads trained with :class:`fgmm.train.Trainer`) and ``openset``
(energy / max-softmax / prototype distance). Out-of-fold scores come from :class:`fgmm.FGModel` fits
(:class:`ModelScores`). :func:`clean_labels` runs the whole recipe on a dataset's features,
:func:`fit_filtered` trains an FGModel through a filter in one call::

    run = fit_filtered(fgmm.create_model("image", dataset=train_set), train_set, "crossmodal", cache=cache)

:mod:`fgmm.filters.training` holds the per-epoch selection wrappers that plug into any Trainer run.
"""

from fgmm.filters.base import (
    FILTERS,
    OPEN_SET,
    Decision,
    FilterResult,
    FilterSignals,
    NoiseFilter,
    create_filter,
    detection_scores,
    mixture_split,
)
from fgmm.filters.confident import CleanlabFilter, ConfidentLearning, estimate_noise_rate
from fgmm.filters.crossmodal import CrossModalAgreement
from fgmm.filters.openset import OpenSetFilter
from fgmm.filters.probabilities import ModelScores, fit_model, out_of_fold_scores
from fgmm.filters.recipe import (
    FilteredFit,
    LabelJudgement,
    build_signals,
    clean_labels,
    fit_filtered,
    judge_labels,
    sample_text_features,
)
from fgmm.filters.small_loss import SmallLossFilter, TwoHeadFilter
from fgmm.filters.training import (
    SelectiveTraining,
    TwoHeadSelection,
    fit_selective,
    selection_head,
    small_loss_weights,
)

__all__ = [
    "FILTERS", "OPEN_SET", "CleanlabFilter", "ConfidentLearning", "CrossModalAgreement", "Decision", "FilterResult",
    "FilteredFit", "FilterSignals", "LabelJudgement", "ModelScores", "NoiseFilter", "OpenSetFilter",
    "SelectiveTraining", "SmallLossFilter", "TwoHeadFilter", "TwoHeadSelection", "build_signals", "clean_labels",
    "create_filter", "detection_scores", "estimate_noise_rate", "fit_filtered", "fit_model", "fit_selective",
    "judge_labels", "mixture_split", "out_of_fold_scores", "sample_text_features", "selection_head",
    "small_loss_weights",
]
