"""The interface every fgmm encoder shares.

An encoder maps a batch of one modality to vectors: ``encode(batch) -> Tensor[B, dim]``. It knows
its ``name``, output ``dim``, whether it is ``frozen`` and a ``fingerprint`` that changes whenever
its outputs could change (architecture, weights, preprocessing); the feature cache keys on it.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn


class Encoder(nn.Module, ABC):
    """Base class of vision, text, audio and geo/time encoders.

    Subclasses set ``modality``, ``name`` and ``dim`` and implement :meth:`encode`.
    """

    modality: str = ""

    def __init__(self, name: str, dim: int, frozen: bool = True):
        super().__init__()
        self.name = name
        self.dim = dim
        self.frozen = frozen

    @abstractmethod
    def encode(self, batch: Any) -> torch.Tensor:
        """Encode a batch of this modality into ``[B, dim]`` float vectors."""

    def preprocessing(self) -> dict[str, Any]:
        """Everything outside the weights that changes outputs (input size, normalisation, ...)."""
        return {}

    def fingerprint(self) -> str:
        """A short stable hash of (modality, name, weights, preprocessing) used as a cache key."""
        digest = hashlib.sha256()
        digest.update(f"{self.modality}|{self.name}|{sorted(self.preprocessing().items())}".encode())
        for key, tensor in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes()[:4096])
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(f"{float(tensor.double().sum()):.6e}".encode())
        return digest.hexdigest()[:16]

    def freeze(self) -> Encoder:
        """Stop gradients and switch to eval mode (batch-norm statistics fixed)."""
        self.frozen = True
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()
        return self

    def unfreeze(self) -> Encoder:
        self.frozen = False
        for p in self.parameters():
            p.requires_grad_(True)
        return self

    def train(self, mode: bool = True) -> Encoder:
        # a frozen encoder stays in eval mode so batch-norm/dropout do not change its features
        return super().train(mode and not self.frozen)
