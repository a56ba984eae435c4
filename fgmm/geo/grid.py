r"""A learned multi-resolution grid encoding of places (Instant-NGP's hash grid on latitude/longitude).

Müller, Evans, Schied, Keller, *Instant Neural Graphics Primitives with a Multiresolution Hash
Encoding*, SIGGRAPH 2022. Level :math:`l` cuts the equirectangular plane into cells of
:math:`r_l` degrees, :math:`r_l` spaced geometrically from ``coarsest_deg`` to ``finest_deg``; each cell
corner owns a learned :math:`F`-vector in a table of ``table_size`` rows (indexed directly while the
level has no more corners than that, hashed with :math:`(i \cdot 1) \oplus (j \cdot 2654435761) \bmod T`
beyond). A place gets the bilinear interpolation of its cell's four corners at every level:

.. math::
    g(x) = \big\Vert_{l} \sum_{k \in \text{corners}} w_k(x)\, \Theta_l[h_l(k)] \in \mathbb{R}^{L F}.

Longitude wraps at the date line. Fixed encodings such as spherical harmonics resolve
:math:`\sim 180°/L`; presence-only records cluster at recording sites and birding hot spots a few
kilometres apart, which the fine levels can represent while the coarse levels share statistics.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_PRIME = 2654435761


class HashGrid(nn.Module):
    """Multi-resolution hashed grid of learned features over (lat, lon).

    Args:
        levels: number of resolutions :math:`L`.
        coarsest_deg, finest_deg: cell sizes of the first and last level, in degrees.
        features: :math:`F`, features per level.
        table_size: rows per level's table :math:`T`.

    Shapes:
        - input: ``lat [B]``, ``lon [B]`` in degrees
        - output: ``[B, levels * features]``
    """

    def __init__(self, levels: int = 8, coarsest_deg: float = 8.0, finest_deg: float = 0.05, features: int = 4,
                 table_size: int = 2 ** 16):
        super().__init__()
        if levels < 1 or not 0 < finest_deg <= coarsest_deg:
            raise ValueError("HashGrid needs levels >= 1 and 0 < finest_deg <= coarsest_deg")
        ratio = (finest_deg / coarsest_deg) ** (1 / max(levels - 1, 1))
        self.cells_deg = [coarsest_deg * ratio ** level for level in range(levels)]
        self.table_size, self.features = table_size, features
        # rows per level: every corner while they fit in table_size, table_size hashed rows beyond
        self.shapes = [(math.ceil(360 / cell), math.ceil(180 / cell) + 1) for cell in self.cells_deg]
        sizes = [min(columns * rows, table_size) for columns, rows in self.shapes]
        self.offsets = [sum(sizes[:level]) for level in range(levels)]
        # one sparse embedding over all levels: a step updates only the rows it touched (torch.optim.SparseAdam)
        self.tables = nn.Embedding(sum(sizes), features, sparse=True)
        nn.init.uniform_(self.tables.weight, -1e-4, 1e-4)

    @property
    def dim(self) -> int:
        return len(self.cells_deg) * self.features

    def _index(self, i: torch.Tensor, j: torch.Tensor, columns: int, rows: int) -> torch.Tensor:
        if columns * rows <= self.table_size:
            return j * columns + i
        return ((i * 1) ^ (j * _PRIME)) % self.table_size

    def forward(self, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        out = []
        for level, cell in enumerate(self.cells_deg):
            columns, rows = self.shapes[level]
            x, y = (lon.double() + 180.0) / cell, (lat.double() + 90.0) / cell
            x0, y0 = torch.floor(x), torch.floor(y)
            fx, fy = (x - x0).float()[:, None], (y - y0).float()[:, None]
            i0, j0 = x0.long() % columns, y0.long().clamp(0, rows - 1)
            i1, j1 = (i0 + 1) % columns, (j0 + 1).clamp(max=rows - 1)
            offset = self.offsets[level]
            corners = ((i0, j0), (i1, j0), (i0, j1), (i1, j1))
            index = torch.stack([self._index(i, j, columns, rows) for i, j in corners], dim=1)
            weights = torch.cat(((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy), dim=1)
            out.append((self.tables(index + offset) * weights[:, :, None]).sum(1))
        return torch.cat(out, dim=1)
