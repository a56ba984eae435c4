r"""Fitting an :class:`~fgmm.space.FGModel` on feature tables: closed-form parts, training, calibration.

:func:`fit_tables` runs, in order:

1. closed-form projections (e.g. within-class whitening) fitted on the training features of their
   modality;
2. the class sources are initialised from the training embeddings (free weights start at the class
   means; the classes seen are recorded);
3. when the model has learned parts, the :class:`~fgmm.train.Trainer` trains them (cross-entropy of
   every view, class-aware contrastive alignment, optional metric loss) on
   :class:`~fgmm.space.features.SampleFeatures`;
4. closed-form class sources (class means, knowledge-graph prototypes) are fitted on the final
   training embeddings, and class priors that learn from the training samples of their modality
   (``fits_on_training``, e.g. :class:`~fgmm.space.modality_prior.ClassMeansPrior`) on those;
5. the cosine scale :math:`s` of a closed-form classifier is chosen by the likelihood of a held-out
   fifth of the training samples (the source refitted on the other four fifths), so probabilities
   are calibrated enough to multiply with priors;
6. when the source names classes without training samples (zero-shot through the knowledge graph),
   the calibrated-stacking offset :math:`\gamma` is chosen on the training classes only (Chao et
   al., 2016): a stand-in model is fitted with a fifth of the training classes held out as stand-in
   unseen classes, and :math:`\gamma` maximises its generalised zero-shot harmonic mean
   (:func:`fgmm.zeroshot.choose_gamma`). No sample of a class without training samples is used.
   A modality that misses some of the classes (captions withheld for some classes, recordings of
   only some species) gets its own offset :math:`\gamma_m` the same way, used when a sample carries
   that modality alone (:func:`calibrate_modality_gamma`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from fgmm.data.splits import holdout_split
from fgmm.data.torch_dataset import MASK_KEY, collate_multimodal
from fgmm.errors import DataError
from fgmm.space.features import ModalityTable, SampleFeatures
from fgmm.train import TrainConfig, Trainer
from fgmm.train.distributed import resolve_device

SCALE_GRID = np.round(np.geomspace(1.0, 100.0, 61), 4)
"""Cosine scales tried when fitting :math:`s` of a closed-form classifier."""


@dataclass
class FitResult:
    """What :func:`fit_tables` did.

    Attributes:
        n_train: training samples (with a known label).
        steps: optimizer steps (0 for a closed-form model).
        history: the Trainer's per-epoch history.
        stop_reason: why training stopped (``None`` when it did not train).
        best_metric: the best validation value of the Trainer's monitor (``None`` without validation).
        scale: the final cosine scale :math:`s`.
        gamma: the calibrated-stacking offset :math:`\\gamma`.
        seconds: wall time.
    """

    n_train: int
    steps: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str | None = None
    best_metric: float | None = None
    scale: float = 0.0
    gamma: float = 0.0
    seconds: float = 0.0


def default_train_config(n_train: int, **overrides: Any) -> TrainConfig:
    """The training recipe used when none is given (chosen on CUB validation splits of the training images)."""
    options: dict[str, Any] = {"epochs": 60, "batch_size": min(256, max(1, n_train)), "lr": 1e-3,
                               "weight_decay": 0.05, "scheduler": "cosine", "warmup_steps": 20, "progress": False,
                               "log_every_steps": 10_000, "drop_last": n_train > 256}
    options.update(overrides)
    return TrainConfig(**options)


def _masks(tables: Mapping[str, ModalityTable]) -> dict[str, torch.Tensor]:
    return {m: t.present for m, t in tables.items()}


@torch.no_grad()
def fused_embeddings(model, data: SampleFeatures, batch_size: int = 1024, num_workers: int = 0) -> torch.Tensor:
    """``[N, d]`` fused evaluation embeddings of the samples of ``data`` (each with all its items pooled);
    ``num_workers`` processes decode the raw inputs of trainable towers (in batches of at most 128 images:
    a 1024-image batch of 260 px images is 0.8 GB, and every worker holds two)."""
    was_training = model.training
    model.eval()
    device = model.gamma.device
    loader = DataLoader(data.subset(range(len(data)), train=False), batch_size=min(batch_size, 128) if data.raw
                        else batch_size, collate_fn=collate_multimodal, num_workers=num_workers if data.raw else 0)
    try:
        out = []
        for batch in loader:
            batch = {k: v for k, v in batch.items() if k in model.modalities or k == MASK_KEY}
            batch = {k: ({m: t.to(device) for m, t in v.items() if m in batch} if k == MASK_KEY else v.to(device))
                     for k, v in batch.items()}
            _, embeddings, masks = model._embeddings(batch)
            out.append(model.fuse(embeddings, masks).cpu())
        return torch.cat(out)
    finally:
        model.train(was_training)


def _fit_projections(model, tables: Mapping[str, ModalityTable], labels: torch.Tensor) -> None:
    for m, table in tables.items():
        projection = model.projections[m]
        if projection.closed_form and m not in model.towers:
            rows = table.present & (labels >= 0)
            if not bool(rows.any()):
                raise DataError(None, f"no training sample with a label carries '{m}': its projection cannot be fitted")
            projection.fit(table.pooled()[rows], labels[rows])


def _record_modality_classes(model, data: SampleFeatures) -> None:
    """``model.modality_classes``: per modality, the classes with labelled training samples that carry it."""
    labels = data.labels
    for i, m in enumerate(model.modalities):
        present = (data.tables[m].present if m in data.tables
                   else torch.full_like(labels, m in data.raw, dtype=torch.bool))
        seen = labels[present & (labels >= 0)]
        row = torch.zeros(model.num_classes, dtype=torch.bool)
        row[seen] = True
        model.modality_classes[i].copy_(row)


def _fit_priors(model, tables: Mapping[str, ModalityTable], labels: torch.Tensor, seed: int) -> None:
    """Fit the priors that learn from the model's own training samples (``fits_on_training``)."""
    for m, prior in model.priors.items():
        if getattr(prior, "fits_on_training", False) and m in tables:
            rows = tables[m].present & (labels >= 0)
            if not bool(rows.any()):
                raise DataError(None, f"no training sample with a label carries '{m}': its class prior cannot be "
                                      "fitted")
            prior.fit(tables[m].pooled()[rows], labels[rows], seed=seed)


def _cosines(model, z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z, dim=-1) @ F.normalize(model.class_source(), dim=-1).T.detach().cpu()


@torch.no_grad()
def _fit_scale(model, z: torch.Tensor, labels: torch.Tensor, seed: int) -> float:
    """The cosine scale maximising the likelihood of a held-out fifth (source refitted on the rest)."""
    known = torch.nonzero(labels >= 0).flatten()
    split = np.asarray(holdout_split(labels[known].numpy(), 0.2, seed=seed))
    fit, held = known[split == "train"], known[split == "test"]
    if len(held) == 0:
        return float(model.scorer.scale)
    probe = copy.deepcopy(model.class_source).cpu()
    probe.fit(z[fit], labels[fit])
    cosines = F.normalize(z[held], dim=-1) @ F.normalize(probe(), dim=-1).T
    allowed = probe.available()
    return best_scale(cosines.masked_fill(~allowed, float("-inf")), labels[held])


def best_scale(cosines: torch.Tensor, labels: torch.Tensor) -> float:
    """The scale of :data:`SCALE_GRID` whose softmax of ``scale * cosines`` gives held-out ``labels`` the
    highest likelihood."""
    losses = [F.cross_entropy(float(s) * cosines, labels).item() for s in SCALE_GRID]
    return float(SCALE_GRID[int(np.argmin(losses))])


def _set_scale(model, scale: float) -> None:
    with torch.no_grad():
        model.scorer.log_scale.fill_(float(np.log(scale)))


def _train(model, data: SampleFeatures, val: SampleFeatures | None, train: TrainConfig | None,
           resume: bool) -> Any:
    with tempfile.TemporaryDirectory(prefix="fgmm-fit-") as tmp:
        config = train or default_train_config(int((data.labels >= 0).sum()), out_dir=Path(tmp))
        return Trainer(model, config, data, val_data=val, collate_fn=collate_multimodal).fit(resume=resume)


def fit_samples(model, data: SampleFeatures, *, train: TrainConfig | None = None, val: SampleFeatures | None = None,
                seed: int = 0, resume: bool = False) -> FitResult:
    """Fit ``model`` on a :class:`~fgmm.space.features.SampleFeatures` dataset (see the module docstring).

    Args:
        model: the :class:`~fgmm.space.FGModel`.
        data: the training samples: feature tables of (some of) the model's modalities, raw inputs of its
            trainable towers, labels into ``model.class_names`` (``-1``: unknown, not trained on).
        train: the Trainer's config for the learned parts (default: :func:`default_train_config`
            in a temporary folder; give ``out_dir`` to keep checkpoints and ``metrics.jsonl``).
        val: optional validation samples (best checkpoint, early stopping).
        seed: seeds the inner splits of the scale and calibration steps.
        resume: continue the Trainer's run in ``train.out_dir`` (see :mod:`fgmm.train.run_folder`).
    """
    start = time.perf_counter()
    labels = data.labels
    given = set(data.tables) | set(data.raw)
    unknown = sorted(given - set(model.modalities))
    if unknown:
        raise DataError(None, f"features for modalities the model does not have: {unknown}")
    if not given:
        raise DataError(None, "no features to fit on")
    if ((labels < -1) | (labels >= model.num_classes)).any():
        raise DataError(None, f"labels must be in 0..{model.num_classes - 1} (or -1 for unknown)")
    n_train = int((labels >= 0).sum())
    if n_train == 0:
        raise DataError(None, "the training data has no labelled sample")
    data.max_items = {m: c.max_items for m, c in model.config.modalities.items()}
    _record_modality_classes(model, data)
    _fit_projections(model, data.tables, labels)
    workers = train.num_workers if train is not None else 0
    if model.towers and train is not None:  # raw images go through the towers: embed them on the training device
        model.to(resolve_device(train.device, int(os.environ.get("LOCAL_RANK", 0))))
    z = fused_embeddings(model, data, num_workers=workers)
    for source in (model.train_head, model.class_source):
        if source is not None:
            source.initialize(z, labels)
    result = FitResult(n_train=n_train)
    if model._learned_parts():
        trained = _train(model, data.subset(range(len(data)), train=True), val, train, resume)
        result.steps, result.history, result.stop_reason = trained.steps, trained.history, trained.stop_reason
        result.best_metric = trained.best_metric
        z = fused_embeddings(model, data, num_workers=workers)
    model.class_source.fit(z.to(model.gamma.device), labels)
    _fit_priors(model, data.tables, labels, seed)
    if model.class_source.closed_form:
        _set_scale(model, _fit_scale(model, z, labels, seed))
    uncovered = model.available_classes() & ~model.trained_classes()
    if model.config.class_embeddings.calibrate and bool(uncovered.any()):
        model.gamma.fill_(calibrate_gamma(model, data, seed, train))
    _calibrate_modalities(model, data, seed, train)
    result.scale = float(model.scorer.scale.detach())
    result.gamma = float(model.gamma)
    result.seconds = round(time.perf_counter() - start, 3)
    model.eval()
    return result


def fit_tables(model, tables: Mapping[str, ModalityTable], labels, *, train: TrainConfig | None = None,
               val: tuple[Mapping[str, ModalityTable], Any] | None = None, seed: int = 0) -> FitResult:
    """:func:`fit_samples` on feature tables ``{modality: ModalityTable}`` and ``labels`` (and optional
    validation ``(tables, labels)``)."""
    validation = SampleFeatures(val[0], val[1]) if val is not None else None
    return fit_samples(model, SampleFeatures(tables, labels), train=train, val=validation, seed=seed)


def _calibrate_modalities(model, data: SampleFeatures, seed: int, train: TrainConfig | None) -> None:
    r"""``model.modality_gamma``: a modality that trained on the same classes as the model shares its
    :math:`\gamma`; one that misses classes the model can name (captions withheld, no recordings) gets
    its own (:func:`calibrate_modality_gamma`) when the model calibrates."""
    trained, available = model.trained_classes(), model.available_classes()
    for i, m in enumerate(model.modalities):
        covered = model.modality_classes[i]
        own = (model.config.class_embeddings.calibrate and m in data.tables and not torch.equal(covered, trained)
               and bool((available & ~covered).any()) and int(covered.sum()) >= 2)
        model.modality_gamma[i] = calibrate_modality_gamma(model, data, m, seed, train) if own else model.gamma


def _stand_in(model, data: SampleFeatures, seed: int, train: TrainConfig | None):
    """A fresh, uncalibrated twin of ``model`` fitted on ``data`` with the same recipe (checkpoints in a
    temporary folder)."""
    stand_in = model.clone_untrained()
    stand_in.config.class_embeddings.calibrate = False
    with tempfile.TemporaryDirectory(prefix="fgmm-calibrate-") as tmp:
        recipe = None if train is None else dataclasses.replace(train, out_dir=Path(tmp), progress=False)
        fit_samples(stand_in, data, seed=seed, train=recipe)
    return stand_in


def calibrate_modality_gamma(model, data: SampleFeatures, modality: str, seed: int = 0,
                             train: TrainConfig | None = None) -> float:
    r"""The calibrated-stacking offset of one modality's view, for a model on which that modality misses
    some classes (e.g. text→class for classes whose captions were withheld).

    The stand-in split of :func:`calibrate_gamma` is drawn among the classes the modality covers, but
    only the modality is withheld: a stand-in model trains on every sample, with the ``modality`` items
    of the stand-in unseen classes and of a fifth of the other samples removed; :math:`\gamma`
    maximises the generalised zero-shot harmonic mean of that modality's view on the removed items.
    """
    from fgmm.zeroshot import calibration_split, choose_gamma

    labels, table = data.labels, data.tables[modality]
    covered = torch.nonzero(model.classes_with(modality)).flatten().tolist()
    carrying = np.flatnonzero((table.present & (labels >= 0)).numpy())
    fit, validation, stand_in_seen = calibration_split(labels.numpy(), carrying, covered, seed=seed)
    withheld = set(validation.tolist())
    rows = [[] if i in withheld else r for i, r in enumerate(table.rows)]
    tables = {**data.tables, modality: ModalityTable(table.features, rows)}
    stand_in = _stand_in(model, SampleFeatures(tables, labels, raw=data.raw), seed, train)
    with torch.no_grad():
        z = stand_in.embed(modality, table.subset(validation.tolist()).pooled().to(stand_in.gamma.device)).cpu()
    scores = _cosines(stand_in, z)[:, covered]
    position = {c: i for i, c in enumerate(covered)}
    local = torch.tensor([position[int(c)] for c in labels[validation]])
    return choose_gamma(scores, local, [position[c] for c in stand_in_seen]).gamma


def calibrate_gamma(model, data: SampleFeatures, seed: int = 0, train: TrainConfig | None = None) -> float:
    """The calibrated-stacking offset for ``model``'s trained classes, chosen on its training data only
    (the stand-in model trains with the same recipe ``train``, its checkpoints in a temporary folder)."""
    from fgmm.zeroshot import calibration_split, choose_gamma

    labels = data.labels
    trained = torch.nonzero(model.trained_classes()).flatten().tolist()
    known = np.flatnonzero(labels.numpy() >= 0)
    fit, validation, stand_in_seen = calibration_split(labels.numpy(), known, trained, seed=seed)
    stand_in = _stand_in(model, data.subset(fit), seed, train)
    z = fused_embeddings(stand_in, data.subset(validation))
    scores = _cosines(stand_in, z)[:, trained]
    position = {c: i for i, c in enumerate(trained)}
    local = torch.tensor([position[int(c)] for c in labels[validation]])
    return choose_gamma(scores, local, [position[c] for c in stand_in_seen]).gamma
