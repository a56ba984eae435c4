r"""Audio tasks on the one model: recording -> class and image <-> recording retrieval (DESIGN.md section 3 keys).

Recordings: ``dataset.recordings`` (CUB: class-level xeno-canto recordings; those with ``is_train=0`` in
their metadata are the held-out test recordings), or else the samples that carry audio (procedural
set: test = the samples of the test split). Nothing is tuned on held-out recordings.

Every figure comes from :class:`fgmm.FGModel` s built by :meth:`TaskContext.model` from presets on the
recordings' cached features (featurizer ``"audio"``: one pooled vector per recording):

* recognition from an audio-only model (presets ``"audio"``, ``"audio-birdnet"``: nearest class mean on
  centred encoder features, the BirdNET one times BirdNET's species output as a class prior);
* retrieval from an image + audio model (presets ``"image-audio"``, ``"image-audio-birdnet"``) fitted on
  the training images and the training recordings: one set of class embeddings scores both modalities,
  and an image and a recording are compared through the model's class posteriors,
  :math:`\sum_c p(c \mid \text{image})\, p(c \mid \text{recording})` (the probability that both share
  their class) over the classes with a training recording (:data:`RETRIEVAL_VIEW`; the cosine of their
  joint embeddings scored lower on the dev protocol, benchmarks/README.md).

**Paths** (:data:`AUDIO_PATHS`): ``default`` (offline log-mel EfficientNet-Lite0), ``birdnet`` (BirdNET
embeddings: the BirdNET model with its prior left out), ``birdnet_species`` (BirdNET's own species output
alone, the prior of that model: the reference point; it was trained on xeno-canto) and ``birdnet_fused``
(the BirdNET model as it is). BirdNET needs the extra ``fgmm[audio]`` (CC BY-NC-SA 4.0).

**Keys.** With held-out recordings: ``audio_top1`` (held-out recordings -> class, among the classes with
a training recording), ``i2a_mAP`` (queries: test images of the classes that have a held-out recording;
gallery: the held-out recordings; class-level relevance) and ``a2i_mAP`` (the reverse), from the best
available path (:data:`BEST_PATHS`, named under ``audio_path``), and the same keys of every available
path with its name as suffix (``audio_top1_default``, ``i2a_mAP_birdnet``, ...).

**Dev keys** (only when no recording is held out, e.g. the developers' CUB bundle), after dropping
recordings that repeat another one (:func:`~fgmm.audio.protocol.duplicate_recordings`; CUB has
one byte-identical pair), over the classes with at least two recordings:
``audio_top1_dev_loo_<path>`` (each of their recordings held out once, all others train),
``audio_top1_dev_1shot_<path>`` (the held-out recording's class keeps one other recording, as most
CUB classes have one), ``i2a_mAP_dev_1shot_<path>`` / ``a2i_mAP_dev_1shot_<path>`` (one recording of
each such class held out and one other kept for training, :data:`DEV_DRAWS` seeded draws, images as in
the contract; the gallery has 7 recordings instead of the hidden test's 19, so see the chance level) and the
chance levels ``i2a_mAP_dev_chance`` / ``a2i_mAP_dev_chance`` (expected mAP of a random ranking).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgmm.audio.alignment import restrict, same_class_probability
from fgmm.audio.protocol import Fold, duplicate_recordings, leave_one_out_folds, one_shot_folds
from fgmm.data.sample import Sample
from fgmm.errors import DataError, MissingExtraError
from fgmm.registry import Registry
from fgmm.retrieval.metrics import mean_average_precision
from fgmm.space import FGModel, ModalityTable, model_config
from fgmm.space.features import featurize
from fgmm.space.inputs import build_encoder
from fgmm.tasks import TASKS, TaskContext

DEV_DRAWS = 10
ONE_SHOT_REPEATS = 3
BEST_PATHS = ("birdnet_fused", "default")
"""The path behind the contract keys: the first one available (BirdNET needs the extra)."""
BIRDNET_TABLE = "cub_to_birdnet.csv"
RETRIEVAL_VIEW = "posterior"
"""How images and recordings are compared in the joint model (see the module docstring)."""

AUDIO_VIEWS: Registry[torch.Tensor] = Registry("audio view")
"""``name -> fn(model, features [N, d]) -> [N, C]`` log p(class | recording) read from a fitted model."""


@AUDIO_VIEWS.register("model")
def model_view(model: FGModel, features: torch.Tensor) -> torch.Tensor:
    """The model's prediction (class embeddings and class priors)."""
    return torch.log_softmax(model.logits({"audio": features}), dim=1)


@AUDIO_VIEWS.register("embedding")
def embedding_view(model: FGModel, features: torch.Tensor) -> torch.Tensor:
    """The audio embedding scored against the class embeddings, the class prior left out."""
    model.eval()
    with torch.no_grad():
        return torch.log_softmax(model({"audio": features})["logits_audio"], dim=1)


@AUDIO_VIEWS.register("prior")
def prior_view(model: FGModel, features: torch.Tensor) -> torch.Tensor:
    """The audio class prior alone, over the classes the model can name."""
    with torch.no_grad():
        log_prior = model.priors["audio"](features)
    return torch.log_softmax(log_prior.masked_fill(~model.available_classes(), float("-inf")), dim=1)


@dataclass(frozen=True)
class AudioPath:
    """A recognition path: the audio-only preset, the image + audio preset, and the view read from them."""

    preset: str
    joint: str
    view: str = "model"


AUDIO_PATHS: dict[str, AudioPath] = {
    "default": AudioPath("audio", "image-audio"),
    "birdnet": AudioPath("audio-birdnet", "image-audio-birdnet", "embedding"),
    "birdnet_species": AudioPath("audio-birdnet", "image-audio-birdnet", "prior"),
    "birdnet_fused": AudioPath("audio-birdnet", "image-audio-birdnet"),
}


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
    """Recordings, their features per audio encoder, and what tasks share (kept in ``ctx.shared["audio"]``).

    Attributes:
        audio: overrides of every preset's ``audio`` modality (e.g. a smaller front end in tests).
    """

    ctx: TaskContext
    recordings: list[Sample]
    held_out: np.ndarray
    audio: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, ModalityTable] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.recordings], dtype=np.int64)

    def overrides(self, preset: str) -> dict[str, Any]:
        """Keyword arguments of :meth:`TaskContext.model` for ``preset`` on these recordings."""
        overrides: dict[str, Any] = {"modalities": {"audio": dict(self.audio)}}
        if "birdnet" in preset:
            overrides["priors"] = {"audio": {"options": {"table": self.birdnet_table()}}}
        return overrides

    def birdnet_table(self) -> str | None:
        """``cub_to_birdnet.csv`` next to the dataset (or its parent), if there is one."""
        root = self.ctx.dataset.root
        tables = [p for p in ((root / BIRDNET_TABLE, root.parent / BIRDNET_TABLE) if root else ()) if p.is_file()]
        return str(tables[0]) if tables else None

    def features(self, preset: str) -> torch.Tensor:
        """``[N, d]`` features of every recording (in :attr:`recordings` order) for the preset's audio encoder."""
        spec = model_config(preset, modalities={"audio": self.audio}).modalities["audio"]
        key = f"{spec.encoder}|{sorted(spec.encoder_options.items())}"
        if key not in self.tables:
            table = featurize("audio", build_encoder("audio", spec), self.recordings, self.ctx.cache, skip_bad=True)
            self.tables[key] = table
            if table.skipped:
                self.skipped += [(self.recordings[i].audio, why) for i, why in table.skipped]
                self.keep([i for i, rows in enumerate(table.rows) if rows])
        return self.tables[key].pooled()

    def keep(self, indices: list[int]) -> None:
        """Keep only the recordings ``indices`` of :attr:`recordings` (in every encoder's table)."""
        self.recordings = [self.recordings[i] for i in indices]
        self.held_out = self.held_out[indices]
        for key, table in self.tables.items():
            self.tables[key] = ModalityTable(table.pooled()[indices], [[j] for j in range(len(indices))])

    def model(self, preset: str, train: np.ndarray, features: torch.Tensor | None = None, **overrides: Any
              ) -> FGModel:
        """The audio-only ``preset`` fitted on the recordings ``train`` (``features``: other recording vectors
        than the preset's encoder gives; ``overrides``: patches of the preset, e.g. another projection)."""
        features = self.features(preset) if features is None else features
        patch = self.overrides(preset)
        for key, value in overrides.items():
            patch[key] = {m: patch.get(key, {}).get(m, {}) | spec for m, spec in value.items()}
        model = self.ctx.model(preset, dims={"audio": features.shape[1]}, **patch)
        model.fit_features({"audio": ModalityTable.one_per_sample(features[train])},
                           torch.as_tensor(self.labels[train]))
        return model

    def joint_model(self, preset: str, train: np.ndarray) -> FGModel:
        """The image + audio ``preset`` fitted on the training images and the recordings ``train``."""
        ctx, features = self.ctx, self.features(preset)
        images, _ = ctx.trained_indices()
        n_images, n_audio = len(images), len(train)
        image_rows = [[k] for k in range(n_images)] + [[] for _ in range(n_audio)]
        audio_rows = [[] for _ in range(n_images)] + [[k] for k in range(n_audio)]
        tables = {"image": ModalityTable(ctx.features["image"][images], image_rows),
                  "audio": ModalityTable(features[train], audio_rows)}
        labels = torch.cat([ctx.labels(images), torch.as_tensor(self.labels[train])])
        model = ctx.model(preset, dims={"audio": features.shape[1]}, **self.overrides(preset))
        with ctx.train_config(f"audio-{preset}", len(labels)) as config:
            model.fit_features(tables, labels, train=config)
        return model


def available_paths(run: AudioRun) -> list[str]:
    """The paths whose encoders can be created here (BirdNET needs the extra)."""
    names = []
    for name, path in AUDIO_PATHS.items():
        try:
            run.features(path.preset)
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


def _by_preset(paths: Sequence[str], preset: Callable[[AudioPath], str]) -> dict[str, list[str]]:
    """The paths grouped by the model they read (one fit serves several paths)."""
    groups: dict[str, list[str]] = {}
    for name in paths:
        groups.setdefault(preset(AUDIO_PATHS[name]), []).append(name)
    return groups


def recording_log_probs(run: AudioRun, paths: Sequence[str], fold: Fold) -> dict[str, torch.Tensor]:
    """``{path: [len(fold.test), C] log p(class | recording)}`` of the fold's test recordings (one audio-only
    model per preset, fitted on the fold's training recordings)."""
    out = {}
    for preset, names in _by_preset(paths, lambda p: p.preset).items():
        model, features = run.model(preset, fold.train), run.features(preset)[fold.test]
        out.update({name: AUDIO_VIEWS.get(AUDIO_PATHS[name].view)(model, features) for name in names})
    return out


def recording_top1(log_probs: torch.Tensor, labels: np.ndarray) -> float:
    return float((log_probs.argmax(dim=1).numpy() == labels).mean())


def _retrieval_scores(image_log_probs: torch.Tensor, audio_log_probs: torch.Tensor, classes: list[int],
                      num_classes: int) -> torch.Tensor:
    """``[Q, G]`` same-class probabilities of images and recordings over ``classes``."""
    everything = range(num_classes)
    return same_class_probability(restrict(image_log_probs, everything, classes),
                                  restrict(audio_log_probs, everything, classes))


def retrieval(run: AudioRun, paths: Sequence[str], fold: Fold) -> dict[str, dict[str, float]]:
    """``{path: {"i2a_mAP", "a2i_mAP"}}``: test images of the gallery's classes against the fold's test
    recordings, through one image + audio model per preset fitted on the training images and recordings."""
    ctx, labels = run.ctx, run.labels
    gallery = labels[fold.test]
    test = ctx.indices("test")
    queries = test[np.isin(ctx.dataset.labels[test], gallery)]
    if not len(queries):
        raise DataError(ctx.dataset.root, "no test image of a class with a held-out recording")
    classes = sorted({int(c) for c in labels[fold.train]})
    image_labels, audio_labels = torch.as_tensor(ctx.dataset.labels[queries]), torch.as_tensor(gallery)
    out = {}

    def maps(scores: torch.Tensor) -> dict[str, float]:
        return {"i2a_mAP": mean_average_precision(scores, image_labels, audio_labels),
                "a2i_mAP": mean_average_precision(scores.T, audio_labels, image_labels)}

    for preset, names in _by_preset(paths, lambda p: p.joint).items():
        model = run.joint_model(preset, fold.train)
        image_features, recordings = ctx.features["image"][torch.as_tensor(queries)], run.features(preset)[fold.test]
        images = torch.log_softmax(model.logits({"image": image_features}), dim=1)
        for name in names:
            audio_log_probs = AUDIO_VIEWS.get(AUDIO_PATHS[name].view)(model, recordings)
            out[name] = maps(_retrieval_scores(images, audio_log_probs, classes, ctx.dataset.num_classes))
        with torch.no_grad():  # the other view of the same model: cosine of the joint embeddings
            out[f"cosine_{preset.replace('-', '_')}"] = maps(model.embed("image", image_features)
                                                              @ model.embed("audio", recordings).T)
    return out


def _contract(run: AudioRun, paths: Sequence[str]) -> dict[str, float]:
    labels = run.labels
    train = np.flatnonzero(~run.held_out)
    test = np.flatnonzero(run.held_out & np.isin(labels, labels[train]))
    if not len(test):
        raise DataError(run.ctx.dataset.root, "no held-out recording of a class with a training recording")
    fold = Fold(train, test)
    metrics = {f"audio_top1_{name}": recording_top1(log_probs, labels[test])
               for name, log_probs in recording_log_probs(run, paths, fold).items()}
    for name, keys in retrieval(run, paths, fold).items():
        metrics.update({f"{key}_{name}": value for key, value in keys.items()})
    return metrics


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


def _dev(run: AudioRun, paths: Sequence[str]) -> dict[str, float]:
    labels, seed = run.labels, run.ctx.seed
    metrics: dict[str, float] = {}
    for protocol, folds in (("loo", leave_one_out_folds(labels)),
                            ("1shot", one_shot_folds(labels, seed, ONE_SHOT_REPEATS))):
        hits: dict[str, list[float]] = {name: [] for name in paths}
        for fold in folds:
            for name, log_probs in recording_log_probs(run, paths, fold).items():
                hits[name].append(recording_top1(log_probs, labels[fold.test]))
        metrics.update({f"audio_top1_dev_{protocol}_{name}": float(np.mean(h)) if h else None
                        for name, h in hits.items()})
    draws = [retrieval(run, paths, fold) for fold in _dev_draws(labels, seed)]
    for name in draws[0]:  # the paths, and the cosine view of each image + audio model
        for key in ("i2a_mAP", "a2i_mAP"):
            metrics[f"{key}_dev_1shot_{name}"] = float(np.mean([d[name][key] for d in draws]))
    return metrics


def _chance(run: AudioRun) -> dict[str, float]:
    """Expected dev mAP of a random ranking (mean over 200 random score matrices of the first draw)."""
    ctx = run.ctx
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
    return _evaluate(run, available_paths(run))


@TASKS.register("audio_default")
def audio_default_task(ctx: TaskContext) -> dict[str, float]:
    """The offline default path only (no BirdNET even when installed): the demo's audio rows."""
    return _evaluate(audio_run(ctx), ["default"])


def _evaluate(run: AudioRun, paths: list[str]) -> dict[str, Any]:
    best = next(p for p in BEST_PATHS if p in paths)
    metrics: dict[str, Any] = {"audio_path": best, "audio_paths": paths, "audio_recordings": len(run.recordings),
                               "audio_held_out": int(run.held_out.sum())}
    if run.held_out.any():
        metrics.update(_contract(run, paths))
        metrics.update({k: metrics[f"{k}_{best}"] for k in ("audio_top1", "i2a_mAP", "a2i_mAP")})
    else:
        duplicates = set(duplicate_recordings(run.features(AUDIO_PATHS["default"].preset)))
        run.keep([i for i in range(len(run.recordings)) if i not in duplicates])
        metrics["audio_dev_duplicates_dropped"] = len(duplicates)
        metrics.update(_dev(run, paths))
        metrics.update(_chance(run))
    metrics["audio_skipped"] = [{"path": str(p), "problem": why} for p, why in run.skipped]
    return metrics
