r"""The noisy-label protocol: inject (or read) wrong training labels, filter them, train, test on clean labels.

Settings (:func:`inject_noise`, seeded, **training labels only**; test labels stay clean):

* ``symmetric`` at rate :math:`r`: :math:`\lfloor rN + 1/2 \rfloor` training samples drawn uniformly get a
  label drawn uniformly from the other classes;
* ``openset`` at rate :math:`r`: :math:`\lfloor rC + 1/2 \rfloor` classes drawn uniformly leave the label
  set; their training images stay in training with a label drawn uniformly from the remaining
  (in-set) classes, and their test images leave the test set (CUB: 40 of 200 classes, about 20% of
  the training images);
* ``given``: the dataset's own noise (``Sample.meta["clean_label"]`` differs from the label, as in the
  procedural demo set's web-style noise); no injection.

Each filter run (:data:`FILTER_RUNS`) gets out-of-fold signals (:func:`fgmm.filters.build_signals`)
from the image features alone (``image`` runs) or from every modality the dataset has — image, the
samples' own texts (CUB: 10 captions per image), KG class prototypes (``all`` runs). Detection is
scored against the injected truth (precision, recall, F1 of the samples flagged to drop or relabel);
the classifier — the one model :class:`fgmm.FGModel` with preset ``"image"``, the model of the
``image`` task (nearest class mean in the within-class whitened space of the frozen features) — is
fitted on the noisy labels, on each filter's cleaned labels (relabelled samples with their new label,
dropped ones left out) and on the clean labels, and tested on image features alone. Nothing is
tuned on the test part: the filters run with their documented defaults and the classifier with the
preset's whitening shrinkage (1.0, chosen on inner validation splits of CUB).

The ``noise`` task reports, for 20% symmetric noise (or the dataset's own noise when it has any):
``noise_f1`` (fgmm's default filter, cross-modal agreement: fixed in advance, not the best of the
table), ``cleanlab_f1`` (cleanlab's ``find_label_issues`` on the image classifier's out-of-fold
probabilities: what a user would otherwise run), ``noisy_top1_nofilter``, ``noisy_top1_filtered``
(the default filter), ``noise_clean_top1`` (the same classifier on clean labels), plus
``noise_precision``/``noise_recall`` and ``cleanlab_f1_all`` (cleanlab given fgmm's multi-modal probabilities).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fgmm.errors import DataError
from fgmm.filters import (
    Decision,
    FilterResult,
    FilterSignals,
    SelectiveTraining,
    build_signals,
    create_filter,
    detection_scores,
    fit_model,
    fit_selective,
    sample_text_features,
    selection_head,
)
from fgmm.tasks import TASKS, TaskContext

DEFAULT_FILTER = "crossmodal"
CLASSIFIER = "image"
"""FGModel preset of the test classifier (the ``image`` task's model)."""


@dataclass(frozen=True)
class FilterRun:
    """One row of the table: a registered filter, its options, and which signals it reads."""

    filter: str
    signals: str  # "image" or "all"
    options: dict[str, Any] = field(default_factory=dict)


FILTER_RUNS: dict[str, FilterRun] = {
    "crossmodal": FilterRun("crossmodal", "all"),
    "crossmodal_image": FilterRun("crossmodal", "image"),
    "confident_all": FilterRun("confident", "all"),
    "cleanlab_all": FilterRun("cleanlab", "all"),
    "confident": FilterRun("confident", "image"),
    "cleanlab": FilterRun("cleanlab", "image"),
    "small_loss": FilterRun("small_loss", "image"),
    "coteaching": FilterRun("coteaching", "image"),
    "coteaching_plus": FilterRun("coteaching_plus", "image"),
    "peer": FilterRun("peer", "image"),
    "openset_energy": FilterRun("openset", "image", {"score": "energy"}),
    "openset_msp": FilterRun("openset", "image", {"score": "msp"}),
    "openset_prototype": FilterRun("openset", "image", {"score": "prototype"}),
}
"""Run name → filter. ``*_all`` and ``crossmodal`` read every modality; the others the image alone
(``crossmodal_image``: the cross-modal filter's rule with the image as its only witness)."""
TASK_RUNS: tuple[str, ...] = ("crossmodal", "cleanlab", "cleanlab_all")


@dataclass
class NoisyLabels:
    """The outcome of :func:`inject_noise` on a train/test split."""

    train: np.ndarray  # dataset indices of the training samples
    test: np.ndarray  # dataset indices of the (clean) test samples
    labels: np.ndarray  # [len(train)] observed labels, in 0..num_classes-1
    clean: np.ndarray  # [len(train)] true labels (-1: open-set, none of the classes)
    test_labels: np.ndarray  # [len(test)]
    classes: np.ndarray  # dataset label of each class index
    setting: str

    @property
    def noisy(self) -> np.ndarray:
        return self.labels != self.clean

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def inject_noise(labels: np.ndarray, train: np.ndarray, test: np.ndarray, kind: str, rate: float,
                 seed: int = 0, clean: np.ndarray | None = None) -> NoisyLabels:
    """Noisy training labels for ``kind`` ``"symmetric"``, ``"openset"`` or ``"given"`` (module docstring).

    Labels are re-indexed to the classes kept (all of them but for ``openset``). ``clean`` gives the
    true labels for ``"given"``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng([seed, 13])
    present = np.unique(labels[train])
    if kind == "openset":
        out = rng.choice(present, size=int(np.floor(rate * len(present) + 0.5)), replace=False)
        classes = np.setdiff1d(present, out)
    else:
        classes = present
    local = np.full(int(labels.max()) + 1, -1)
    local[classes] = np.arange(len(classes))
    truth = local[labels[train]] if kind != "given" else local[np.asarray(clean, dtype=np.int64)[train]]
    if kind == "given":
        observed = local[labels[train]]
    elif kind == "symmetric":
        observed = truth.copy()
        flip = rng.choice(len(train), size=int(np.floor(rate * len(train) + 0.5)), replace=False)
        observed[flip] = (truth[flip] + rng.integers(1, len(classes), len(flip))) % len(classes)
    elif kind == "openset":
        observed = np.where(truth >= 0, truth, rng.integers(0, len(classes), len(train)))
    else:
        raise ValueError(f"noise kind must be symmetric, openset or given, got '{kind}'")
    test = test[local[labels[test]] >= 0]
    return NoisyLabels(train=train, test=test, labels=observed, clean=truth, test_labels=local[labels[test]],
                       classes=classes, setting=f"{kind}{'' if kind == 'given' else f'-{round(100 * rate)}'}")


def classifier_top1(features: Tensor, labels: np.ndarray, num_classes: int, test_features: Tensor,
                    test_labels: np.ndarray, seed: int = 0) -> float:
    """Top-1 of the :class:`fgmm.FGModel` preset :data:`CLASSIFIER` fitted on ``(features, labels)`` and
    tested on image features."""
    model = fit_model(features, labels, num_classes, CLASSIFIER, seed=seed)
    return float((model.logits({"image": test_features}).argmax(1).numpy() == test_labels).mean())


def recorded_losses(features: Tensor, labels: np.ndarray, num_classes: int, seed: int = 0, epochs: int = 30,
                    device: str = "cpu") -> np.ndarray:
    """``[epochs, N]`` per-sample training losses of an :class:`fgmm.FGModel` with a linear projection
    (:func:`fgmm.filters.selection_head`) trained on the noisy labels with :class:`fgmm.train.Trainer`
    (recorded by :class:`fgmm.filters.SelectiveTraining`)."""
    import tempfile
    from pathlib import Path

    from fgmm.data.torch_dataset import FeatureDataset
    from fgmm.train import TrainConfig

    model = SelectiveTraining(selection_head(features, labels, num_classes, seed=seed), len(labels), epochs)
    with tempfile.TemporaryDirectory(prefix="fgmm-losses-") as tmp:
        config = TrainConfig(epochs=epochs, batch_size=min(256, len(labels)), lr=2e-3, weight_decay=5e-2,
                             scheduler="cosine", seed=seed, out_dir=Path(tmp), progress=False, device=device,
                             log_every_steps=10_000)
        fit_selective(model, config, FeatureDataset({"image": features}, torch.as_tensor(labels)), resume=False)
    return model.losses.cpu().numpy()


@dataclass
class ProtocolInputs:
    """Features of every sample of a dataset, by modality, and what the KG modality needs."""

    image: Tensor
    text: Tensor | None = None
    text_mask: Tensor | None = None
    graph: Any = None


def run_protocol(inputs: ProtocolInputs, noisy: NoisyLabels, runs: Sequence[str], seed: int = 0,
                 device: str = "cpu") -> dict[str, Any]:
    """Every filter run of ``runs`` on ``noisy``: detection scores, counts and the classifier's top-1.

    Returns ``{"setting", "noise_rate", "n_train", "n_test", "clean_top1", "nofilter_top1",
    "runs": {run: {"precision", "recall", "f1", "top1", "keep", "drop", "relabel", ...}}}``.
    """
    train = torch.as_tensor(noisy.train)
    x_train, x_test = inputs.image[train].float(), inputs.image[torch.as_tensor(noisy.test)].float()
    c = noisy.num_classes
    in_set = noisy.clean >= 0
    out: dict[str, Any] = {
        "setting": noisy.setting, "noise_rate": float(noisy.noisy.mean()), "n_train": len(noisy.train),
        "n_test": len(noisy.test), "num_classes": c,
        "clean_top1": classifier_top1(x_train[torch.as_tensor(in_set)], noisy.clean[in_set], c, x_test,
                                      noisy.test_labels, seed),
        "nofilter_top1": classifier_top1(x_train, noisy.labels, c, x_test, noisy.test_labels, seed), "runs": {},
    }
    signals: dict[str, FilterSignals] = {}

    def get(kind: str) -> FilterSignals:
        if kind not in signals:
            features: dict[str, Tensor] = {"image": x_train}
            masks: dict[str, Tensor] = {}
            graph = None
            if kind == "all":
                if inputs.text is not None:
                    features["text"] = inputs.text[train].float()
                    masks["text"] = inputs.text_mask[train]
                graph = inputs.graph
            signals[kind] = build_signals(features, noisy.labels, c, masks=masks, graph=graph,
                                          graph_classes=noisy.classes.tolist() if graph is not None else None,
                                          seed=seed)
        return signals[kind]

    for name in runs:
        run = FILTER_RUNS[name]
        s = get(run.signals)
        options = dict(run.options)
        if run.filter in ("coteaching", "coteaching_plus", "peer"):
            options.update(seed=seed, device=device)
        if run.filter == "small_loss" and s.losses is None:
            s.losses = recorded_losses(x_train, noisy.labels, c, seed=seed, device=device)
        result: FilterResult = create_filter(run.filter, **options).fit(s)
        keep, cleaned = result.cleaned(noisy.labels)
        relabelled = result.decisions == Decision.RELABEL
        out["runs"][name] = {
            **detection_scores(result.flagged, noisy.noisy), **result.counts(),
            "relabel_correct": float((result.suggested[relabelled] == noisy.clean[relabelled]).mean())
            if relabelled.any() else None,
            "top1": classifier_top1(x_train[torch.as_tensor(keep)], cleaned, c, x_test, noisy.test_labels, seed),
            "signals": run.signals, "filter": run.filter, **{f"option_{k}": v for k, v in run.options.items()},
        }
    if "all" in signals:
        out["modalities"] = list(signals["all"].modality_probabilities)
    return out


def protocol_inputs(ctx: TaskContext) -> ProtocolInputs:
    """Image features, the samples' pooled texts (when any sample has text) and the dataset's KG."""
    inputs = ProtocolInputs(image=ctx.features["image"])
    if any(s.texts for s in ctx.dataset.samples):
        from fgmm.encoders import create_encoder

        if "text_encoder" not in ctx.shared:
            ctx.shared["text_encoder"] = create_encoder("text", device=ctx.device)
        inputs.text, inputs.text_mask = sample_text_features(ctx.dataset.samples, ctx.shared["text_encoder"],
                                                             ctx.cache)
    try:
        from fgmm.tasks.kg import task_graph

        inputs.graph = task_graph(ctx)
    except DataError:
        inputs.graph = None  # no knowledge graph and no class attributes: image and text only
    return inputs


def context_noise(ctx: TaskContext, kind: str = "symmetric", rate: float = 0.2) -> NoisyLabels:
    """The task's noisy labels: the dataset's own noise when its training samples record clean labels
    that differ from their labels, else ``kind`` at ``rate``."""
    train, test = ctx.trained_indices()
    labels = ctx.dataset.labels
    clean = np.array([s.meta.get("clean_label", s.label) for s in ctx.dataset.samples], dtype=np.int64)
    if (clean[train] != labels[train]).any():
        return inject_noise(labels, train, test, "given", 0.0, ctx.seed, clean=clean)
    return inject_noise(labels, train, test, kind, rate, ctx.seed)


@TASKS.register("noise")
def noise_task(ctx: TaskContext) -> dict[str, float]:
    noisy = context_noise(ctx)
    result = run_protocol(protocol_inputs(ctx), noisy, TASK_RUNS, seed=ctx.seed, device=ctx.device)
    runs = result["runs"]
    ctx.shared["noise"] = result
    return {"noise_f1": runs[DEFAULT_FILTER]["f1"], "noise_precision": runs[DEFAULT_FILTER]["precision"],
            "noise_recall": runs[DEFAULT_FILTER]["recall"], "cleanlab_f1": runs["cleanlab"]["f1"],
            "cleanlab_f1_all": runs["cleanlab_all"]["f1"], "noisy_top1_nofilter": result["nofilter_top1"],
            "noisy_top1_filtered": runs[DEFAULT_FILTER]["top1"], "noise_clean_top1": result["clean_top1"],
            "noise_rate": result["noise_rate"]}
