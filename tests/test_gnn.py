"""GNN layers and class-embedding propagation: shapes, gradients, graph conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.data import HeteroData

from fgmm.errors import ConfigError, DataError
from fgmm.gnn import (
    GNN_LAYERS,
    NODE_TYPES,
    ClassEmbeddingNetwork,
    ClassGraph,
    create_gnn_layer,
    propagation_features,
)


def contract_graph(label_index: list[int] | None = None) -> HeteroData:
    """4 species under 2 genera, 5 attributes of 2 parts, in the ``KnowledgeGraph.to_pyg`` layout."""
    data = HeteroData()
    data["class"].num_nodes = 6
    data["class"].names = ["sp_a", "sp_b", "sp_c", "sp_d", "genus_1", "genus_2"]
    data["class"].is_leaf = torch.tensor([True, True, True, True, False, False])
    data["class"].label_index = torch.tensor(label_index or [0, 1, 2, 3, -1, -1])
    data["attribute"].num_nodes = 5
    data["attribute"].names = [f"att_{i}" for i in range(5)]
    data["attribute"].group = torch.tensor([0, 0, 1, 1, 1])
    data["part"].num_nodes = 2
    data["part"].names = ["bill", "wing"]
    data["class", "has_attribute", "attribute"].edge_index = torch.tensor([[0, 0, 1, 2, 3, 3], [0, 2, 1, 3, 3, 4]])
    data["class", "has_attribute", "attribute"].edge_weight = torch.tensor([0.9, 0.2, 0.7, 0.5, 0.4, 1.0])
    data["attribute", "of_part", "part"].edge_index = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 1, 1, 1]])
    data["attribute", "of_part", "part"].edge_weight = torch.ones(5)
    data["class", "subclass_of", "class"].edge_index = torch.tensor([[0, 1, 2, 3], [4, 4, 5, 5]])
    data["class", "subclass_of", "class"].edge_weight = torch.ones(4)
    return data


def test_from_hetero_builds_undirected_typed_graph():
    graph = ClassGraph.from_hetero(contract_graph())
    assert graph.num_nodes == 6 + 5 + 2
    assert graph.num_labels == 4
    assert graph.node_type.tolist() == [0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 3]
    assert NODE_TYPES[1] == "taxon"
    assert graph.edge_index.size(1) == 2 * (6 + 5 + 4)
    edges = {(int(s), int(d)): float(w) for (s, d), w in zip(graph.edge_index.T, graph.edge_weight, strict=True)}
    # class 3 -> attribute 4 (node 6 + 4) with strength 1.0, both directions
    assert edges[(3, 10)] == edges[(10, 3)] == pytest.approx(1.0)
    assert edges[(0, 6)] == pytest.approx(0.9)
    assert edges[(2, 5)] == edges[(5, 2)] == 1.0  # subclass_of
    assert graph.class_names == ["sp_a", "sp_b", "sp_c", "sp_d"]


def test_from_hetero_follows_label_index_and_rejects_gaps():
    graph = ClassGraph.from_hetero(contract_graph([2, 0, -1, 1, -1, -1]))
    assert graph.label_nodes.tolist() == [1, 3, 0]
    assert graph.class_names == ["sp_b", "sp_d", "sp_a"]
    with pytest.raises(DataError, match="label_index"):
        ClassGraph.from_hetero(contract_graph([0, 2, 3, 4, -1, -1]))
    data = contract_graph()
    data["class", "subclass_of", "class"].edge_weight = torch.ones(3)
    with pytest.raises(DataError, match="4 edges but 3 edge weights"):
        ClassGraph.from_hetero(data)


def test_from_matrix_thresholds_and_adds_taxa():
    matrix = np.array([[0.9, 0.0, 0.05], [0.0, 0.6, 0.5]])
    graph = ClassGraph.from_matrix(matrix, parents=[0, 0], threshold=0.1)
    assert graph.num_nodes == 2 + 3 + 1
    assert graph.edge_index.size(1) == 2 * (3 + 2)  # 3 links above 0.1, 2 taxon links


@pytest.mark.parametrize("name", GNN_LAYERS.names())
def test_layers_keep_shape_and_pass_gradients(name):
    torch.manual_seed(0)
    graph = ClassGraph.from_hetero(contract_graph())
    layer = create_gnn_layer(name, dim=16, num_layers=2)
    adjacency, weight = layer.prepare(graph.edge_index, graph.edge_weight, graph.num_nodes)
    x = torch.randn(graph.num_nodes, 16, requires_grad=True)
    out = layer(x, adjacency, weight)
    assert out.shape == (graph.num_nodes, 16)
    out.square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, param in layer.named_parameters():
        assert param.grad is not None, pname
    # a message reaches a class from its attribute: perturbing attribute 4 changes class 3 only
    x2 = x.detach().clone()
    x2[6 + 4] += 1.0
    with torch.no_grad():
        delta = (layer(x2, adjacency, weight) - layer(x.detach(), adjacency, weight)).abs().sum(1)
    assert delta[3] > 1e-6
    assert delta[0] < 1e-6  # class 0 is more than two hops (num_layers=2) from attribute 4


@pytest.mark.parametrize("name", GNN_LAYERS.names())
def test_class_embedding_network_shapes_and_gradients(name):
    torch.manual_seed(0)
    graph = ClassGraph.from_hetero(contract_graph())
    net = ClassEmbeddingNetwork(graph, out_dim=8, hidden=16, layer=name, num_layers=2)
    weights = net()
    assert weights.shape == (4, 8)
    weights.square().sum().backward()
    assert net.node_embedding.weight.grad[1:].abs().sum() > 0  # attribute/part embeddings learn
    assert net.readout.weight.grad.abs().sum() > 0


def test_classes_with_the_same_neighbourhood_get_the_same_embedding():
    # class nodes own no parameters: two classes with identical links are indistinguishable
    matrix = np.array([[0.8, 0.1, 0.0], [0.8, 0.1, 0.0], [0.0, 0.3, 0.9]])
    net = ClassEmbeddingNetwork(ClassGraph.from_matrix(matrix), out_dim=4, hidden=8, layer="ggnn")
    weights = net()
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
    assert not torch.allclose(weights[0], weights[2], atol=1e-3)


def test_node_features_enter_the_initial_states():
    data = contract_graph()
    for node_type, count in (("class", 6), ("attribute", 5), ("part", 2)):
        data[node_type].x = torch.randn(count, 5)
    graph = ClassGraph.from_hetero(data)
    assert graph.node_features.shape == (13, 5)
    net = ClassEmbeddingNetwork(graph, out_dim=4, hidden=8, layer="gcn")
    net().sum().backward()
    assert net.feature_projection.weight.grad.abs().sum() > 0
    assert ClassEmbeddingNetwork(graph, out_dim=4, hidden=8, use_node_features=False).feature_projection is None


def test_unknown_layer_and_bad_gat_width_raise_config_errors():
    with pytest.raises(ConfigError, match="unknown gnn layer 'gin'.*gat, gcn, ggnn"):
        create_gnn_layer("gin", dim=8)
    with pytest.raises(ConfigError, match="divisible"):
        create_gnn_layer("gat", dim=10, heads=4)


def test_propagation_features_mark_attributes_and_every_ancestor():
    data = contract_graph()
    # put both genera under one family (a seventh class node)
    data["class"].num_nodes = 7
    data["class"].names = [*data["class"].names, "family"]
    data["class"].is_leaf = torch.tensor([True] * 4 + [False] * 3)
    data["class"].label_index = torch.tensor([0, 1, 2, 3, -1, -1, -1])
    data["class", "subclass_of", "class"].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [4, 4, 5, 5, 6, 6]])
    data["class", "subclass_of", "class"].edge_weight = torch.ones(6)
    graph = ClassGraph.from_hetero(data)
    phi = propagation_features(graph, taxonomy_weight=0.5).toarray()
    n = graph.num_nodes
    assert phi.shape == (4, 2 * n)
    attributes, ancestors = phi[:, :n], phi[:, n:]
    first_attribute = 7  # node index of att_0
    assert attributes[0, first_attribute] == pytest.approx(0.9 / np.hypot(0.9, 0.2))
    assert attributes[0, first_attribute + 2] == pytest.approx(0.2 / np.hypot(0.9, 0.2))
    assert np.nonzero(ancestors[0])[0].tolist() == [4, 6]  # genus_1 and the family, not genus_2
    assert ancestors[0, 4] == pytest.approx(0.5 / np.sqrt(2))
    kernel = phi @ phi.T
    assert kernel[0, 1] > kernel[0, 2]  # same genus counts more than same family only


def test_propagation_features_reject_a_taxonomy_cycle():
    data = contract_graph()
    data["class", "subclass_of", "class"].edge_index = torch.tensor([[0, 1, 2, 3, 4, 5], [4, 4, 5, 5, 5, 4]])
    data["class", "subclass_of", "class"].edge_weight = torch.ones(6)
    with pytest.raises(DataError, match="cycle"):
        propagation_features(ClassGraph.from_hetero(data))


def test_rewired_graph_keeps_every_degree_but_not_the_links():
    from fgmm.gnn.propagation import NODE_TYPES, ClassGraph

    rng = np.random.default_rng(0)
    attributes = (rng.random((12, 20)) < 0.4) * rng.random((12, 20))
    graph = ClassGraph.from_matrix(attributes, [f"c{i}" for i in range(12)], parents=[i // 4 for i in range(12)])
    rewired = graph.rewired(seed=1)

    def degrees(g, a, b):
        src, dst = g.edge_index
        kind = g.node_type
        mask = (kind[src] == NODE_TYPES.index(a)) & (kind[dst] == NODE_TYPES.index(b))
        links = set(zip(src[mask].tolist(), dst[mask].tolist(), strict=True))
        return (torch.bincount(src[mask], minlength=g.num_nodes), torch.bincount(dst[mask], minlength=g.num_nodes),
                links)

    for a, b in (("class", "attribute"), ("class", "taxon")):
        before, after = degrees(graph, a, b), degrees(rewired, a, b)
        assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert degrees(graph, "class", "attribute")[2] != degrees(rewired, "class", "attribute")[2]
    assert rewired.edge_index.shape == graph.edge_index.shape and rewired.num_labels == graph.num_labels
    assert torch.equal(graph.rewired(seed=1).edge_index, rewired.edge_index)  # seeded
