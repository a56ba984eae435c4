"""Config-driven training and evaluation of the one model (``fgmm train`` / ``fgmm evaluate``).

An :class:`ExperimentConfig` (YAML/JSON, see ``examples/configs/``) names the data, the model (a preset
of :func:`fgmm.list_models` — image, +text, +knowledge graph, ... — with overrides) and the
:class:`~fgmm.train.TrainConfig`. On the CPU path the frozen encoders' features come from the feature
cache and only the model's projections, fusion and class embeddings train; with ``model.finetune: true``
(the GPU path) the image encoder trains end to end on augmented images. Both write a run folder::

    run/
      .fgmm.json        ownership marker (fgmm.ownership): this is an fgmm run folder
      experiment.yaml   the config
      model.json        classes, model config and a fingerprint of the data: what a resume must match
      best.ckpt / last.ckpt, metrics.jsonl   from the Trainer (models with learned parts)
      model/            the trained model (FGModel.save_pretrained): read by evaluate, predict, index build
      eval.json, per_class.png, confusion.png, training.png   from evaluate

What may happen to an existing run folder (``resume``, ``fresh``, ``force``) is decided by
:mod:`fgmm.train.run_folder` before any data is loaded, and everything (config, data, features,
model) is checked before the folder is changed. Generators are seeded before the model is built, so
two runs with one config give identical weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from fgmm.cache import FeatureCache
from fgmm.data import load_dataset
from fgmm.data.sample import MultiModalDataset
from fgmm.data.splits import holdout_split
from fgmm.errors import ConfigError, DataError
from fgmm.io import write_csv_atomic
from fgmm.pipeline import default_cache_dir
from fgmm.report import plot_confusion, plot_per_class_accuracy, plot_training_curve, write_json_atomic
from fgmm.space import FGModel, create_model, model_config
from fgmm.space.factory import image_shortcuts
from fgmm.space.fitting import fit_samples
from fgmm.space.pretrained import is_model_folder
from fgmm.train import TrainConfig, load_config, save_config, seed_everything
from fgmm.train.config import check_range, config_from_dict, config_to_dict, read_config_data
from fgmm.train.run_folder import RUN_FILES, check_same_setup, ensure_run_folder, open_run, plan_run
from fgmm.zeroshot import mean_class_accuracy

MIN_IMAGE_SIZE = 16
FILTER_FILES = ("label_decisions.csv", "filter.json")
"""What ``data.filter`` adds to a run folder."""
MODEL_FOLDER = "model"


@dataclass
class DataConfig:
    """Where the data is. ``root`` in any registered format (CUB layout, fgmm folder format).

    ``holdout`` (the test fraction when the data has no test split) must be in (0, 1) and
    ``val_fraction`` (validation taken from the training part) in [0, 1). ``kg``: a knowledge-graph file
    (Turtle, N-Triples, JSON-LD) for models whose class embeddings come from a graph; default: the
    dataset's own graph (CUB: attributes + taxonomy) or its class x attribute matrix.

    ``filter``: noisy labels (web data): a filter of :data:`fgmm.filters.FILTERS` that reads out-of-fold
    probabilities (``crossmodal``, ``confident``, ``cleanlab``, ``openset``) judges the training labels
    with the model's own modalities and knowledge graph before training (:func:`fgmm.filters.judge_labels`,
    options in ``filter_options``); dropped samples are left out, relabelled ones train with their new
    label, and the run folder gets ``label_decisions.csv`` and the counts in ``filter.json``.
    """

    root: Path = Path("data")
    format: str | None = None
    holdout: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    skip_bad: bool = False
    kg: Path | None = None
    filter: str | None = None
    filter_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range(self, non_negative=("seed",), unit=("holdout",), fraction=("val_fraction",))
        if self.filter is not None:
            from fgmm.filters import FILTERS

            FILTERS.get(self.filter)  # an unknown name fails here, with the valid ones listed


@dataclass
class ModelConfig:
    """The model: a preset of :func:`fgmm.list_models` plus ``config`` overrides (any key of
    :class:`fgmm.space.FGModelConfig`, merged), and shortcuts for the usual changes.

    Attributes:
        preset: ``"image"``, ``"image-kg"``, ``"image-text"``, ``"image-text-kg"``, ...
        config: merged into the preset, e.g. ``{"dim": 512, "modalities": {"text": {"max_items": 5}}}``.
        vision: the image encoder (any timm name; default: the preset's, EfficientNet-Lite2).
        image_size: the image encoder's input size (default: the weights').
        pretrained: start the image encoder from pretrained weights (``false``: random, seeded).
        finetune: train the image encoder end to end (GPU path; its projection becomes a learned ``mlp``).
        zoom: append object-zoom features to the image encoder's (:mod:`fgmm.encoders.zoom`: the bird found
            by the backbone's own activations, encoded again from a 2x source; 3x the encoding cost).
    """

    preset: str = "image"
    config: dict[str, Any] = field(default_factory=dict)
    vision: str | None = None
    image_size: int | None = None
    pretrained: bool = True
    finetune: bool = False
    zoom: bool = False

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"key 'image_size' must be at least {MIN_IMAGE_SIZE} pixels, got {self.image_size}")

    def overrides(self) -> dict[str, Any]:
        """``config`` with the shortcuts applied (what :func:`fgmm.create_model` merges into the preset)."""
        patch = image_shortcuts({**json.loads(json.dumps(self.config)), "vision": self.vision,
                                 "image_size": self.image_size, "pretrained": self.pretrained, "zoom": self.zoom})
        if self.finetune:
            modalities = patch.setdefault("modalities", {})
            modalities["image"] = {**modalities.get("image", {}), "trainable": True, "projection": "mlp"}
        return patch


@dataclass
class ExperimentConfig:
    """A whole training run; ``train.out_dir`` is the run folder."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        model_config(self.model.preset, **self.model.overrides())  # an unknown preset or key fails here

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentConfig:
        return load_config(cls, path)

    @classmethod
    def from_sources(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                     names: Mapping[str, str] | None = None) -> ExperimentConfig:
        """The config of file ``path`` (defaults without one) with dotted ``overrides`` applied
        (``{"train.epochs": 5}``; ``None`` values are skipped), validated once, as a whole.

        Args:
            names: how the user spelled each override (``{"train.epochs": "--epochs"}``), for messages.

        Raises:
            ConfigError: naming the file, the options and the key that is wrong.
        """
        data = read_config_data(path) if path is not None else {}
        given = {key: value for key, value in (overrides or {}).items() if value is not None}
        for key, value in given.items():
            *sections, name = key.split(".")
            target = data
            for section in sections:
                target = target.setdefault(section, {})
                if not isinstance(target, dict):
                    raise ConfigError(f"{path}: key '{section}' must be a mapping")
            target[name] = str(value) if isinstance(value, Path) else value
        spelled = [f"{(names or {}).get(k, k)} {v}" for k, v in given.items()]
        source = " with ".join(part for part in (str(path) if path else "", ", ".join(spelled)) if part)
        return config_from_dict(cls, data, source=source or None)


def _load(data: DataConfig) -> MultiModalDataset:
    kwargs: dict[str, Any] = {}
    if (data.format or "") == "cub" or (Path(data.root) / "CUB_200_2011").is_dir():
        kwargs = {"holdout": data.holdout, "seed": data.seed, "skip_bad": data.skip_bad}
    return load_dataset(data.root, data.format, **kwargs)


def _with_validation(dataset: MultiModalDataset, fraction: float, seed: int) -> list[str]:
    """The split with a seeded ``fraction`` of each class's train samples relabelled ``"val"``."""
    train = [i for i, s in enumerate(dataset.split) if s == "train"]
    split = list(dataset.split)
    if fraction > 0:
        inner = holdout_split([dataset[i].label for i in train], fraction, seed)
        for i, part in zip(train, inner, strict=True):
            split[i] = "val" if part == "test" else "train"
    return split


def data_fingerprint(dataset: MultiModalDataset) -> str:
    """SHA-256 (16 hex digits) of the samples a run trains and validates on: ids, labels, split parts and
    image paths relative to the root; a resumed run must see the same."""
    root = Path(dataset.root) if dataset.root else None

    def where(sample) -> str | None:
        if sample.image is None:
            return None
        path = Path(sample.image)
        return path.relative_to(root).as_posix() if root and path.is_relative_to(root) else path.as_posix()

    rows = [[s.id, int(s.label), part, where(s)] for s, part in zip(dataset.samples, dataset.split, strict=True)]
    return hashlib.sha256(json.dumps([dataset.class_names, rows]).encode()).hexdigest()[:16]


def build_model(cfg: ExperimentConfig, dataset: MultiModalDataset) -> FGModel:
    """The untrained model ``cfg`` describes, for ``dataset``'s classes, seeded by ``cfg.train.seed``;
    a knowledge graph comes from ``data.kg`` or the dataset (see :func:`fgmm.create_model`)."""
    from fgmm.kg import KnowledgeGraph

    kg = KnowledgeGraph.load(cfg.data.kg) if cfg.data.kg is not None else None
    seed_everything(cfg.train.seed)
    return create_model(cfg.model.preset, kg=kg, dataset=dataset, seed=cfg.train.seed, **cfg.model.overrides())


def train_experiment(cfg: ExperimentConfig, *, resume: bool = False, fresh: bool = False,
                     force: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; returns ``{"run_dir", "model_dir", "best_val_top1", "history", "stop_reason",
    "steps", "action"}``.

    A seeded ``data.val_fraction`` of each class's train samples validates (best checkpoint, early
    stopping); the test split is left for :func:`evaluate_run`.

    Args:
        cfg: the experiment; ``cfg.train.out_dir`` is the run folder.
        resume: continue the unfinished run in the folder (same settings and data, checked).
        fresh: start over in a folder that holds a run (its files are replaced once all checks pass).
        force: write into a non-empty folder that is not an fgmm run (its files are never touched).

    Raises:
        ConfigError / OwnershipError / DataError: before anything in the run folder changes (see
            :mod:`fgmm.train.run_folder`).
    """
    has_val = cfg.data.val_fraction > 0
    plan = plan_run(cfg.train.out_dir, cfg.train, resume=resume, fresh=fresh, force=force, has_val=has_val,
                    files=(*RUN_FILES, MODEL_FOLDER, *FILTER_FILES))
    dataset = _load(cfg.data)
    if not dataset.split or "test" not in dataset.split:
        raise DataError(cfg.data.root, "the dataset has no test samples to validate on")
    dataset = replace(dataset, split=_with_validation(dataset, cfg.data.val_fraction, cfg.data.seed))
    model = build_model(cfg, dataset)
    spec = {"classes": dataset.class_names, "model": config_to_dict(model.config),
            "data_fingerprint": data_fingerprint(dataset)}
    stored = plan.folder / "model.json"
    check_same_setup(plan, json.loads(stored.read_text()) if stored.is_file() else None, spec)
    cache = FeatureCache(cfg.cache_dir or default_cache_dir())
    parts = {part: dataset.part(part) for part in ("train", "val") if part in dataset.split}
    train_samples = parts["train"].samples
    judgement = None
    if cfg.data.filter is not None:
        from fgmm.filters import judge_labels

        judgement = judge_labels(model, train_samples, cfg.data.filter, cache=cache, seed=cfg.data.seed,
                                 progress=cfg.train.progress, skip_bad=cfg.data.skip_bad, **cfg.data.filter_options)
        train_samples = judgement.samples(train_samples)
    training = model.sample_features(train_samples, cache, train=True, progress=cfg.train.progress,
                                     skip_bad=cfg.data.skip_bad)
    validation = (model.sample_features(parts["val"].samples, cache, skip_bad=cfg.data.skip_bad)
                  if has_val and "val" in parts else None)
    with open_run(plan) as run_dir:
        save_config(cfg, run_dir / "experiment.yaml")
        write_json_atomic(run_dir / "model.json", spec)
        if judgement is not None:
            write_label_decisions(judgement, parts["train"], run_dir)
    result = fit_samples(model, training, train=cfg.train, val=validation, seed=cfg.train.seed,
                         resume=plan.action == "resume")
    model_dir = model.save_pretrained(run_dir / MODEL_FOLDER, overwrite=True)
    return {"run_dir": str(run_dir), "model_dir": str(model_dir), "best_val_top1": result.best_metric,
            "history": result.history, "stop_reason": result.stop_reason, "steps": result.steps,
            "action": plan.action}


def write_label_decisions(judgement, train: MultiModalDataset, run_dir: Path) -> None:
    """``label_decisions.csv`` (one row per judged sample: id, image, given and suggested class, decision,
    score) and ``filter.json`` (the counts) in ``run_dir``."""
    from fgmm.filters import Decision

    names = train.class_names
    rows = []
    for row, position in enumerate(judgement.positions):
        sample = train[int(position)]
        suggested, decision = int(judgement.filter.suggested[row]), Decision(judgement.filter.decisions[row])
        rows.append([sample.id, str(sample.image or ""), names[sample.label], names[suggested],
                     decision.name.lower(), f"{float(judgement.filter.scores[row]):.6f}"])
    write_csv_atomic(run_dir / "label_decisions.csv", ["id", "image", "given", "suggested", "decision", "score"], rows)
    write_json_atomic(run_dir / "filter.json", judgement.summary())


def _model_dir(run_dir: Path) -> Path:
    if is_model_folder(run_dir / MODEL_FOLDER):
        return run_dir / MODEL_FOLDER
    raise DataError(run_dir / MODEL_FOLDER, "no trained model here: is this a run folder written by `fgmm train` "
                                            "that finished?")


def evaluate_run(run_dir: str | Path, data_root: str | Path | None = None) -> dict[str, Any]:
    """Evaluate a run folder's model on the test split of its data (or of ``data_root``); writes eval.json + plots.

    Metrics: ``top1`` (overall) and ``mean_class_top1`` (mean per class) over the test samples, and
    ``top1_unseen`` for test samples of classes the model had no training sample of (named through its
    knowledge graph) when there are some.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "experiment.yaml").is_file():
        raise DataError(run_dir / "experiment.yaml", "not found: is this a run folder written by `fgmm train`?")
    ensure_run_folder(run_dir)  # evaluate writes eval.json and plots there
    cfg = ExperimentConfig.from_file(run_dir / "experiment.yaml")
    model = FGModel.from_pretrained(_model_dir(run_dir))
    if data_root is not None:
        cfg.data.root = Path(data_root)
    dataset = _load(cfg.data)
    if dataset.class_names != model.class_names:
        raise ConfigError(f"{cfg.data.root}: its classes differ from the {model.num_classes} classes "
                          f"the model in {run_dir} was trained on")
    test = dataset.part("test")
    cache = FeatureCache(cfg.cache_dir or default_cache_dir())
    tables = model.featurize(test.samples, cache, skip_bad=cfg.data.skip_bad, progress=cfg.train.progress)
    skipped = {i for table in tables.values() for i, _ in table.skipped}
    keep = [i for i in range(len(test)) if i not in skipped]
    logits = model.logits({m: t.pooled() for m, t in tables.items()}, {m: t.present for m, t in tables.items()})
    y_true, y_pred = test.labels[keep], logits.argmax(1).numpy()[keep]
    metrics: dict[str, Any] = {"top1": float((y_true == y_pred).mean()), "n_test": int(len(y_true)),
                               "mean_class_top1": mean_class_accuracy(torch.as_tensor(y_pred), torch.as_tensor(y_true)),
                               "model": str(_model_dir(run_dir)), "data": str(cfg.data.root)}
    unseen = ~model.trained_classes().numpy()[y_true]
    if unseen.any():
        metrics["top1_unseen"] = float((y_true[unseen] == y_pred[unseen]).mean())
    plot_per_class_accuracy(y_true, y_pred, dataset.class_names, run_dir / "per_class.png")
    plot_confusion(y_true, y_pred, dataset.class_names, run_dir / "confusion.png")
    history_file = run_dir / "metrics.jsonl"
    if history_file.is_file():
        epochs = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
        epochs = [e for e in epochs if e.get("event") == "epoch"]
        if epochs:
            plot_training_curve(epochs, run_dir / "training.png")
    write_json_atomic(run_dir / "eval.json", metrics)
    return metrics


__all__ = ["DataConfig", "ExperimentConfig", "ModelConfig", "build_model", "data_fingerprint", "evaluate_run",
           "train_experiment"]
