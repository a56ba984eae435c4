"""Seed control and random-number-generator state for exact resume.

Three pieces:

* :func:`seed_everything` seeds Python, NumPy and torch (CPU and every CUDA device) from one integer.
* :func:`epoch_generator` gives the ``torch.Generator`` that decides the data order of one epoch. It
  depends only on ``(seed, epoch)``, so a run resumed at epoch ``e`` visits the data exactly as the
  uninterrupted run did, and every DDP rank draws the same permutation before taking its shard.
* :func:`get_rng_state` / :func:`set_rng_state` capture and restore all global generators in types
  that ``torch.load(weights_only=True)`` accepts (tensors, lists, dicts, numbers, strings).
"""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch

_EPOCH_STRIDE = 1_000_003  # a prime, so (seed, epoch) pairs map to distinct generator seeds


def seed_everything(seed: int) -> None:
    """Seed ``random``, ``numpy.random`` and torch (CPU and all CUDA devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def use_deterministic_algorithms() -> None:
    """Make torch use deterministic kernels (needed for bit-exact resume on GPU; slower).

    CUDA's cuBLAS additionally needs ``CUBLAS_WORKSPACE_CONFIG`` before its first use; it is set
    here when absent.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def derive_seed(seed: int, epoch: int) -> int:
    """The generator seed of ``epoch`` in a run seeded with ``seed`` (a pure function)."""
    return (seed * _EPOCH_STRIDE + epoch) % 2**63


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``(seed, epoch)``: the data order of one epoch."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch))


def get_rng_state() -> dict[str, Any]:
    """All global RNG states (python, numpy, torch, current CUDA device) in ``weights_only`` types."""
    version, internal, gauss_next = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        # the current device only: under torchrun every rank restores its own device's stream
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_initialized() else None,
    }
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`get_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npst = state["numpy"]
    np.random.set_state((npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"],
                         npst["has_gauss"], npst["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
