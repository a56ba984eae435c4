r"""The log-mel front end: waveform windows to log-mel spectrogram "images".

.. math::
    S = \big|\operatorname{STFT}_{n_\text{fft},\,h}(x \cdot w_\text{hann})\big|^2, \qquad
    M = F S, \qquad
    L = 10 \log_{10} \max(M, 10^{-10}),

where :math:`F \in \mathbb{R}^{n_\text{mels} \times (n_\text{fft}/2+1)}` holds triangular filters equally
spaced on the HTK mel scale :math:`m(f) = 2595 \log_{10}(1 + f/700)` between ``f_min`` and ``f_max``,
each normalised to unit area (Slaney normalisation, so that wide high-frequency bands do not dominate).
Each spectrogram is then clipped to its own top ``top_db`` dB and scaled to :math:`[0, 1]`:

.. math::
    \hat{L} = \frac{\max(L, \max L - \text{top\_db}) - (\max L - \text{top\_db})}{\text{top\_db}},

which removes the recording level (gain) and makes the image independent of the microphone, as in the
usual BirdCLEF recipe (Kahl et al., *BirdNET*, Ecological Informatics 2021; BirdCLEF 2021-2023 top
solutions: 32 kHz, 128 mels, 50 Hz - 14 kHz).
"""

from __future__ import annotations

import torch
from torch import nn


def hz_to_mel(f: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(f, dtype=torch.float64) / 700.0)


def mel_to_hz(m: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """``[n_mels, n_fft // 2 + 1]`` triangular, area-normalised mel filters (see module docstring)."""
    if not 0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"need 0 <= f_min < f_max <= sample_rate / 2, got {f_min}, {f_max}, {sample_rate}")
    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = mel_to_hz(torch.linspace(float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2,
                                     dtype=torch.float64))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    filters = torch.clamp(torch.minimum(rising, falling), min=0.0)
    filters *= 2.0 / (upper - lower)  # Slaney: unit area per filter
    return filters.float()


class LogMel(nn.Module):
    """Waveform windows to normalised log-mel spectrograms.

    Args:
        sample_rate: rate of the input windows (Hz).
        n_fft: STFT size (Hann window of the same length).
        hop_length: STFT hop in samples.
        n_mels: mel bands (the image height).
        f_min, f_max: band edges in Hz (``f_max=None``: Nyquist).
        top_db: dynamic range kept below each spectrogram's maximum.

    Shapes:
        input ``[B, T]`` float waveforms; output ``[B, 1, n_mels, 1 + T // hop_length]`` in ``[0, 1]``.
    """

    def __init__(self, sample_rate: int = 32_000, n_fft: int = 1024, hop_length: int = 320, n_mels: int = 128,
                 f_min: float = 50.0, f_max: float | None = 14_000.0, top_db: float = 80.0):
        super().__init__()
        f_max = min(f_max or sample_rate / 2, sample_rate / 2)
        self.sample_rate, self.n_fft, self.hop_length, self.n_mels = sample_rate, n_fft, hop_length, n_mels
        self.f_min, self.f_max, self.top_db = float(f_min), float(f_max), float(top_db)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.register_buffer("filters", mel_filterbank(sample_rate, n_fft, n_mels, f_min, f_max), persistent=False)

    def config(self) -> dict:
        """Everything that changes the output (recorded in encoder fingerprints)."""
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft, "hop_length": self.hop_length,
                "n_mels": self.n_mels, "f_min": self.f_min, "f_max": self.f_max, "top_db": self.top_db}

    def frames(self, n_samples: int) -> int:
        """Time frames of the spectrogram of ``n_samples`` samples."""
        return 1 + n_samples // self.hop_length

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if waves.ndim != 2:
            raise ValueError(f"LogMel expects [B, T] waveforms, got shape {tuple(waves.shape)}")
        spec = torch.stft(waves.float(), self.n_fft, self.hop_length, window=self.window, center=True,
                          pad_mode="reflect" if waves.shape[1] > self.n_fft // 2 else "constant",
                          return_complex=True).abs().pow(2)
        mel = torch.einsum("mf,bft->bmt", self.filters, spec)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        floor = db.amax(dim=(1, 2), keepdim=True) - self.top_db
        return ((torch.maximum(db, floor) - floor) / self.top_db).unsqueeze(1)

