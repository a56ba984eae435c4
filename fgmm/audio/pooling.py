r"""Pooling of per-window features into one vector per recording.

For the windows :math:`h_1..h_n \in \mathbb{R}^d` of one recording (after energy-based selection):

* ``mean``: :math:`\frac{1}{n}\sum_k h_k` (the usual recording embedding, e.g. BirdNET's per-file mean);
* ``max``: element-wise :math:`\max_k h_k` (a song present in one window only still shows);
* ``meanmax``: :math:`[\text{mean} \,\|\, \text{max}] \in \mathbb{R}^{2d}`;
* ``l2mean``: :math:`\frac{1}{n}\sum_k h_k / \lVert h_k \rVert` (every window counts the same, whatever its scale).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from fgmm.registry import Registry

POOLINGS: Registry[torch.Tensor] = Registry("recording pooling")
"""``name -> fn([n, d] window features) -> [d']`` recording vector."""


@POOLINGS.register("mean")
def mean_pool(windows: torch.Tensor) -> torch.Tensor:
    return windows.mean(dim=0)


@POOLINGS.register("max")
def max_pool(windows: torch.Tensor) -> torch.Tensor:
    return windows.amax(dim=0)


@POOLINGS.register("meanmax")
def mean_max_pool(windows: torch.Tensor) -> torch.Tensor:
    return torch.cat([windows.mean(dim=0), windows.amax(dim=0)])


@POOLINGS.register("l2mean")
def l2_mean_pool(windows: torch.Tensor) -> torch.Tensor:
    return F.normalize(windows, dim=1).mean(dim=0)


def pool_recordings(windows: Sequence[torch.Tensor], pooling: str | Callable[[torch.Tensor], torch.Tensor] = "mean"
                    ) -> torch.Tensor:
    """``[N, d']`` recording vectors from each recording's ``[n_i, d]`` window features."""
    fn = POOLINGS.get(pooling) if isinstance(pooling, str) else pooling
    if not len(windows):
        raise ValueError("no recordings to pool")
    return torch.stack([fn(w.float()) for w in windows])
