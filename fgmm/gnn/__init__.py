"""Graph neural networks over knowledge graphs: propagation layers and class-embedding networks.

``GNN_LAYERS`` holds the learned propagation layers (``"ggnn"`` as in KERL, ``"gcn"``, ``"gat"``);
:class:`ClassEmbeddingNetwork` turns a :class:`ClassGraph` into class embeddings in the joint space;
:func:`propagation_features` is the parameter-free (linear) propagation the closed-form
zero-shot model of :mod:`fgmm.zeroshot` regresses from.
"""

from __future__ import annotations

import fgmm._pyg  # noqa: F401  (imports PyG before the layers do, without its import-time FutureWarning)
from fgmm.gnn.gat import GATPropagation
from fgmm.gnn.gcn import GCNPropagation
from fgmm.gnn.ggnn import GatedPropagation
from fgmm.gnn.layers import GNN_LAYERS, create_gnn_layer
from fgmm.gnn.propagation import NODE_TYPES, ClassEmbeddingNetwork, ClassGraph, propagation_features

__all__ = [
    "GNN_LAYERS",
    "NODE_TYPES",
    "ClassEmbeddingNetwork",
    "ClassGraph",
    "GATPropagation",
    "GCNPropagation",
    "GatedPropagation",
    "create_gnn_layer",
    "propagation_features",
]
