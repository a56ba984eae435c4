"""Class embeddings from a knowledge graph: node features → GNN propagation → joint space.

A :class:`ClassGraph` is the homogeneous, undirected view of a class–attribute(–part–taxon) graph
(made from :meth:`fgmm.kg.KnowledgeGraph.to_pyg`'s ``HeteroData``, or from a plain class × attribute
strength matrix). A :class:`ClassEmbeddingNetwork` propagates learned node states over it with one
of the :data:`~fgmm.gnn.layers.GNN_LAYERS` and reads out one embedding per dataset label::

    graph = ClassGraph.from_hetero(kg.to_pyg())
    net = ClassEmbeddingNetwork(graph, out_dim=512, layer="ggnn")
    weights = net()                                   # [num_labels, 512]

A class node has no parameters of its own: its state starts from its node type and, after
propagation, is what its attributes, parts and taxonomy neighbours tell about it. That is what
lets a class with no training image get an embedding of the same kind as the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import sparse
from torch import Tensor, nn
from torch_geometric.utils import to_undirected

from fgmm.errors import ConfigError, DataError
from fgmm.gnn.layers import create_gnn_layer

#: node types of a :class:`ClassGraph`, in the order of their integer ids
NODE_TYPES: tuple[str, ...] = ("class", "taxon", "attribute", "part")

#: the edge types read from a ``HeteroData`` (directions are dropped: the graph is undirected)
EDGE_TYPES: tuple[tuple[str, str, str], ...] = (
    ("class", "has_attribute", "attribute"),
    ("attribute", "of_part", "part"),
    ("class", "subclass_of", "class"),
)


@dataclass
class ClassGraph:
    """An undirected, weighted graph over class, taxon, attribute and part nodes.

    Attributes:
        edge_index: ``[2, E]`` node pairs, each edge stored in both directions.
        edge_weight: ``[E]`` edge strengths (``has_attribute``: the strength, others: 1).
        node_type: ``[N]`` index into :data:`NODE_TYPES` per node.
        label_nodes: ``[num_labels]`` node index of each dataset label ``0..num_labels-1``.
        class_names: name of each label (the class node's name).
        subclass_edges: ``[2, S]`` (child, parent) node pairs of the taxonomy, directed upwards.
        node_features: optional ``[N, F]`` fixed node features (e.g. text embeddings of node labels).
    """

    edge_index: Tensor
    edge_weight: Tensor
    node_type: Tensor
    label_nodes: Tensor
    class_names: list[str]
    subclass_edges: Tensor = field(default_factory=lambda: torch.empty(2, 0, dtype=torch.long))
    node_features: Tensor | None = None

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.numel())

    @property
    def num_labels(self) -> int:
        return int(self.label_nodes.numel())

    @classmethod
    def from_hetero(cls, data) -> ClassGraph:
        """Build from a ``HeteroData`` following the :meth:`KnowledgeGraph.to_pyg` contract.

        Node type ``"class"`` must carry ``is_leaf`` and ``label_index`` (dataset label of each leaf
        class, ``-1`` for taxa and for classes outside the dataset) and ``names``; ``"attribute"`` and
        ``"part"`` are optional. Labels must be ``0..L-1`` without gaps or repeats. When every node
        type carries features ``x`` of one width (``to_pyg(features=True)``), they become
        :attr:`node_features`.
        """
        if "class" not in data.node_types:
            raise DataError(None, "knowledge graph has no 'class' nodes")
        store = data["class"]
        is_leaf = torch.as_tensor(store.is_leaf, dtype=torch.bool)
        label_index = torch.as_tensor(store.label_index, dtype=torch.long)
        offsets, types, features, start = {}, [], [], 0
        for name in ("class", "attribute", "part"):
            if name not in data.node_types:
                continue
            offsets[name] = start
            features.append(getattr(data[name], "x", None))
            count = int(data[name].num_nodes)
            if name == "class":
                types.append(torch.where(is_leaf, NODE_TYPES.index("class"), NODE_TYPES.index("taxon")))
            else:
                types.append(torch.full((count,), NODE_TYPES.index(name), dtype=torch.long))
            start += count
        edges, weights = [], []
        for src, rel, dst in EDGE_TYPES:
            if (src, rel, dst) not in data.edge_types:
                continue
            edge_store = data[src, rel, dst]
            index = edge_store.edge_index.long() + torch.tensor([[offsets[src]], [offsets[dst]]])
            edges.append(index)
            weight = getattr(edge_store, "edge_weight", None)
            weight = torch.ones(index.size(1)) if weight is None else torch.as_tensor(weight).float()
            if weight.numel() != index.size(1):
                raise DataError(None, f"knowledge graph edges ({src}, {rel}, {dst}): {index.size(1)} edges but "
                                      f"{weight.numel()} edge weights")
            weights.append(weight)
        labelled = torch.nonzero(label_index >= 0).flatten()
        labels = label_index[labelled]
        order = torch.argsort(labels)
        if not torch.equal(labels[order], torch.arange(labels.numel())):
            raise DataError(None, "knowledge graph class label_index values must be 0..L-1, each once; got "
                                  f"{sorted(labels.tolist())[:10]}...")
        names = list(store.names)
        nodes = labelled[order]
        graph = cls._build(edges, weights, torch.cat(types), nodes, [names[i] for i in nodes.tolist()])
        if ("class", "subclass_of", "class") in data.edge_types:
            graph.subclass_edges = data["class", "subclass_of", "class"].edge_index.long()
        if all(x is not None for x in features) and len({x.size(1) for x in features}) == 1:
            graph.node_features = torch.cat(features).float()
        return graph

    @classmethod
    def from_matrix(cls, class_attributes: np.ndarray | Tensor, class_names: Sequence[str] | None = None,
                    parents: Sequence[int] | None = None, threshold: float = 0.0) -> ClassGraph:
        """Build a class–attribute(–taxon) graph from a ``[C, A]`` strength matrix.

        Args:
            class_attributes: strengths in ``[0, 1]``; an edge links class ``c`` and attribute ``a``
                where the strength exceeds ``threshold``.
            class_names: names of the ``C`` classes (default ``class_0`` ...).
            parents: optional taxon id per class (``-1``: none); taxa become extra nodes linked to
                their member classes.
            threshold: strengths at or below it give no edge.
        """
        matrix = torch.as_tensor(np.asarray(class_attributes), dtype=torch.float32)
        num_classes, num_attributes = matrix.shape
        cls_idx, att_idx = torch.nonzero(matrix > threshold, as_tuple=True)
        edges = [torch.stack([cls_idx, att_idx + num_classes])]
        weights = [matrix[cls_idx, att_idx]]
        types = [torch.full((num_classes,), NODE_TYPES.index("class")),
                 torch.full((num_attributes,), NODE_TYPES.index("attribute"))]
        if parents is not None:
            parent = torch.as_tensor(list(parents), dtype=torch.long)
            member = torch.nonzero(parent >= 0).flatten()
            num_taxa = int(parent.max()) + 1 if member.numel() else 0
            base = num_classes + num_attributes
            edges.append(torch.stack([member, parent[member] + base]))
            weights.append(torch.ones(member.numel()))
            types.append(torch.full((num_taxa,), NODE_TYPES.index("taxon")))
        names = list(class_names) if class_names is not None else [f"class_{i}" for i in range(num_classes)]
        graph = cls._build(edges, weights, torch.cat(types).long(), torch.arange(num_classes), names)
        if parents is not None:
            graph.subclass_edges = edges[-1]
        return graph

    def rewired(self, seed: int = 0, swaps_per_edge: int = 10) -> ClassGraph:
        """A random graph with the same degree sequence, for ablations (does the *knowledge* matter?).

        Class → attribute links are rewired by degree-preserving double-edge swaps (Maslov & Sneppen,
        2002: links (c1, a1), (c2, a2) become (c1, a2), (c2, a1) when neither exists; strengths travel with
        the links), so every class keeps its number of attributes and every attribute its number of
        classes; the parents of the classes are permuted among the classes, so every taxon keeps its
        number of child classes. Taxon → taxon and attribute → part edges are kept; node features dropped.
        """
        rng = np.random.default_rng(seed)
        src, dst = self.edge_index
        types = self.node_type
        kinds = {name: NODE_TYPES.index(name) for name in NODE_TYPES}

        def directed(a: str, b: str) -> Tensor:
            return (types[src] == kinds[a]) & (types[dst] == kinds[b])

        links, parents = directed("class", "attribute"), directed("class", "taxon")
        rewired = links | parents | directed("attribute", "class") | directed("taxon", "class")
        pairs = self.edge_index[:, links].numpy().copy()
        present = set(zip(pairs[0].tolist(), pairs[1].tolist(), strict=True))
        n = pairs.shape[1]
        for i, j in rng.integers(0, n, size=(swaps_per_edge * n, 2)) if n > 1 else ():
            (c1, c2), (a1, a2) = pairs[0, [i, j]], pairs[1, [i, j]]
            if c1 == c2 or a1 == a2 or (c1, a2) in present or (c2, a1) in present:
                continue
            present -= {(c1, a1), (c2, a2)}
            present |= {(c1, a2), (c2, a1)}
            pairs[1, i], pairs[1, j] = a2, a1
        children = self.edge_index[:, parents].clone()
        children[1] = children[1][torch.as_tensor(rng.permutation(children.shape[1]))]
        edges = [self.edge_index[:, ~rewired], torch.as_tensor(pairs), children]
        weights = [self.edge_weight[~rewired], self.edge_weight[links], self.edge_weight[parents]]
        parent_of = dict(zip(children[0].tolist(), children[1].tolist(), strict=True))
        child, parent = self.subclass_edges
        new_parent = torch.tensor([parent_of.get(int(c), int(p)) for c, p in zip(child, parent, strict=True)],
                                  dtype=parent.dtype)
        graph = self._build(edges, weights, types, self.label_nodes, list(self.class_names))
        graph.subclass_edges = torch.stack([child, new_parent])
        return graph

    @classmethod
    def _build(cls, edges: list[Tensor], weights: list[Tensor], node_type: Tensor, label_nodes: Tensor,
               class_names: list[str]) -> ClassGraph:
        num_nodes = int(node_type.numel())
        edge_index = torch.cat(edges, dim=1) if edges else torch.empty(2, 0, dtype=torch.long)
        edge_weight = torch.cat(weights) if weights else torch.empty(0)
        edge_index, edge_weight = to_undirected(edge_index, edge_weight, num_nodes=num_nodes, reduce="max")
        return cls(edge_index, edge_weight, node_type, label_nodes.long(), class_names)


class ClassEmbeddingNetwork(nn.Module):
    r"""Class embeddings in the joint space from GNN propagation over a :class:`ClassGraph`.

    .. math::
        \mathbf{h}_v^{(0)} &= \mathbf{t}_{\tau(v)} + \mathbf{e}_v\,[\tau(v) \in \{\text{attribute},
        \text{part}\}] + \mathbf{P}\mathbf{f}_v

        \mathbf{H}^{(T)} &= \mathrm{GNN}\big(\mathbf{H}^{(0)}, \mathcal{E}, a\big)

        \mathbf{w}_c &= \mathbf{W}_o\, \mathrm{LN}\big(\mathbf{h}^{(T)}_{v(c)}\big) + \mathbf{b}_o

    :math:`\mathbf{t}_\tau` is a learned embedding of node type :math:`\tau`, :math:`\mathbf{e}_v` a
    learned embedding of each attribute and part node, :math:`\mathbf{f}_v` optional fixed node
    features (e.g. text embeddings of names), :math:`a` the edge strengths and :math:`v(c)` the node of
    label :math:`c`. Class and taxon nodes own no parameters, so any class in the graph, with or
    without training images, gets its embedding from its neighbourhood.

    Args:
        graph: the graph to propagate over (prepared once for the layer; moves with ``.to(device)``).
        out_dim: width :math:`d` of the joint embedding space.
        hidden: width of the node states.
        layer: a name in :data:`~fgmm.gnn.layers.GNN_LAYERS` (``"ggnn"``, ``"gcn"``, ``"gat"``).
        num_layers: propagation steps/layers of that GNN.
        dropout: dropout inside the GNN.
        use_node_features: start from ``graph.node_features`` (when the graph has them) through
            the learned projection :math:`\mathbf{P}`.
    """

    def __init__(self, graph: ClassGraph, out_dim: int, hidden: int = 128, layer: str = "ggnn",
                 num_layers: int = 3, dropout: float = 0.0, use_node_features: bool = True,
                 learned_nodes: Sequence[str] = ("taxon", "attribute", "part")):
        super().__init__()
        if "class" in learned_nodes or not set(learned_nodes) <= set(NODE_TYPES):
            raise ConfigError(f"learned_nodes must be among {NODE_TYPES[1:]}, got {list(learned_nodes)}")
        node_features = graph.node_features if use_node_features else None
        self.gnn = create_gnn_layer(layer, dim=hidden, num_layers=num_layers, dropout=dropout)
        adjacency, edge_weight = self.gnn.prepare(graph.edge_index, graph.edge_weight, graph.num_nodes)
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.register_buffer("edge_weight", edge_weight, persistent=False)
        self.register_buffer("node_type", graph.node_type, persistent=False)
        self.register_buffer("label_nodes", graph.label_nodes, persistent=False)
        owned = torch.isin(graph.node_type, torch.tensor([NODE_TYPES.index(t) for t in learned_nodes]))
        # row of each node in `node_embedding` (row 0: a fixed zero row shared by the other nodes)
        self.register_buffer("embedding_row", torch.where(owned, torch.cumsum(owned.long(), 0), 0),
                             persistent=False)
        self.type_embedding = nn.Embedding(len(NODE_TYPES), hidden)
        self.node_embedding = nn.Embedding(int(owned.sum()) + 1, hidden, padding_idx=0)
        nn.init.normal_(self.node_embedding.weight, std=hidden ** -0.5)
        with torch.no_grad():
            self.node_embedding.weight[0].zero_()
        if node_features is not None:
            self.register_buffer("node_features", node_features.float(), persistent=False)
            self.feature_projection: nn.Module | None = nn.Linear(node_features.size(1), hidden, bias=False)
        else:
            self.node_features = None
            self.feature_projection = None
        self.norm = nn.LayerNorm(hidden)
        self.readout = nn.Linear(hidden, out_dim)

    @property
    def num_labels(self) -> int:
        return int(self.label_nodes.numel())

    def node_states(self) -> Tensor:
        """``[N, hidden]`` node states after propagation."""
        h = self.type_embedding(self.node_type) + self.node_embedding(self.embedding_row)
        if self.feature_projection is not None:
            h = h + self.feature_projection(self.node_features)
        return self.gnn(h, self.adjacency, self.edge_weight)

    def forward(self) -> Tensor:
        """``[num_labels, out_dim]`` class embeddings, row ``c`` for dataset label ``c``."""
        return self.readout(self.norm(self.node_states()[self.label_nodes]))


def propagation_features(graph: ClassGraph, taxonomy_weight: float = 0.5) -> sparse.csr_matrix:
    r"""Parameter-free class descriptors by propagation over the typed graph (a linear GNN, no training).

    .. math::
        \phi(c) = \Big[\, \frac{\mathbf{a}_c}{\lVert \mathbf{a}_c \rVert} \;\Big\Vert\;
        \beta\, \frac{\mathbf{t}_c}{\lVert \mathbf{t}_c \rVert} \,\Big], \qquad
        \mathbf{a}_c = \mathbf{S}^{\top} \mathbf{e}_{v(c)}, \qquad
        \mathbf{t}_c = \sum_{k \ge 1} (\mathbf{U}^{\top})^{k}\, \mathbf{e}_{v(c)}

    :math:`\mathbf{S}` holds the class → attribute strengths (one hop), :math:`\mathbf{U}` the
    child → parent taxonomy edges (every hop up to the root, so :math:`\mathbf{t}_c` marks all
    ancestors of the class: genus, family, order, ...), :math:`\mathbf{e}_{v(c)}` the one-hot of
    the class node and :math:`\beta` = ``taxonomy_weight``. Two classes' descriptors have the inner
    product :math:`\cos(\mathbf{a}_c, \mathbf{a}_{c'}) + \beta^2 \cos(\mathbf{t}_c, \mathbf{t}_{c'})`:
    similar attributes and shared ancestors. A block is zero when the class has no such edge.

    Returns:
        ``[num_labels, 2N]`` sparse rows, one per dataset label.

    Raises:
        DataError: the taxonomy has a cycle.
    """
    n = graph.num_nodes
    src, dst = graph.edge_index.numpy()
    types = graph.node_type.numpy()
    links = np.isin(types[src], [NODE_TYPES.index("class"), NODE_TYPES.index("taxon")]) & (
        types[dst] == NODE_TYPES.index("attribute"))
    strengths = sparse.csr_matrix((graph.edge_weight.numpy()[links], (src[links], dst[links])), shape=(n, n))
    child, parent = graph.subclass_edges.numpy()
    up = sparse.csr_matrix((np.ones(child.size), (child, parent)), shape=(n, n))
    rows = graph.label_nodes.numpy()
    seeds = sparse.csr_matrix((np.ones(rows.size), (np.arange(rows.size), rows)), shape=(rows.size, n))
    ancestors, frontier = sparse.csr_matrix((rows.size, n)), seeds
    for _ in range(n + 1):
        frontier = frontier @ up
        if frontier.nnz == 0:
            break
        ancestors = ancestors + frontier
    else:
        raise DataError(None, "the taxonomy (subclass_of edges) has a cycle")
    ancestors.data[:] = 1.0
    return sparse.hstack([_row_normalized(seeds @ strengths),
                          taxonomy_weight * _row_normalized(ancestors)]).tocsr()


def _row_normalized(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1))).ravel()
    return sparse.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ matrix
