r"""Class priors read from one modality: :math:`\log p(c \mid x_m)`, added to the model's log-probabilities.

A prior is an ``nn.Module`` created with ``(num_classes=..., **options)`` whose ``forward(features)``
maps ``[B, d_m]`` features of its modality to ``[B, C]`` log-probabilities. The model combines it
with the other modalities by the product of probabilities,

.. math::
    \log p(c \mid x) \propto \log p(c \mid x_{\setminus m}) + \beta_m \log p_m(c \mid x_m),

for the samples that carry modality *m* (the others keep their prediction). Priors are trained on
their own data (e.g. a presence-only location/date prior on occurrence records) and kept fixed
while the rest of the model trains. Implementations register in :data:`PRIORS`.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fgmm.registry import Registry

PRIORS: Registry[nn.Module] = Registry("class prior")


def create_prior(name: str, num_classes: int, **options: Any) -> nn.Module:
    """The prior registered as ``name`` in :data:`PRIORS`."""
    return PRIORS.create(name, num_classes=num_classes, **options)
