"""Window features of recordings from a frozen audio encoder, through the feature cache.

:func:`encode_recordings` stores one cache row per recording in :meth:`fgmm.cache.FeatureCache.lookup`
(namespace = the encoder's fingerprint, which covers weights, sample rate, front end and window
selection; key = resolved path | mtime | size of the file, as for images, so an edited file is
encoded again). A row packs the features of the recording's selected windows (at most
``max_windows``, :class:`~fgmm.audio.windows.WindowConfig`) with their count, start times and energies::

    [n, total, energy_db x K, start_s x K, features K x dim]     (K = max_windows; unused slots zero)

An unreadable file is stored as a row of NaN with ``skip_bad=True`` (a negative entry: the next run
skips it without decoding it again, and lists it with its problem); with ``skip_bad=False`` it raises
its one-line :class:`~fgmm.errors.DataError` and nothing is stored for it.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fgmm.audio.encoders import AudioEncoder
from fgmm.audio.io import read_audio
from fgmm.audio.pooling import pool_recordings
from fgmm.cache import image_key
from fgmm.errors import ConfigError, DataError


def audio_key(path: str | Path) -> str:
    """Cache key of an audio file: resolved path, modification time (ns) and size (as for images)."""
    return image_key(path)


@dataclass
class EncodedRecordings:
    """Window features of recordings; nothing is dropped without being listed.

    Attributes:
        windows: per kept recording, ``[n_i, dim]`` features of its selected windows (time order).
        energy_db: per kept recording, ``[n_i]`` high-passed energy of each window.
        starts: per kept recording, ``[n_i]`` window start times in seconds.
        totals: per kept recording, the number of windows before selection.
        kept: indices into the input paths of the recordings above.
        skipped: ``(path, problem)`` of unreadable files (only with ``skip_bad=True``).
        encoded: recordings run through the encoder by this call (the others came from the cache).
        windows_encoded: windows run through the encoder by this call.
        seconds: wall time of this call.
    """

    windows: list[torch.Tensor]
    energy_db: list[np.ndarray]
    starts: list[np.ndarray]
    totals: list[int]
    kept: list[int]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    encoded: int = 0
    windows_encoded: int = 0
    seconds: float = 0.0

    def pooled(self, pooling: str = "mean") -> torch.Tensor:
        """``[len(kept), d']`` recording vectors (:mod:`fgmm.audio.pooling`)."""
        return pool_recordings(self.windows, pooling)


def _pack(windows: torch.Tensor, energy: np.ndarray, starts: np.ndarray, total: int, slots: int) -> torch.Tensor:
    n, dim = windows.shape
    row = torch.zeros(2 + 2 * slots + slots * dim)
    row[0], row[1] = n, total
    row[2:2 + n] = torch.as_tensor(energy, dtype=torch.float32)
    row[2 + slots:2 + slots + n] = torch.as_tensor(starts, dtype=torch.float32)
    row[2 + 2 * slots:2 + 2 * slots + n * dim] = windows.flatten()
    return row


def _unpack(row: torch.Tensor, slots: int, dim: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray, int]:
    n = int(row[0])
    windows = row[2 + 2 * slots:2 + 2 * slots + n * dim].view(n, dim).clone()
    return windows, row[2:2 + n].numpy().copy(), row[2 + slots:2 + slots + n].numpy().copy(), int(row[1])


def encode_recordings(encoder: AudioEncoder, paths: Sequence[str | Path], cache=None, *, skip_bad: bool = False,
                      progress: bool = True, batch_recordings: int = 8) -> EncodedRecordings:
    """Window features of every file of ``paths`` (through ``cache`` when given, encoding only new files).

    Args:
        encoder: a frozen audio encoder (``create_encoder("audio", ...)``).
        paths: audio files.
        cache: a :class:`fgmm.cache.FeatureCache`, or ``None`` to encode everything now.
        skip_bad: list unreadable files in ``skipped`` instead of raising (their other modalities stay usable).
        progress: tqdm bar while encoding.
        batch_recordings: recordings per committed cache shard.

    Raises:
        DataError: (``skip_bad=False``) the first unreadable file, in one line naming it.
        ConfigError: the encoder is trainable, or keeps all windows (``max_windows=0``) with a cache.
    """
    start = time.perf_counter()
    if cache is not None and not encoder.frozen:
        raise ConfigError(f"audio encoder '{encoder.name}' is not frozen: features of a trainable encoder change "
                          "while it trains and cannot be cached; create it with frozen=True")
    slots = encoder.window_config.max_windows
    if cache is not None and slots < 1:
        raise ConfigError("cached audio features need a window cap (WindowConfig.max_windows >= 1)")
    encoder.eval()
    paths = [Path(p) for p in paths]
    counts = {"recordings": 0, "windows": 0}

    def compute(indices: list[int]) -> torch.Tensor:
        rows = []
        for i in indices:
            try:
                windows = encoder.load_windows(paths[i])
            except DataError:
                if not skip_bad:
                    raise
                rows.append(None)
                continue
            features = encoder.encode_windows(windows.samples)
            counts["recordings"] += 1
            counts["windows"] += len(features)
            rows.append((features, windows.energy_db, windows.starts, windows.total))
        width = max((len(r[0]) for r in rows if r is not None), default=1) if slots < 1 else slots
        size = 2 + 2 * width + width * encoder.dim
        return torch.stack([torch.full((size,), float("nan")) if r is None else _pack(*r, width) for r in rows])

    keys: list[str | None] = []
    problems: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            keys.append(audio_key(path))
        except DataError as exc:
            if not skip_bad:
                raise
            keys.append(None)
            problems[i] = exc.problem
    readable = [i for i, key in enumerate(keys) if key is not None]
    if cache is not None:
        meta = {"encoder": encoder.name, "modality": "audio", "dim": encoder.dim,
                "preprocessing": encoder.preprocessing(), "keys": "resolved path|mtime_ns|size",
                "row": "n, total, energy_db x K, start_s x K, features K x dim"}
        rows = cache.lookup(encoder.fingerprint(), [keys[i] for i in readable], compute, batch_size=batch_recordings,
                            progress=progress, meta=meta) if readable else torch.empty(0, 0)
        width = slots
    else:
        rows = compute(readable) if readable else torch.empty(0, 0)
        width = (rows.shape[1] - 2) // (2 + encoder.dim) if readable else 0
    result = EncodedRecordings([], [], [], [], [])
    for i, row in zip(readable, rows, strict=True):
        if torch.isnan(row[0]):
            problems[i] = _problem_of(paths[i], encoder, skip_bad)
            continue
        windows, energy, starts, total = _unpack(row, width, encoder.dim)
        result.windows.append(windows)
        result.energy_db.append(energy)
        result.starts.append(starts)
        result.totals.append(total)
        result.kept.append(i)
    result.skipped = [(paths[i], problems[i]) for i in sorted(problems)]
    result.encoded, result.windows_encoded = counts["recordings"], counts["windows"]
    result.seconds = time.perf_counter() - start
    if result.skipped:
        path, problem = result.skipped[0]
        warnings.warn(f"skipped {len(result.skipped)} of {len(paths)} recordings that could not be read (first: "
                      f"{path}: {problem}); see EncodedRecordings.skipped for all of them", stacklevel=2)
    return result


def _problem_of(path: Path, encoder: AudioEncoder, skip_bad: bool) -> str:
    """The problem of a file cached as unreadable (decoded again to name it); raises unless ``skip_bad``."""
    try:
        read_audio(path, encoder.sample_rate, max_seconds=encoder.max_seconds)
    except DataError as exc:
        if not skip_bad:
            raise
        return exc.problem
    return "unreadable when it was cached"  # pragma: no cover - the key changes when the file does
