"""Audio: bird recordings as a modality (loading, windows, log-mel, encoders, cached features, pictures).

* :mod:`fgmm.audio.io`: decode any libsndfile format (WAV/FLAC/OGG/MP3) to mono float32, resample,
  one-line errors for corrupt, empty, silent and absurd-rate files, :func:`scan_audio` for skip-bad listings;
* :mod:`fgmm.audio.windows`: fixed windows with hop, padding, energy-based window selection;
* :mod:`fgmm.audio.frontend`: the log-mel front end;
* :mod:`fgmm.audio.encoders`: ``create_encoder("audio", name)`` (log-mel EfficientNet-Lite, BirdNET);
* :mod:`fgmm.audio.features`: cached window features and per-recording pooling;
* :mod:`fgmm.audio.prior`: BirdNET's species output as a class prior of :class:`fgmm.FGModel`;
* :mod:`fgmm.audio.protocol`: dev folds for a recording set without held-out recordings, duplicates;
* :mod:`fgmm.audio.alignment`: comparing images and recordings through class posteriors;

Recognition and retrieval run on the one model: the ``"audio"`` modality of :class:`fgmm.FGModel`
(presets ``"audio"``, ``"audio-birdnet"``, ``"image-audio"``, ``"image-audio-birdnet"``).
* :mod:`fgmm.audio.plot`: spectrogram pictures of a query clip and its nearest recordings.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "AUDIO_SUFFIXES": "fgmm.audio.io", "Waveform": "fgmm.audio.io", "find_audio": "fgmm.audio.io",
    "read_audio": "fgmm.audio.io", "resample": "fgmm.audio.io", "scan_audio": "fgmm.audio.io",
    "WindowConfig": "fgmm.audio.windows", "Windows": "fgmm.audio.windows", "frame": "fgmm.audio.windows",
    "recording_windows": "fgmm.audio.windows", "select_windows": "fgmm.audio.windows",
    "window_count": "fgmm.audio.windows",
    "LogMel": "fgmm.audio.frontend",
    "AUDIO_MODELS": "fgmm.audio.encoders", "AudioEncoder": "fgmm.audio.encoders",
    "SpectrogramCNNEncoder": "fgmm.audio.encoders", "create_audio_encoder": "fgmm.audio.encoders",
    "EncodedRecordings": "fgmm.audio.features", "audio_key": "fgmm.audio.features",
    "encode_recordings": "fgmm.audio.features",
    "POOLINGS": "fgmm.audio.pooling", "pool_recordings": "fgmm.audio.pooling",
    "BirdNETSpeciesPrior": "fgmm.audio.prior",
    "duplicate_recordings": "fgmm.audio.protocol", "leave_one_out_folds": "fgmm.audio.protocol",
    "one_shot_folds": "fgmm.audio.protocol",
}
"""Public names, imported on first use (this package is imported while ``fgmm.encoders`` registers "audio",
before ``fgmm.cache`` is complete, so nothing heavy may load here)."""

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fgmm.audio' has no attribute '{name}'")
