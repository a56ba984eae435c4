"""Residual graph convolution (GCN, Kipf & Welling 2017)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GCNConv

from fgmm.gnn.layers import GNN_LAYERS, PropagationLayer, normalized_adjacency


@GNN_LAYERS.register("gcn")
class GCNPropagation(PropagationLayer):
    r"""A stack of residual graph convolutions on PyG's :class:`GCNConv`.

    .. math::
        \mathbf{H}^{(l+1)} = \mathbf{H}^{(l)} + \mathrm{Dropout}\Big(\sigma\big(
        \hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}} \hat{\mathbf{D}}^{-1/2} \mathbf{H}^{(l)}
        \mathbf{\Theta}^{(l)}\big)\Big)

    where :math:`\hat{\mathbf{A}} = \mathbf{A} + \mathbf{I}` holds the edge strengths plus self
    loops, :math:`\hat{\mathbf{D}}` its degree matrix and :math:`\sigma` the GELU. The residual keeps a
    node's own state, so deep stacks do not smooth all classes into one.

    Args:
        dim: width of the node states.
        num_layers: number of convolutions.
        dropout: dropout on each convolution's output.
    """

    def __init__(self, dim: int, num_layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.convs = nn.ModuleList(GCNConv(dim, dim, normalize=False) for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def prepare(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor | None]:
        return normalized_adjacency(edge_index, edge_weight, num_nodes, self_loops=True), None

    def forward(self, x: Tensor, adjacency: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        for conv in self.convs:
            x = x + self.dropout(F.gelu(conv(x, adjacency)))
        return x
