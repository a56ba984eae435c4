"""The registry of GNN propagation layers and the interface they share.

Every layer maps node states to node states of the same width over a weighted, undirected graph.
A graph is prepared once, in the form the layer's update rule needs (normalised sparse adjacency,
or edge list plus strengths), and reused by every forward pass::

    layer = create_gnn_layer("ggnn", dim=128, num_layers=3)
    graph = layer.prepare(edge_index, edge_weight, num_nodes)
    h = layer(x, *graph)                        # x, h: [num_nodes, 128]

``edge_weight`` holds the raw strength of each edge (CUB: the fraction of a class' images that show
an attribute).
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from fgmm.registry import Registry


class PropagationLayer(nn.Module, ABC):
    """A GNN of fixed width: ``forward(x, adjacency, edge_weight) -> [N, dim]``."""

    @staticmethod
    @abstractmethod
    def prepare(edge_index: Tensor, edge_weight: Tensor, num_nodes: int) -> tuple[Tensor, Tensor | None]:
        """The ``(adjacency, edge_weight)`` pair that :meth:`forward` takes, computed once per graph."""

    @abstractmethod
    def forward(self, x: Tensor, adjacency: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        """Propagate ``[N, dim]`` node states over a graph made by :meth:`prepare`."""


def normalized_adjacency(edge_index: Tensor, edge_weight: Tensor, num_nodes: int, self_loops: bool) -> Tensor:
    r"""Sparse CSR :math:`\hat{\mathbf{D}}^{-1/2}\hat{\mathbf{A}}\hat{\mathbf{D}}^{-1/2}`, with
    :math:`\hat{\mathbf{A}} = \mathbf{A} + \mathbf{I}` when ``self_loops`` else :math:`\mathbf{A}`."""
    edge_index, edge_weight = gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=self_loops)
    with warnings.catch_warnings(), torch.sparse.check_sparse_tensor_invariants(enable=True):
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return to_torch_csr_tensor(edge_index, edge_weight, size=(num_nodes, num_nodes))


GNN_LAYERS: Registry[PropagationLayer] = Registry("gnn layer")


def create_gnn_layer(name: str, dim: int, num_layers: int = 2, **kwargs: Any) -> PropagationLayer:
    """Create the propagation layer ``name`` (one of ``GNN_LAYERS.names()``) of width ``dim``."""
    return GNN_LAYERS.create(name, dim=dim, num_layers=num_layers, **kwargs)
