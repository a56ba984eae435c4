"""Gated graph propagation (GGNN, Li et al. 2016), the propagation KERL uses over its knowledge graph."""

from __future__ import annotations

from torch import Tensor, nn
from torch_geometric.nn import GatedGraphConv

from fgmm.gnn.layers import GNN_LAYERS, PropagationLayer, normalized_adjacency


@GNN_LAYERS.register("ggnn")
class GatedPropagation(PropagationLayer):
    r"""Gated graph propagation as in KERL (Chen et al., 2018), built on PyG's :class:`GatedGraphConv`.

    .. math::
        \mathbf{m}_i^{(t)} &= \sum_{j \in \mathcal{N}(i)} e_{ji}\, \mathbf{\Theta}^{(t)} \mathbf{h}_j^{(t-1)}

        \mathbf{h}_i^{(t)} &= \mathrm{GRU}\big(\mathbf{m}_i^{(t)}, \mathbf{h}_i^{(t-1)}\big),
        \qquad t = 1, \dots, T

    with :math:`\mathbf{h}^{(0)} = \mathbf{x}` and :math:`e_{ji} = a_{ji} / \sqrt{d_j d_i}` the edge
    strength :math:`a_{ji}` normalised by the weighted degrees :math:`d_i = \sum_j a_{ji}`. The GRU
    gates let every node keep its own state and take in only as much of its neighbours as helps.

    Args:
        dim: width of the node states.
        num_layers: number of propagation steps :math:`T` (weights :math:`\Theta^{(t)}` per step,
            one GRU shared by all steps).
        dropout: dropout on the output states.
    """

    def __init__(self, dim: int, num_layers: int = 3, dropout: float = 0.0):
        super().__init__()
        self.conv = GatedGraphConv(dim, num_layers=num_layers, aggr="add")
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def prepare(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor | None]:
        return normalized_adjacency(edge_index, edge_weight, num_nodes, self_loops=False), None

    def forward(self, x: Tensor, adjacency: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        return self.dropout(self.conv(x, adjacency))
