r"""Robust audio loading: any file libsndfile reads (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1),
to a mono float32 waveform at the rate an encoder wants.

* **mono**: the mean of the channels;
* **resampling**: polyphase filtering (:func:`scipy.signal.resample_poly`, a Kaiser-windowed FIR
  anti-aliasing filter) by the rational factor :math:`L/M = f_\text{out}/f_\text{in}`; a factor whose
  reduced fraction has a term above 1,000 (an odd rate such as 44,101 Hz) is approximated by the
  nearest fraction with terms up to 1,000 (pitch error below 0.1%, usually far below);
* **length cap**: at most ``max_seconds`` are decoded (hour-long files do not fill memory).

No torchaudio, no ffmpeg, no soxr. Every way a file can be unusable is a one-line
:class:`~fgmm.errors.DataError` naming the file: missing, not decodable (corrupt, truncated, not audio),
empty, an absurd sample rate, non-finite samples, or (``allow_silent=False``) digital silence.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from fgmm.errors import DataError

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au")
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
SILENCE_PEAK = 1e-5
"""Peak amplitude (full scale = 1) below which a recording counts as digital silence (-100 dBFS)."""
MAX_FRACTION_TERM = 1_000


@dataclass(frozen=True)
class Waveform:
    """A decoded mono recording.

    Attributes:
        samples: ``[T]`` float32 samples in ``[-1, 1]`` (full scale), at ``sample_rate``.
        sample_rate: samples per second of ``samples``.
        source_rate: the file's own sample rate.
        path: the file it came from (``None`` for synthetic audio).
        truncated: ``True`` when the file is longer than the ``max_seconds`` that were decoded.
    """

    samples: np.ndarray
    sample_rate: int
    source_rate: int
    path: Path | None = None
    truncated: bool = False

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D signal from ``source_rate`` to ``target_rate`` Hz (polyphase FIR, float32 out)."""
    if source_rate == target_rate or len(samples) == 0:
        return samples.astype(np.float32, copy=False)
    ratio = Fraction(int(target_rate), int(source_rate))
    if max(ratio.numerator, ratio.denominator) > MAX_FRACTION_TERM:
        ratio = ratio.limit_denominator(MAX_FRACTION_TERM)
    out = resample_poly(samples.astype(np.float64), ratio.numerator, ratio.denominator)
    return out.astype(np.float32)


def _problem(exc: Exception) -> str:
    """libsndfile's reason without the repeated path; its odd "not a regular file" for undecodable data reworded."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    text = re.sub(r"^Error opening .*?: ", "", text).strip()
    if "possibly a pipe" in text:
        return "not a recognised audio format, or corrupt data"
    return text.rstrip(".")


def read_audio(path: str | Path, sample_rate: int | None = None, *, max_seconds: float | None = 600.0,
               allow_silent: bool = False) -> Waveform:
    """Decode ``path`` to a mono float32 :class:`Waveform`, resampled to ``sample_rate`` (default: the file's).

    Args:
        path: an audio file (:data:`AUDIO_SUFFIXES`, or anything libsndfile opens).
        sample_rate: wanted rate in Hz; ``None`` keeps the file's rate.
        max_seconds: decode at most this many seconds from the start (``None``: the whole file).
        allow_silent: return digitally silent files instead of raising.

    Raises:
        DataError: naming ``path``: ``file not found``, ``not a file``, ``cannot decode audio: ...``
            (corrupt, truncated or not audio), ``empty audio file``, ``absurd sample rate ...``,
            ``non-finite samples``, ``silent recording ...``.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found")
    if not path.is_file():
        raise DataError(path, "not a file")
    try:
        with sf.SoundFile(str(path)) as handle:
            rate = int(handle.samplerate)
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise DataError(path, f"absurd sample rate {rate} Hz (expected {MIN_SAMPLE_RATE:,} to "
                                      f"{MAX_SAMPLE_RATE:,} Hz): the header is corrupt or this is not audio")
            limit = -1 if max_seconds is None else int(math.ceil(max_seconds * rate))
            data = handle.read(frames=limit, dtype="float32", always_2d=True)
            truncated = max_seconds is not None and len(data) == limit and handle.tell() < handle.frames
    except DataError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, OSError, EOFError) as exc:
        raise DataError(path, f"cannot decode audio: {_problem(exc)}") from None
    if data.size == 0:
        raise DataError(path, "empty audio file (0 samples)")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise DataError(path, "non-finite samples (NaN or infinity): the file is corrupt")
    peak = float(np.abs(mono).max())
    if peak < SILENCE_PEAK and not allow_silent:
        raise DataError(path, f"silent recording (peak amplitude {peak:.1e}, below {SILENCE_PEAK:.0e} full scale)")
    target = rate if sample_rate is None else int(sample_rate)
    return Waveform(resample(mono, rate, target), target, rate, path, truncated)


def find_audio(folder: str | Path) -> list[Path]:
    """Audio files (:data:`AUDIO_SUFFIXES`) under ``folder``, recursive and sorted.

    Raises:
        DataError: ``folder`` is not a folder or holds no audio file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise DataError(folder, f"no audio files ({', '.join(AUDIO_SUFFIXES)}) found")
    return paths


@dataclass(frozen=True)
class AudioScan:
    """Result of decoding one file in :func:`scan_audio`: ``problem`` is ``None`` when it is usable."""

    path: Path
    problem: str | None
    seconds: float = 0.0
    sample_rate: int = 0


def _scan(path: Path, max_seconds: float | None) -> AudioScan:
    try:
        wave = read_audio(path, max_seconds=max_seconds)
    except DataError as exc:
        return AudioScan(path, exc.problem)
    return AudioScan(path, None, wave.seconds, wave.source_rate)


def scan_audio(paths: Iterable[str | Path], *, max_seconds: float | None = 600.0,
               workers: int | None = None) -> list[AudioScan]:
    """Decode every file (in order, on a small thread pool) and report which are unusable and why.

    The skip-bad listing of ``--skip-bad``: ``[s for s in scan_audio(paths) if s.problem]``.
    """
    paths = [Path(p) for p in paths]
    with ThreadPoolExecutor(max_workers=workers or 2) as pool:
        return list(pool.map(lambda p: _scan(p, max_seconds), paths))

