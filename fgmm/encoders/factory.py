"""The encoder factory: one registry entry per modality.

Each modality registers one encoder class (or factory function) whose ``name`` argument defaults to
that modality's offline default model, so ``create_encoder("vision")`` works on a machine without
network. Any model name the class understands (for vision: any timm name) can be passed instead.
"""

from __future__ import annotations

from typing import Any

from fgmm.encoders.base import Encoder
from fgmm.registry import Registry

ENCODERS: Registry[Encoder] = Registry("encoder modality")


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
