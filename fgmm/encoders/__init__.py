"""Encoders map one modality to vectors; ``create_encoder(modality, name)`` builds them.

Importing this package registers every modality's encoder in :data:`ENCODERS`.
"""

import fgmm.audio.encoders  # noqa: F401  (registers the "audio" modality)
import fgmm.encoders.ngrams  # noqa: F401  (registers the "word-ngrams" text backend)
import fgmm.geo.encoder  # noqa: F401  (registers the "geo" modality)
from fgmm.encoders.base import Encoder
from fgmm.encoders.factory import ENCODERS, OfflineModel, create_encoder, list_pretrained, offline_models
from fgmm.encoders.text import TextEncoder  # noqa: F401  (registers the "text" modality)
from fgmm.encoders.vision import TimmVisionEncoder

__all__ = ["ENCODERS", "Encoder", "OfflineModel", "TimmVisionEncoder", "create_encoder", "list_pretrained",
           "offline_models"]
