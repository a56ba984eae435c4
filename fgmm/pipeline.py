"""From a dataset to results: encode (through the feature cache), then run evaluation tasks.

``fgmm demo`` and ``benchmarks/cub.py`` are both thin wrappers over :func:`build_context` and
:func:`fgmm.tasks.run_tasks`, so they measure the same thing in the same way.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from fgmm.cache import FeatureCache
from fgmm.data.sample import MultiModalDataset
from fgmm.encoders import create_encoder
from fgmm.errors import DataError
from fgmm.tasks import TaskContext


def default_cache_dir() -> Path:
    """``$FGMM_CACHE`` or ``$XDG_CACHE_HOME/fgmm/features`` (``~/.cache/fgmm/features``)."""
    if os.environ.get("FGMM_CACHE"):
        return Path(os.environ["FGMM_CACHE"]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
    return base / "fgmm" / "features"


def encode_dataset_images(dataset: MultiModalDataset, cache: FeatureCache, *,
                          vision: str = "efficientnet_lite2", image_size: int | None = None,
                          vision_options: Mapping[str, Any] | None = None, batch_size: int = 32,
                          skip_bad: bool = False,
                          progress: bool = True) -> tuple[MultiModalDataset, torch.Tensor, dict]:
    """Frozen image features of every sample, through ``cache``.

    ``vision_options`` are further keyword arguments of the vision encoder (e.g. ``{"zoom": True}``).

    Returns the dataset (without the samples whose image could not be read when ``skip_bad``;
    they are listed in ``stats["skipped"]``), the ``[N, d]`` features aligned with it, and timing
    stats (``images_per_s`` counts only images actually encoded in this call).
    """
    missing = [s.id for s in dataset if s.image is None]
    if missing:
        raise DataError(dataset.root, f"{len(missing)} samples have no image (first: '{missing[0]}'); "
                                      "image features need an image per sample")
    encoder = create_encoder("vision", vision, image_size=image_size, **(vision_options or {}))
    start = time.perf_counter()
    result = cache.encode_images(encoder, [s.image for s in dataset], batch_size=batch_size,
                                 progress=progress, skip_bad=skip_bad)
    seconds = time.perf_counter() - start
    encoded = result.encoded
    if result.skipped:
        dataset = dataset.subset(result.kept)
    stats = {
        "encoder": encoder.name, "encoder_fingerprint": encoder.fingerprint(), "dim": encoder.dim,
        "preprocessing": encoder.preprocessing(), "encoded": encoded, "seconds": round(seconds, 3),
        "images_per_s": round(encoded / seconds, 2) if encoded else None,
        "skipped": [{"path": str(p), "problem": why} for p, why in result.skipped],
    }
    return dataset, result.features, stats


def build_context(dataset: MultiModalDataset, *, cache: FeatureCache | None = None,
                  vision: str = "efficientnet_lite2", image_size: int | None = None,
                  vision_options: Mapping[str, Any] | None = None, unseen_classes: list[int] | None = None,
                  seed: int = 0, quick: bool = False,
                  out_dir: Path | None = None, device: str | None = None, skip_bad: bool = False,
                  progress: bool = True) -> tuple[TaskContext, dict]:
    """Encode ``dataset``'s images and wrap everything tasks need into a :class:`TaskContext`.

    ``unseen_classes`` defaults to ``dataset.unseen_classes``; ``vision``, ``image_size`` and
    ``vision_options`` choose the image encoder (:func:`encode_dataset_images`). Returns the context and the encoding
    stats of :func:`encode_dataset_images`.
    """
    if not dataset.split:
        raise DataError(dataset.root, "the dataset has no train/test split")
    cache = cache or FeatureCache(default_cache_dir())
    dataset, features, stats = encode_dataset_images(dataset, cache, vision=vision, image_size=image_size,
                                                     vision_options=vision_options, skip_bad=skip_bad,
                                                     progress=progress)
    unseen = list(dataset.unseen_classes if unseen_classes is None else unseen_classes)
    if unseen_classes is not None:
        dataset = replace(dataset, unseen_classes=unseen)
    ctx = TaskContext(dataset=dataset, features={"image": features}, unseen_classes=unseen, seed=seed,
                      device=device or ("cuda" if torch.cuda.is_available() else "cpu"), quick=quick,
                      out_dir=out_dir, cache=cache, encoders={"image": vision},
                      encoder_options={"image": {**({"image_size": image_size} if image_size else {}),
                                                 **(vision_options or {})}})
    return ctx, stats
