"""Residual graph attention (GAT, Veličković et al. 2018) with edge strengths as edge features."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GATConv

from fgmm.errors import ConfigError
from fgmm.gnn.layers import GNN_LAYERS, PropagationLayer


@GNN_LAYERS.register("gat")
class GATPropagation(PropagationLayer):
    r"""A stack of residual multi-head graph attention layers on PyG's :class:`GATConv`.

    .. math::
        \alpha_{ij}^{k} &= \operatorname{softmax}_{j \in \mathcal{N}(i) \cup \{i\}}\Big(
        \mathrm{LeakyReLU}\big(\mathbf{a}^{k\top} [\mathbf{\Theta}^k \mathbf{h}_i \,\Vert\,
        \mathbf{\Theta}^k \mathbf{h}_j \,\Vert\, \mathbf{\Theta}_e^k e_{ij}]\big)\Big)

        \mathbf{h}_i' &= \mathbf{h}_i + \sigma\Big(\big\Vert_{k=1}^{K}
        \sum_{j \in \mathcal{N}(i) \cup \{i\}} \alpha_{ij}^{k} \mathbf{\Theta}^k \mathbf{h}_j\Big)

    Attention decides how much each neighbour counts; the edge strength :math:`e_{ij}` enters the
    attention score as a one-dimensional edge feature, :math:`\sigma` is the GELU. Attention is
    computed per edge, so this layer costs more than GCN/GGNN on dense graphs.

    Args:
        dim: width of the node states (divisible by ``heads``).
        num_layers: number of attention layers.
        heads: attention heads :math:`K`, each of width ``dim // heads``.
        dropout: dropout on attention coefficients and on each layer's output.
    """

    def __init__(self, dim: int, num_layers: int = 2, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        if dim % heads:
            raise ConfigError(f"gat: dim {dim} is not divisible by heads {heads}")
        self.convs = nn.ModuleList(
            GATConv(dim, dim // heads, heads=heads, edge_dim=1, dropout=dropout) for _ in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def prepare(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor | None]:
        return edge_index, edge_weight.view(-1, 1)

    def forward(self, x: Tensor, adjacency: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        for conv in self.convs:
            x = x + self.dropout(F.gelu(conv(x, adjacency, edge_weight)))
        return x
