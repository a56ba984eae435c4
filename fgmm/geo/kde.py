r"""The baseline prior: a per-class kernel density of the records' places on the sphere.

Each class's density is a mixture of von Mises-Fisher kernels centred on its records, floored by a
small uniform component so that no class is ruled out:

.. math::
    p(x \mid c) = (1-\varepsilon)\,\frac{1}{n_c}\sum_{i: y_i = c} \frac{\kappa}{2\pi(1-e^{-2\kappa})}
    e^{\kappa(\mu_i^\top u(x) - 1)} + \frac{\varepsilon}{4\pi},
    \qquad \kappa = (R_\oplus / h)^2,

with :math:`u(x)` the unit vector of :math:`x`, :math:`h` the bandwidth in km and :math:`R_\oplus =
6371` km (a vMF kernel is a Gaussian of standard deviation :math:`h` for :math:`h \ll R_\oplus`).
A class without records keeps only the floor (the "assume negative" reading of presence-only data,
as the learned prior's). ``forward`` returns :math:`\log(4\pi\,p(x \mid c))`,
the log-ratio to the uniform density (0 = no information), which is what Bayes' rule multiplies a
class-balanced image classifier by: :math:`p(c \mid I, x) \propto p(c \mid I)\,p(x \mid c)`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fgmm.geo.encoder import as_geo_tensor
from fgmm.geo.encoding import unit_vectors
from fgmm.geo.occurrences import Occurrences

EARTH_RADIUS_KM = 6371.0


class KernelDensityPrior(nn.Module):
    """Per-class vMF kernel density of the records' places (location only; dates are ignored).

    Args:
        occurrences: the records.
        bandwidth_km: kernel bandwidth :math:`h`.
        uniform_weight: :math:`\\varepsilon`, the weight of the uniform floor.

    Shapes:
        - input: ``[B, 4]`` geo rows (or ``B`` samples)
        - output: ``[B, C]`` :math:`\\log(4\\pi\\,p(x \\mid c))`; all-zero rows where the location is missing
    """

    def __init__(self, occurrences: Occurrences, bandwidth_km: float = 100.0, uniform_weight: float = 1e-3):
        super().__init__()
        if bandwidth_km <= 0 or not 0 < uniform_weight < 1:
            raise ValueError("bandwidth_km must be > 0 and uniform_weight in (0, 1)")
        self.class_names = list(occurrences.class_names)
        self.bandwidth_km, self.uniform_weight = bandwidth_km, uniform_weight
        self.kappa = (EARTH_RADIUS_KM / bandwidth_km) ** 2
        geo = occurrences.geo.double()
        self.register_buffer("centres", unit_vectors(geo[:, 0], geo[:, 1]))
        self.register_buffer("members", nn.functional.one_hot(occurrences.labels, len(self.class_names)).double())
        counts = self.members.sum(0)
        self.register_buffer("log_counts", torch.where(counts > 0, counts.log(), torch.full_like(counts, math.inf)))

    def forward(self, x: Any, chunk: int = 512) -> torch.Tensor:
        geo = as_geo_tensor(x).double()
        has_place = ~geo[:, :2].isnan().any(1)
        out = torch.zeros(geo.shape[0], len(self.class_names), dtype=torch.float64)
        rows = has_place.nonzero().flatten()
        kappa = self.kappa
        # log of 4*pi times the vMF normaliser kappa / (2 pi (1 - exp(-2 kappa)))
        log_norm = math.log(2 * kappa) - math.log(-math.expm1(-2 * kappa))
        for start in range(0, len(rows), chunk):
            index = rows[start:start + chunk]
            u = unit_vectors(geo[index, 0], geo[index, 1])
            scores = kappa * (u @ self.centres.T - 1.0)
            top = scores.max(1, keepdim=True).values
            sums = torch.exp(scores - top) @ self.members
            log_kde = top + sums.log() - self.log_counts + log_norm
            out[index] = torch.logaddexp(math.log1p(-self.uniform_weight) + log_kde,
                                         torch.tensor(math.log(self.uniform_weight), dtype=torch.float64))
        return out.float()
