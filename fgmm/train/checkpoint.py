"""Atomic, ``weights_only``-safe training checkpoints.

A checkpoint is one ``torch.save`` file holding a plain dict: model, optimizer, scheduler and
GradScaler state dicts, the global RNG states (:func:`fgmm.train.seed.get_rng_state`), the position
in training (epoch, micro-batches consumed in that epoch, global optimizer step), early-stopping
state, history, the running training loss, elapsed seconds, the config as a dict and the fgmm
version. Every value is a tensor, list, dict,
number or string, so it loads with ``torch.load(weights_only=True)``.

Writes are atomic: the data goes to a temporary file in the destination folder, is flushed and
fsync'ed, then ``os.replace``'d over the target. A crash leaves either the old or the new
checkpoint, never a torn one; a leftover ``.<name>.*.tmp`` file is never read, and the next save
removes it (:func:`fgmm.io.remove_stale_temporaries`).
"""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

import fgmm
from fgmm.errors import DataError
from fgmm.io import atomic_write, fsync_dir, remove_stale_temporaries

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "fgmm_version", "model", "optimizer", "scheduler", "scaler", "rng", "epoch",
                 "batch_in_epoch", "global_step", "early_stopping", "history", "config", "train_loss",
                 "seconds")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write training ``state`` (see module docstring) to ``path``; returns the path.

    ``format`` and ``fgmm_version`` are added to the stored dict.
    """
    payload = {"format": FORMAT_VERSION, "fgmm_version": fgmm.__version__, **state}
    return atomic_write(Path(path), lambda handle: torch.save(payload, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises:
        DataError: naming the file when it is missing, truncated, corrupt, not an fgmm
            checkpoint, or written by an unknown (newer) checkpoint format.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(path, f"checkpoint is truncated or corrupt and cannot be loaded ({reason}); "
                              "delete it to start over") from None
    if not isinstance(state, dict) or "format" not in state:
        raise DataError(path, "not an fgmm training checkpoint (no 'format' entry)")
    if state["format"] > FORMAT_VERSION:
        raise DataError(path, f"checkpoint format {state['format']} is newer than this fgmm "
                              f"({fgmm.__version__}) understands ({FORMAT_VERSION}); upgrade fgmm")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise DataError(path, f"checkpoint lacks entries: {', '.join(missing)}")
    return state


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Make ``dst`` an atomic snapshot of file ``src`` (a hard link when possible, else a copy).

    A hard link costs no I/O and stays valid when ``src`` is later replaced, because
    :func:`save_checkpoint` replaces files rather than rewriting them in place.
    """
    src, dst = Path(src), Path(dst)
    remove_stale_temporaries(dst)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        with open(src, "rb") as source:
            return atomic_write(dst, lambda handle: shutil.copyfileobj(source, handle))
    os.replace(tmp, dst)
    fsync_dir(dst.parent)
    return dst
