"""Spectrogram pictures: a query clip above its nearest recordings, each as a log-mel spectrogram.

Each panel shows the first ``seconds`` of a recording (decoded like any input: mono, resampled) as a
log-mel spectrogram (:class:`~fgmm.audio.frontend.LogMel`, frequency axis in kHz on the mel scale),
titled with its rank, score and class. When the query's class is known, results are framed green (same
class) or red (another class), as in :func:`fgmm.retrieval.result_grid`.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from fgmm.audio.frontend import LogMel, mel_to_hz
from fgmm.audio.io import read_audio
from fgmm.io import write_bytes_atomic


@dataclass(frozen=True)
class Panel:
    """One spectrogram of the picture: a file, its title, and whether it matches the query (``None``: unknown)."""

    path: str | Path
    title: str
    match: bool | None = None


def _draw(ax, frontend: LogMel, panel: Panel, seconds: float) -> float:
    wave = read_audio(panel.path, frontend.sample_rate, max_seconds=seconds, allow_silent=True)
    image = frontend(torch.from_numpy(wave.samples)[None])[0, 0].numpy()
    ax.imshow(image, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1,
              extent=(0, wave.seconds, 0, frontend.n_mels))
    ticks = [0, frontend.n_mels // 4, frontend.n_mels // 2, 3 * frontend.n_mels // 4, frontend.n_mels - 1]
    edges = torch.linspace(float(2595.0 * torch.log10(torch.tensor(1 + frontend.f_min / 700))),
                           float(2595.0 * torch.log10(torch.tensor(1 + frontend.f_max / 700))), frontend.n_mels)
    ax.set_yticks(ticks, [f"{float(mel_to_hz(edges[t])) / 1000:.1f}" for t in ticks], fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(axis="x", labelsize=7)
    ax.set_title(panel.title, fontsize=8, loc="left")
    if panel.match is not None:
        for spine in ax.spines.values():
            spine.set_edgecolor("#2ca02c" if panel.match else "#d62728")
            spine.set_linewidth(3)
    return wave.seconds


def spectrogram_figure(query: Panel, results: Sequence[Panel], out: str | Path, *, seconds: float = 10.0,
                       frontend: LogMel | None = None) -> Path:
    """Save a PNG: the query clip's spectrogram on top, then one row per result.

    Args:
        query: the query clip.
        results: the nearest recordings, best first.
        out: PNG file to write (atomically).
        seconds: how much of each recording to show.
        frontend: the log-mel front end (default: 32 kHz, 128 mels, 50 Hz - 14 kHz).

    Raises:
        DataError: a file cannot be decoded (naming it).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    frontend = frontend or LogMel()
    panels = [query, *results]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.7 * len(panels)), squeeze=False)
    shown = [_draw(ax, frontend, panel, seconds) for ax, panel in zip(axes[:, 0], panels, strict=True)]
    for ax in axes[:, 0]:
        ax.set_xlim(0, max(shown))  # one time scale for all panels
    axes[-1, 0].set_xlabel("seconds", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return write_bytes_atomic(out, buffer.getvalue())
