r"""Fixed-length windows of a recording, and energy-based selection of the windows worth encoding.

A recording of :math:`T` samples is cut into windows of :math:`W` samples with hop :math:`H`:

.. math::
    n = 1 + \left\lceil \frac{\max(0,\, T - W)}{H} \right\rceil, \qquad
    \text{window}_k = x[kH : kH + W],\quad k = 0..n-1,

the last window (or the only one, for a clip shorter than :math:`W`) padded to :math:`W` by repeating
the recording (``pad="wrap"``, keeps a short song a song) or with zeros (``pad="constant"``).

Selection keeps the windows in which a bird most likely sings: each window's energy is measured after a
4th-order Butterworth high-pass at ``highpass_hz`` (wind, traffic and handling noise sit below ~1 kHz,
almost all song above),

.. math::
    e_k = 10 \log_{10}\Big(\tfrac{1}{W} \textstyle\sum_t \tilde{x}_k[t]^2 + 10^{-12}\Big)\ \text{dB},

windows quieter than :math:`\max_k e_k - \text{floor\_db}` are dropped, and of the rest at most
``max_windows`` of the loudest are kept, in time order.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from fgmm.audio.io import Waveform
from fgmm.errors import ConfigError

PAD_MODES = ("wrap", "constant")


@dataclass(frozen=True)
class WindowConfig:
    """How a recording becomes windows.

    Attributes:
        seconds: window length (BirdNET: 3 s).
        hop_seconds: hop between window starts; ``None`` = half a window.
        max_windows: keep at most this many windows per recording (the loudest); ``0`` = all.
        floor_db: drop windows more than this many dB below the loudest; ``None`` = keep all.
        highpass_hz: high-pass cut-off of the energy measure (the windows themselves are not filtered).
        pad: ``"wrap"`` (repeat the recording) or ``"constant"`` (zeros) for the last/only window.
    """

    seconds: float = 3.0
    hop_seconds: float | None = None
    max_windows: int = 16
    floor_db: float | None = 20.0
    highpass_hz: float = 1000.0
    pad: str = "wrap"

    def __post_init__(self) -> None:
        if self.seconds <= 0:
            raise ConfigError(f"window seconds must be positive, got {self.seconds}")
        if self.hop_seconds is not None and self.hop_seconds <= 0:
            raise ConfigError(f"window hop_seconds must be positive, got {self.hop_seconds}")
        if self.max_windows < 0:
            raise ConfigError(f"max_windows must be >= 0, got {self.max_windows}")
        if self.pad not in PAD_MODES:
            raise ConfigError(f"window pad must be one of {PAD_MODES}, got '{self.pad}'")

    @property
    def hop(self) -> float:
        return self.seconds / 2 if self.hop_seconds is None else self.hop_seconds

    def as_dict(self) -> dict:
        return asdict(self)


def window_config(value: WindowConfig | dict | None = None) -> WindowConfig:
    """A :class:`WindowConfig` from itself, its fields as a dict (a model config's ``encoder_options``) or ``None``
    (the defaults)."""
    if value is None or isinstance(value, WindowConfig):
        return value or WindowConfig()
    fields = sorted(WindowConfig.__dataclass_fields__)
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"unknown audio window options {unknown}; choose from {fields}")
    return WindowConfig(**value)


@dataclass(frozen=True)
class Windows:
    """The selected windows of one recording.

    Attributes:
        samples: ``[n, W]`` float32 windows.
        starts: ``[n]`` start of each window in seconds.
        energy_db: ``[n]`` high-passed energy of each window (dB full scale).
        total: how many windows the recording had before selection.
        sample_rate: rate of ``samples``.
    """

    samples: np.ndarray
    starts: np.ndarray
    energy_db: np.ndarray
    total: int
    sample_rate: int


def window_count(n_samples: int, window: int, hop: int) -> int:
    """Number of windows of ``window`` samples with hop ``hop`` covering ``n_samples`` samples (at least 1)."""
    if window <= 0 or hop <= 0:
        raise ConfigError(f"window ({window}) and hop ({hop}) must be positive sample counts")
    return 1 + math.ceil(max(0, n_samples - window) / hop)


def frame(samples: np.ndarray, window: int, hop: int, pad: str = "wrap") -> np.ndarray:
    """``[n, window]`` windows of a 1-D signal (see the module docstring for ``n`` and padding)."""
    if pad not in PAD_MODES:
        raise ConfigError(f"pad must be one of {PAD_MODES}, got '{pad}'")
    if len(samples) == 0:
        raise ValueError("cannot frame an empty signal")
    n = window_count(len(samples), window, hop)
    out = np.empty((n, window), dtype=np.float32)
    for k in range(n):
        part = samples[k * hop: k * hop + window]
        out[k] = part if len(part) == window else np.pad(part, (0, window - len(part)), mode=pad)
    return out


def window_energy_db(windows: np.ndarray, sample_rate: int, highpass_hz: float = 1000.0) -> np.ndarray:
    """``[n]`` energy (dB full scale) of each window after a high-pass at ``highpass_hz`` (skipped when
    ``highpass_hz`` is 0 or not below 0.45 of the sample rate)."""
    x = windows.astype(np.float64)
    if 0 < highpass_hz < 0.45 * sample_rate:
        x = sosfilt(butter(4, highpass_hz, btype="highpass", fs=sample_rate, output="sos"), x, axis=1)
    return 10.0 * np.log10(np.mean(x**2, axis=1) + 1e-12)


def select_windows(energy_db: np.ndarray, max_windows: int = 16, floor_db: float | None = 20.0) -> np.ndarray:
    """Indices (ascending) of the windows kept: within ``floor_db`` of the loudest, at most ``max_windows``
    of the loudest (ties: the earlier window). Always at least one."""
    order = np.argsort(-energy_db, kind="stable")
    if floor_db is not None:
        order = order[energy_db[order] >= energy_db[order[0]] - floor_db]
    if max_windows:
        order = order[:max_windows]
    return np.sort(order)


def recording_windows(wave: Waveform, config: WindowConfig = WindowConfig()) -> Windows:
    """Cut ``wave`` into windows and keep the selected ones (:class:`WindowConfig`)."""
    rate = wave.sample_rate
    size, hop = max(1, round(config.seconds * rate)), max(1, round(config.hop * rate))
    all_windows = frame(wave.samples, size, hop, config.pad)
    energy = window_energy_db(all_windows, rate, config.highpass_hz)
    keep = select_windows(energy, config.max_windows, config.floor_db)
    return Windows(all_windows[keep], keep * hop / rate, energy[keep], len(all_windows), rate)
