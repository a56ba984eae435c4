r"""Audio tasks: recording -> class and image <-> recording retrieval (DESIGN.md section 3 keys).

Recordings: ``dataset.recordings`` (CUB: class-level xeno-canto recordings; those with ``is_train=0`` in
their metadata are the held-out test recordings), or else the samples that carry audio (procedural
set: test = the samples of the test split). Nothing is tuned on held-out recordings.

**Recognition paths** (:data:`AUDIO_PATHS`), each giving log p(class | recording) over the classes
that have a training recording:

* ``default``: log-mel EfficientNet-Lite0 (offline ImageNet weights, frozen) + window-voting nearest
  class mean, unwhitened (:class:`~fgmm.audio.recognition.WindowVotingNCM`);
* ``birdnet``: BirdNET V2.4 embeddings + nearest class mean, unwhitened (extra ``fgmm[audio]``,
  CC BY-NC-SA 4.0);
* ``birdnet_species``: BirdNET's own species output mapped to the classes (``cub_to_birdnet.csv`` when
  found next to the dataset, else by common name), the reference point; it was trained on xeno-canto;
* ``birdnet_fused``: ``birdnet`` + ``birdnet_species`` (sum of log-probabilities, weight
  :data:`SPECIES_WEIGHT`).

Choices (classifier, pooling, whitening, fusion weight) were made on the dev protocol below.

**Keys.** With held-out recordings: ``audio_top1`` (held-out recordings -> class, among the classes with
a training recording), ``i2a_mAP`` (queries: test images of the classes that have a held-out recording;
gallery: the held-out recordings; class-level relevance) and ``a2i_mAP`` (the reverse), from the best
available path (:data:`BEST_PATHS`, named under ``audio_path``), and the same keys of every available
path with its name as suffix (``audio_top1_default``, ``i2a_mAP_birdnet``, ...). Images and recordings
meet at the class level (:mod:`fgmm.audio.alignment`): a pair is scored by the probability that both
share their class, :math:`\sum_c p(c \mid \text{image})\, p(c \mid \text{recording})`, over the classes
with a training recording; the image posteriors come from the image task's model
(:func:`fgmm.tasks.image.image_model`, fitted once per context).

**Dev keys** (only when no recording is held out, e.g. the developers' CUB bundle), after dropping
recordings that repeat another one (:func:`~fgmm.audio.recognition.duplicate_recordings`; CUB has
one byte-identical pair), over the classes with at least two recordings:
``audio_top1_dev_loo_<path>`` (each of their recordings held out once, all others train),
``audio_top1_dev_1shot_<path>`` (the held-out recording's class keeps one other recording, as most
CUB classes have one), ``i2a_mAP_dev_1shot_<path>`` / ``a2i_mAP_dev_1shot_<path>`` (one recording of
each such class held out and one other kept for training, :data:`DEV_DRAWS` seeded draws, images as in
the contract; the gallery has 7 recordings instead of the hidden test's 19, so see the chance level) and the
chance levels ``i2a_mAP_dev_chance`` / ``a2i_mAP_dev_chance`` (expected mAP of a random ranking).
``audio_windows_per_s_<encoder>``: encoding speed of this run (windows/s, decoding included) when
something was encoded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fgmm.audio.alignment import restrict, same_class_probability
from fgmm.audio.features import EncodedRecordings, encode_recordings
from fgmm.audio.recognition import (
    Fold,
    create_recording_classifier,
    duplicate_recordings,
    leave_one_out_folds,
    one_shot_folds,
)
from fgmm.data.sample import Sample
from fgmm.encoders import create_encoder
from fgmm.errors import DataError, MissingExtraError
from fgmm.registry import Registry
from fgmm.retrieval.metrics import mean_average_precision
from fgmm.tasks import TASKS, TaskContext

DEV_DRAWS = 10
ONE_SHOT_REPEATS = 3
SPECIES_WEIGHT = 2.0
BEST_PATHS = ("birdnet_fused", "default")
"""The path behind the contract keys: the first one available (BirdNET needs the extra)."""
BIRDNET_TABLE = "cub_to_birdnet.csv"

AUDIO_PATHS: Registry[Callable] = Registry("audio recognition path")
"""``name -> fn(run, fold) -> ([len(fold.test), C] log-probabilities, classes)``."""


def audio_recordings(ctx: TaskContext) -> tuple[list[Sample], np.ndarray]:
    """The recordings of the context's dataset and a boolean mask of the held-out ones."""
    dataset = ctx.dataset
    if dataset.recordings:
        recordings = [r for r in dataset.recordings if r.audio is not None and r.label >= 0]
        held_out = np.array([str(r.meta.get("is_train", "1")).strip() == "0" for r in recordings], dtype=bool)
        return recordings, held_out
    rows = [i for i, s in enumerate(dataset) if s.audio is not None and s.label >= 0]
    split = dataset.split or ["train"] * len(dataset)
    return [dataset[i] for i in rows], np.array([split[i] == "test" for i in rows], dtype=bool)


@dataclass
class AudioRun:
    """Recordings, their encoded windows per encoder, and what tasks share (kept in ``ctx.shared["audio"]``)."""

    ctx: TaskContext
    recordings: list[Sample]
    held_out: np.ndarray
    features: dict[str, EncodedRecordings] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    speed: dict[str, float] = field(default_factory=dict)
    birdnet_classes: list[list[int]] | None = None
    specs: dict[str, tuple[str, dict]] = field(default_factory=lambda: dict(ENCODER_SPECS))

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.recordings], dtype=np.int64)

    def windows(self, encoder: str) -> list[torch.Tensor]:
        """Window features of every recording (in :attr:`recordings` order) from ``encoder``."""
        if encoder not in self.features:
            name, options = self.specs[encoder]
            model = create_encoder("audio", name, **options)
            result = encode_recordings(model, [r.audio for r in self.recordings], self.ctx.cache, skip_bad=True,
                                       progress=False)
            if result.encoded:
                self.speed[f"audio_windows_per_s_{encoder}"] = round(result.windows_encoded / result.seconds, 2)
            self.features[encoder] = result
            if result.skipped:
                self.skipped += [s for s in result.skipped if s not in self.skipped]
                self.keep(result.kept, encoded_by=encoder)
            if encoder == "birdnet_logits":
                self.birdnet_classes = _birdnet_classes(self.ctx, model.labels)
        return self.features[encoder].windows

    def keep(self, indices: list[int], encoded_by: str | None = None) -> None:
        """Keep only the recordings ``indices`` of :attr:`recordings` in every encoder's features
        (``encoded_by``'s features already hold only those)."""
        self.recordings = [self.recordings[i] for i in indices]
        self.held_out = self.held_out[indices]
        for name, result in self.features.items():
            rows = range(len(indices)) if name == encoded_by else indices
            result.windows = [result.windows[j] for j in rows]
            result.kept = list(range(len(indices)))


ENCODER_SPECS: dict[str, tuple[str, dict]] = {
    "default": ("efficientnet_lite0", {}),
    "birdnet": ("birdnet", {}),
    "birdnet_logits": ("birdnet", {"output": "logits"}),
}


def _birdnet_classes(ctx: TaskContext, labels: list[str]) -> list[list[int]]:
    from fgmm.audio.birdnet import birdnet_class_map

    root = ctx.dataset.root
    tables = [p for p in ((root / BIRDNET_TABLE, root.parent / BIRDNET_TABLE) if root else ()) if p.is_file()]
    return birdnet_class_map(ctx.dataset.class_names, labels, tables[0] if tables else None,
                             ctx.dataset.meta.get("class_folders"))


def classifier_path(encoder: str, classifier: str, **options) -> Callable:
    def path(run: AudioRun, fold: Fold) -> tuple[torch.Tensor, list[int]]:
        windows, labels = run.windows(encoder), run.labels
        model = create_recording_classifier(classifier, **options)
        model.fit([windows[i] for i in fold.train], labels[fold.train].tolist())
        return model.log_probs([windows[i] for i in fold.test]), list(model.classes)

    return path


AUDIO_PATHS.register("default")(classifier_path("default", "window_ncm", shrinkage=None))
AUDIO_PATHS.register("birdnet")(classifier_path("birdnet", "ncm", shrinkage=None))


@AUDIO_PATHS.register("birdnet_species")
def birdnet_species_path(run: AudioRun, fold: Fold) -> tuple[torch.Tensor, list[int]]:
    """BirdNET's species logits, best window and best label per class (a class without a BirdNET label gets
    the recording's lowest score minus 1), as log-softmax over the classes with a training recording."""
    from fgmm.audio.birdnet import species_scores

    windows = run.windows("birdnet_logits")
    classes = sorted({int(y) for y in run.labels[fold.train]})
    mapping = [run.birdnet_classes[c] for c in classes]
    scores = torch.stack([species_scores(windows[i], mapping) for i in fold.test])
    known = torch.isfinite(scores)
    floor = torch.where(known, scores, torch.inf).amin(dim=1, keepdim=True) - 1.0  # per recording
    floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
    return torch.log_softmax(torch.where(known, scores, floor), dim=1), classes


def fused_path(weight: float) -> Callable:
    """``birdnet`` + ``weight`` x ``birdnet_species`` log-probabilities, renormalised (a product of experts)."""

    def path(run: AudioRun, fold: Fold) -> tuple[torch.Tensor, list[int]]:
        embedding, classes = AUDIO_PATHS.get("birdnet")(run, fold)
        species, species_classes = birdnet_species_path(run, fold)
        if classes != species_classes:  # pragma: no cover - both are the sorted training classes
            raise RuntimeError("BirdNET paths disagree on the classes")
        return torch.log_softmax(embedding + weight * species, dim=1), classes

    return path


AUDIO_PATHS.register("birdnet_fused")(fused_path(SPECIES_WEIGHT))


def available_paths(run: AudioRun) -> list[str]:
    """The registered paths whose encoders can be created here (BirdNET needs the extra)."""
    names = []
    for name in AUDIO_PATHS.names():
        try:
            if name.startswith("birdnet"):
                run.windows("birdnet")
                run.windows("birdnet_logits")
            else:
                run.windows(name)
        except MissingExtraError:
            continue
        names.append(name)
    return names


def audio_run(ctx: TaskContext) -> AudioRun:
    """The context's recordings (``ctx.shared["audio"]``, made once)."""
    if "audio" not in ctx.shared:
        recordings, held_out = audio_recordings(ctx)
        if not recordings:
            raise DataError(ctx.dataset.root, "the dataset has no recordings: the audio task needs some")
        ctx.shared["audio"] = AudioRun(ctx, recordings, held_out)
    return ctx.shared["audio"]


def _image_log_probs(ctx: TaskContext, indices: np.ndarray) -> torch.Tensor:
    """``[len(indices), num_classes]`` image log-probabilities from the image task's model (the one model,
    trained once per context by :func:`fgmm.tasks.image.image_model`)."""
    from fgmm.tasks.image import image_model

    logits = image_model(ctx).logits({"image": ctx.features["image"][torch.as_tensor(indices)]})
    return torch.log_softmax(logits.float().cpu(), dim=1)


def _retrieval(ctx: TaskContext, audio_log_probs: torch.Tensor, audio_classes: list[int],
               gallery_labels: np.ndarray) -> dict[str, float]:
    """``i2a_mAP``/``a2i_mAP`` of test images of the gallery's classes against the gallery recordings."""
    test = ctx.indices("test")
    queries = test[np.isin(ctx.dataset.labels[test], gallery_labels)]
    if not len(queries):
        raise DataError(ctx.dataset.root, "no test image of a class with a held-out recording")
    images = restrict(_image_log_probs(ctx, queries), range(ctx.dataset.num_classes), audio_classes)
    scores = same_class_probability(images, audio_log_probs)
    image_labels, audio_labels = torch.as_tensor(ctx.dataset.labels[queries]), torch.as_tensor(gallery_labels)
    return {"i2a_mAP": mean_average_precision(scores, image_labels, audio_labels),
            "a2i_mAP": mean_average_precision(scores.T, audio_labels, image_labels)}


def recording_top1(log_probs: torch.Tensor, classes: list[int], labels: np.ndarray) -> float:
    return float((np.asarray(classes)[log_probs.argmax(dim=1).numpy()] == labels).mean())


def _contract(ctx: TaskContext, run: AudioRun, path: str) -> dict[str, float]:
    labels = run.labels
    train = np.flatnonzero(~run.held_out)
    test = np.flatnonzero(run.held_out & np.isin(labels, labels[train]))
    if not len(test):
        raise DataError(ctx.dataset.root, "no held-out recording of a class with a training recording")
    log_probs, classes = AUDIO_PATHS.get(path)(run, Fold(train, test))
    return {"audio_top1": recording_top1(log_probs, classes, labels[test]),
            **_retrieval(ctx, log_probs, classes, labels[test])}


def _dev_draws(labels: np.ndarray, seed: int) -> list[Fold]:
    """:data:`DEV_DRAWS` one-shot folds: each class with at least two recordings has one recording held out and
    keeps one other for training (the situation of the hidden test, whose classes mostly have one)."""
    rng = np.random.default_rng(seed)
    classes = [c for c in np.unique(labels) if (labels == c).sum() >= 2]
    others = np.flatnonzero(~np.isin(labels, classes))
    folds = []
    for _ in range(DEV_DRAWS):
        pairs = np.array([rng.choice(np.flatnonzero(labels == c), 2, replace=False) for c in classes])
        folds.append(Fold(np.sort(np.concatenate([others, pairs[:, 1]])), np.sort(pairs[:, 0])))
    return folds


def _dev(ctx: TaskContext, run: AudioRun, path: str) -> dict[str, float]:
    fn, labels = AUDIO_PATHS.get(path), run.labels
    metrics = {}
    for name, folds in (("loo", leave_one_out_folds(labels)),
                        ("1shot", one_shot_folds(labels, ctx.seed, ONE_SHOT_REPEATS))):
        hits = [recording_top1(*fn(run, fold), labels[fold.test]) for fold in folds]
        metrics[f"audio_top1_dev_{name}_{path}"] = float(np.mean(hits)) if hits else None
    draws = [_retrieval(ctx, *fn(run, fold), labels[fold.test]) for fold in _dev_draws(labels, ctx.seed)]
    for key in ("i2a_mAP", "a2i_mAP"):
        metrics[f"{key}_dev_1shot_{path}"] = float(np.mean([d[key] for d in draws])) if draws else None
    return metrics


def _chance(ctx: TaskContext, run: AudioRun) -> dict[str, float]:
    """Expected dev mAP of a random ranking (mean over 200 random score matrices of the first draw)."""
    fold = _dev_draws(run.labels, ctx.seed)[0]
    gallery = run.labels[fold.test]
    test = ctx.indices("test")
    queries = ctx.dataset.labels[test[np.isin(ctx.dataset.labels[test], gallery)]]
    generator = torch.Generator().manual_seed(ctx.seed)
    q, g = torch.as_tensor(queries), torch.as_tensor(gallery)
    i2a = [mean_average_precision(torch.rand(len(q), len(g), generator=generator), q, g) for _ in range(200)]
    a2i = [mean_average_precision(torch.rand(len(g), len(q), generator=generator), g, q) for _ in range(200)]
    return {"i2a_mAP_dev_chance": float(np.mean(i2a)), "a2i_mAP_dev_chance": float(np.mean(a2i))}


@TASKS.register("audio")
def audio_task(ctx: TaskContext) -> dict[str, float]:
    """Every available path side by side; the contract keys from the best one (:data:`BEST_PATHS`)."""
    run = audio_run(ctx)
    return _evaluate(ctx, run, available_paths(run))


@TASKS.register("audio_default")
def audio_default_task(ctx: TaskContext) -> dict[str, float]:
    """The offline default path only (no BirdNET even when installed): the demo's audio rows."""
    return _evaluate(ctx, audio_run(ctx), ["default"])


def _evaluate(ctx: TaskContext, run: AudioRun, paths: list[str]) -> dict[str, float]:
    best = next(p for p in BEST_PATHS if p in paths)
    metrics: dict = {"audio_path": best, "audio_paths": paths, "audio_recordings": len(run.recordings),
                     "audio_held_out": int(run.held_out.sum())}
    if run.held_out.any():
        for path in paths:
            metrics.update({f"{k}_{path}": v for k, v in _contract(ctx, run, path).items()})
        metrics.update({k: metrics[f"{k}_{best}"] for k in ("audio_top1", "i2a_mAP", "a2i_mAP")})
    else:
        duplicates = duplicate_recordings(run.windows("default"))
        run.keep([i for i in range(len(run.recordings)) if i not in set(duplicates)])
        metrics["audio_dev_duplicates_dropped"] = len(duplicates)
        for path in paths:
            metrics.update(_dev(ctx, run, path))
        metrics.update(_chance(ctx, run))
    metrics.update(run.speed)
    metrics["audio_skipped"] = [{"path": str(p), "problem": why} for p, why in run.skipped]
    return metrics
