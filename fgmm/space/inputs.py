"""From user inputs (samples, image files, texts, ...) to the model's feature tables, through its encoders.

Each modality of a model has a frozen encoder made by :func:`fgmm.create_encoder` from the model
config (``image`` → the ``vision`` registry entry, ``text`` → ``text``, ``audio`` → ``audio``,
``geo`` → ``geo``). A model remembers the fingerprint of every encoder it was fitted with
(:attr:`FGModel.encoder_info`) and refuses features from an encoder whose weights or preprocessing
differ: the projections were fitted to that encoder's space, not another's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from fgmm.data.sample import Sample
from fgmm.encoders import create_encoder
from fgmm.encoders.base import Encoder
from fgmm.errors import ConfigError, DataError
from fgmm.space.config import ModalityConfig
from fgmm.space.features import ModalityTable, featurize

ENCODER_KINDS: dict[str, str] = {"image": "vision", "text": "text", "audio": "audio", "geo": "geo"}
"""Model modality → encoder registry entry (:data:`fgmm.encoders.ENCODERS`)."""


def encoder_kind(modality: str) -> str:
    try:
        return ENCODER_KINDS[modality]
    except KeyError:
        raise ConfigError(f"unknown modality '{modality}'; choose one of: {', '.join(ENCODER_KINDS)}") from None


def describe_encoder(encoder: Encoder) -> dict[str, Any]:
    """What a model records of an encoder: registry kind, name, output width and fingerprint."""
    return {"name": encoder.name, "dim": encoder.dim, "fingerprint": encoder.fingerprint(),
            "preprocessing": encoder.preprocessing()}


def build_encoder(modality: str, spec: ModalityConfig, frozen: bool = True) -> Encoder:
    """The encoder a modality's config names (``spec.encoder`` of the modality's registry kind).

    Weights an encoder does not load (``pretrained: false``) start from a fixed seed, so the same config
    always gives the same encoder (and fingerprint) in every process.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return create_encoder(encoder_kind(modality), spec.encoder, frozen=frozen, **spec.encoder_options)


def model_encoder(model, modality: str) -> Encoder:
    """The frozen encoder of ``modality`` (made once per model), checked against the recorded fingerprint."""
    if modality not in model.config.modalities:
        raise ConfigError(f"the model has no modality '{modality}'; it has {model.modalities}")
    if modality not in model._encoders:
        encoder = build_encoder(modality, model.config.modalities[modality])
        recorded = model.encoder_info.get(modality)
        if recorded is not None and recorded["fingerprint"] != encoder.fingerprint():
            raise DataError(None, f"the model's {modality} side was fitted on features of encoder "
                                  f"'{recorded['name']}' (fingerprint {recorded['fingerprint']}); this machine's "
                                  f"'{encoder.name}' gives fingerprint {encoder.fingerprint()}: other weights or "
                                  "preprocessing, so its features would not match")
        if encoder.dim != model.config.modalities[modality].input_dim:
            raise DataError(None, f"encoder '{encoder.name}' gives {encoder.dim}-d {modality} features, the model "
                                  f"expects {model.config.modalities[modality].input_dim}")
        model._encoders[modality] = encoder
        model.encoder_info[modality] = describe_encoder(encoder)
    return model._encoders[modality]


def featurize_samples(model, samples: Sequence[Sample], cache: Any = None, *, modalities: Sequence[str] | None = None,
                      progress: bool = False, skip_bad: bool = False) -> dict[str, ModalityTable]:
    """Feature tables of ``samples`` for the model's modalities that some sample carries."""
    if len(samples) == 0:
        raise DataError(None, "no samples to encode: the dataset is empty")
    wanted = [m for m in (modalities or model.modalities) if any(_carries(s, m) for s in samples)]
    if not wanted:
        raise DataError(None, f"no sample carries any of the model's modalities {model.modalities}")
    tables = {}
    for m in wanted:
        encoder, store = _encoder_and_cache(model, m, cache)
        tables[m] = featurize(m, encoder, samples, store, progress=progress, skip_bad=skip_bad)
    return tables


def _encoder_and_cache(model, modality: str, cache: Any) -> tuple[Encoder, Any]:
    """The encoder giving ``modality``'s features, and the cache to use: a trainable tower's current
    weights (a frozen copy; never cached, its features change as it trains), else the frozen encoder."""
    if modality in model.towers:
        return copy.deepcopy(model.towers[modality]).freeze(), None
    return model_encoder(model, modality), cache


def tower_inputs(model, modality: str, samples: Sequence[Sample], train: bool = False
                 ) -> Callable[[int], torch.Tensor | None]:
    """``fn(i)``: the raw input of sample ``i`` for the trainable tower of ``modality`` (images: the
    encoder's transform, with augmentation when ``train``), ``None`` when the sample lacks it."""
    if modality != "image":
        raise ConfigError(f"end-to-end training of the '{modality}' encoder is not supported; train its "
                          "projection on cached features (trainable: false)")
    from fgmm.data.images import load_image

    transform = model.towers[modality].transform(train=train)
    paths = [s.image for s in samples]
    return lambda i: None if paths[i] is None else transform(load_image(paths[i]))


def _carries(sample: Sample, modality: str) -> bool:
    if modality == "geo":
        return sample.location is not None or sample.time is not None
    return sample.has(modality)


def samples_from(images: Sequence[str | Path] | None = None, texts: Sequence[str | Sequence[str]] | None = None,
                 audio: Sequence[str | Path] | None = None,
                 locations: Sequence[tuple[float, float] | None] | None = None,
                 times: Sequence[datetime | None] | None = None) -> list[Sample]:
    """Samples zipped from per-sample inputs; every given list needs one entry per sample.

    ``texts[i]`` is one string or a list of strings (several descriptions of sample *i*); ``None``
    entries mean the sample lacks that modality.
    """
    given = {name: list(v) for name, v in (("images", images), ("texts", texts), ("audio", audio),
                                            ("locations", locations), ("times", times)) if v is not None}
    if not given:
        raise DataError(None, "nothing to predict: give images, texts, audio, locations or times")
    lengths = {name: len(v) for name, v in given.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(None, f"inputs must have one entry per sample; got lengths {lengths}")
    n = next(iter(lengths.values()))
    samples = []
    for i in range(n):
        text = given.get("texts", [None] * n)[i]
        samples.append(Sample(
            id=str(i), image=_path(given.get("images", [None] * n)[i]),
            texts=[] if text is None else [text] if isinstance(text, str) else list(text),
            audio=_path(given.get("audio", [None] * n)[i]),
            location=given.get("locations", [None] * n)[i], time=given.get("times", [None] * n)[i]))
    return samples


def _path(value: str | Path | None) -> Path | None:
    if value is None:
        return None
    path = Path(value)
    if not path.is_file():
        raise DataError(path, "file not found")
    return path
