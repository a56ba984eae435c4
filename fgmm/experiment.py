"""Config-driven training and evaluation of an image classifier (``fgmm train`` / ``fgmm evaluate``).

An :class:`ExperimentConfig` (YAML/JSON, see ``examples/configs/``) names the data, the vision
encoder, the head and the :class:`~fgmm.train.TrainConfig`. With ``model.finetune: false`` (the CPU
path) images are encoded once through the feature cache and a head trains on cached features in
seconds; with ``finetune: true`` (the GPU path) the backbone trains end to end on augmented images.
Both write a run folder::

    run/
      .fgmm.json        ownership marker (fgmm.ownership): this is an fgmm run folder
      experiment.yaml   the config
      model.json        classes, encoder, head and a fingerprint of the data: what evaluate needs to
                        rebuild the model, and what a resume must match
      best.ckpt / last.ckpt, metrics.jsonl   from the Trainer
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from fgmm.cache import FeatureCache
from fgmm.data import load_dataset
from fgmm.data.sample import MultiModalDataset
from fgmm.data.splits import holdout_split
from fgmm.data.torch_dataset import FeatureDataset, ImageDataset
from fgmm.encoders import create_encoder
from fgmm.errors import ConfigError, DataError
from fgmm.models.classifier import ImageClassifier
from fgmm.models.heads import create_head
from fgmm.pipeline import default_cache_dir
from fgmm.report import plot_confusion, plot_per_class_accuracy, plot_training_curve, write_json_atomic
from fgmm.train import TrainConfig, Trainer, load_checkpoint, load_config, save_config, seed_everything
from fgmm.train.config import check_range, config_from_dict, read_config_data
from fgmm.train.run_folder import check_same_setup, ensure_run_folder, open_run, plan_run

MIN_IMAGE_SIZE = 16


@dataclass
class DataConfig:
    """Where the data is. ``root`` in any registered format (CUB layout, fgmm folder format).

    ``holdout`` (the test fraction when the data has no test split) must be in (0, 1) and
    ``val_fraction`` (validation taken from the training part) in [0, 1).
    """

    root: Path = Path("data")
    format: str | None = None
    holdout: float = 0.2
    val_fraction: float = 0.1
    seed: int = 0
    skip_bad: bool = False

    def __post_init__(self) -> None:
        check_range(self, non_negative=("seed",), unit=("holdout",), fraction=("val_fraction",))


@dataclass
class ModelConfig:
    """The classifier: a vision encoder (any timm name) and a head from :data:`fgmm.models.HEADS`."""

    vision: str = "efficientnet_lite2"
    image_size: int | None = None
    pretrained: bool = True
    head: str = "linear"
    dropout: float = 0.2
    finetune: bool = False

    def __post_init__(self) -> None:
        if self.image_size is not None and self.image_size < MIN_IMAGE_SIZE:
            raise ConfigError(f"key 'image_size' must be at least {MIN_IMAGE_SIZE} pixels, got {self.image_size}")
        check_range(self, fraction=("dropout",))


@dataclass
class ExperimentConfig:
    """A whole training run; ``train.out_dir`` is the run folder."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    cache_dir: Path | None = None

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


def _build_model(spec: dict[str, Any], encoder=None) -> ImageClassifier:
    head = create_head(spec["head"], in_dim=spec["dim"], num_classes=len(spec["classes"]))
    return ImageClassifier(head, spec["dim"], encoder=encoder, dropout=spec["dropout"])


class _ImagesWithLabels(Dataset):
    """Dict items ``{"image", "label"}`` for the trainer (drops ``index``)."""

    def __init__(self, dataset: MultiModalDataset, transform):
        self.images = ImageDataset(dataset, transform)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.images[i]
        return {"image": item["image"], "label": item["label"]}


def _with_validation(dataset: MultiModalDataset, fraction: float, seed: int) -> list[str]:
    """The split with a seeded ``fraction`` of each class's train samples relabelled ``"val"``."""
    train = [i for i, s in enumerate(dataset.split) if s == "train"]
    split = list(dataset.split)
    if fraction > 0:
        inner = holdout_split([dataset[i].label for i in train], fraction, seed)
        for i, part in zip(train, inner, strict=True):
            split[i] = "val" if part == "test" else "train"
    return split


def _datasets(cfg: ExperimentConfig, dataset: MultiModalDataset, cache: FeatureCache,
              encoder, parts: tuple[str, ...]) -> tuple[list[Dataset], MultiModalDataset]:
    """Trainer datasets for each split name in ``parts`` (features or images), and ``dataset``
    without the samples whose image could not be read (``skip_bad``)."""
    if cfg.model.finetune:
        transforms = {"train": encoder.transform(train=True)}
        views = [_ImagesWithLabels(dataset.subset([i for i, s in enumerate(dataset.split) if s == part]),
                                   transforms.get(part, encoder.transform())) for part in parts]
        return views, dataset
    missing = [s.id for s in dataset if s.image is None]
    if missing:
        raise DataError(cfg.data.root, f"{len(missing)} samples have no image (first: '{missing[0]}')")
    encoded = cache.encode_images(encoder, [s.image for s in dataset], skip_bad=cfg.data.skip_bad,
                                  progress=cfg.train.progress)
    features = encoded.features
    if encoded.skipped:
        dataset = dataset.subset(encoded.kept)
    labels = torch.as_tensor(dataset.labels)
    views = []
    for part in parts:
        rows = torch.as_tensor([i for i, s in enumerate(dataset.split) if s == part], dtype=torch.long)
        if len(rows) == 0:
            raise DataError(cfg.data.root, f"the '{part}' split is empty")
        views.append(FeatureDataset({"features": features[rows]}, labels[rows]))
    return views, dataset


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


def train_experiment(cfg: ExperimentConfig, *, resume: bool = False, fresh: bool = False,
                     force: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; returns ``{"run_dir", "best_val_top1", "history", "stop_reason", "steps", "action"}``.

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
    plan = plan_run(cfg.train.out_dir, cfg.train, resume=resume, fresh=fresh, force=force, has_val=has_val)
    dataset = _load(cfg.data)
    if not dataset.split or "test" not in dataset.split:
        raise DataError(cfg.data.root, "the dataset has no test samples to validate on")
    cache = FeatureCache(cfg.cache_dir or default_cache_dir())
    seed_everything(cfg.train.seed)  # an encoder without pretrained weights starts from the seed too
    encoder = create_encoder("vision", cfg.model.vision, image_size=cfg.model.image_size,
                             pretrained=cfg.model.pretrained, frozen=not cfg.model.finetune)
    dataset = replace(dataset, split=_with_validation(dataset, cfg.data.val_fraction, cfg.data.seed))
    spec = {"classes": dataset.class_names, "vision": cfg.model.vision, "image_size": cfg.model.image_size,
            "head": cfg.model.head, "dim": encoder.dim, "dropout": cfg.model.dropout,
            "finetune": cfg.model.finetune, "encoder_fingerprint": encoder.fingerprint(),
            "data_fingerprint": data_fingerprint(dataset)}
    stored = plan.folder / "model.json"
    check_same_setup(plan, json.loads(stored.read_text()) if stored.is_file() else None, spec)
    parts = ("train", "val") if has_val else ("train",)
    views, _ = _datasets(cfg, dataset, cache, encoder, parts)
    train_data, val_data = views[0], (views[1] if len(views) > 1 else None)
    seed_everything(cfg.train.seed)  # again: encoding (or not, on a cache hit) must not change the head's init
    model = _build_model(spec, encoder if cfg.model.finetune else None)
    if not cfg.model.finetune:
        model.norm.fit(train_data.features["features"])
    with open_run(plan) as run_dir:
        save_config(cfg, run_dir / "experiment.yaml")
        write_json_atomic(run_dir / "model.json", spec)
        trainer = Trainer(model, cfg.train, train_data, val_data=val_data)
    result = trainer.fit(resume=plan.action == "resume")
    return {"run_dir": str(run_dir), "best_val_top1": result.best_metric, "history": result.history,
            "stop_reason": result.stop_reason, "steps": result.steps, "action": plan.action}


CHECKPOINTS = ("best", "last")


def evaluate_run(run_dir: str | Path, data_root: str | Path | None = None,
                 checkpoint: str = "best") -> dict[str, Any]:
    """Evaluate a run folder on the test split of its data (or of ``data_root``); writes eval.json + plots."""
    run_dir = Path(run_dir)
    if checkpoint not in CHECKPOINTS:
        raise ConfigError(f"checkpoint must be one of {', '.join(CHECKPOINTS)}, got '{checkpoint}'")
    for needed in ("experiment.yaml", "model.json"):
        if not (run_dir / needed).is_file():
            raise DataError(run_dir / needed, "not found: is this a run folder written by `fgmm train`?")
    ensure_run_folder(run_dir)  # evaluate writes eval.json and plots there
    cfg = ExperimentConfig.from_file(run_dir / "experiment.yaml")
    spec = json.loads((run_dir / "model.json").read_text())
    if data_root is not None:
        cfg.data.root = Path(data_root)
    dataset = _load(cfg.data)
    if dataset.class_names != spec["classes"]:
        raise ConfigError(f"{cfg.data.root}: its classes differ from the {len(spec['classes'])} classes "
                          f"the run in {run_dir} was trained on")
    ckpt = run_dir / f"{checkpoint}.ckpt"
    if checkpoint == "best" and not ckpt.is_file():  # trained without validation data: no best epoch
        ckpt = run_dir / "last.ckpt"
    state = load_checkpoint(ckpt)
    encoder = create_encoder("vision", spec["vision"], image_size=spec["image_size"],
                             pretrained=cfg.model.pretrained, frozen=True)
    model = _build_model(spec, encoder if spec["finetune"] else None)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError) as exc:
        raise DataError(ckpt, f"checkpoint does not fit the model described by {run_dir / 'model.json'} "
                              f"({str(exc).strip().splitlines()[0]})") from None
    cache = FeatureCache(cfg.cache_dir or default_cache_dir())
    (test_data,), dataset = _datasets(cfg, dataset, cache, encoder, ("test",))
    test_part = dataset.part("test")
    eval_cfg = TrainConfig(**{**asdict(cfg.train), "out_dir": run_dir / "eval", "progress": False})
    logits = Trainer(model, eval_cfg, test_data).predict(test_data)
    y_true, y_pred = test_part.labels, logits.argmax(1).cpu().numpy()
    metrics = {"top1": float((y_true == y_pred).mean()), "n_test": int(len(y_true)),
               "checkpoint": str(ckpt), "data": str(cfg.data.root)}
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
