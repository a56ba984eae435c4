"""Converters: Turtle ↔ KnowledgeGraph ↔ networkx ↔ PyG, counts and strengths preserved."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from rdflib import Literal, URIRef
from rdflib.namespace import DCTERMS, RDFS

from fgmm.errors import ConfigError, DataError
from fgmm.kg import KnowledgeGraph, build_procedural_kg
from fgmm.kg.convert import EDGE_TYPES, NODE_TYPES, class_attribute_matrix
from fgmm.kg.features import node_text, text_node_features


@pytest.fixture(scope="module")
def demo() -> KnowledgeGraph:
    """6 procedural species in 2 genera, 28 attributes in 8 groups about 7 parts, 168 links."""
    return build_procedural_kg(num_classes=6, seed=3, unseen_classes=1)


def test_turtle_networkx_round_trip_is_exact(demo, tmp_path):
    kg = KnowledgeGraph.load(demo.save(tmp_path / "demo.ttl"))
    kg.graph.add((kg.node("class", kg.classes()[0]), RDFS.label, Literal("Vogel", lang="de")))  # not "plain"
    kg.graph.add((kg.dataset, DCTERMS.creator, Literal("tests")))
    graph = kg.to_networkx()
    kinds = nx.get_node_attributes(graph, "kind")
    assert sum(k == "class" for k in kinds.values()) == 8 and sum(k == "attribute" for k in kinds.values()) == 28
    weights = {(graph.nodes[u]["name"], graph.nodes[v]["name"]): d["weight"]
               for u, v, d in graph.edges(data=True) if d["kind"] == "has_attribute"}
    assert len(weights) == 6 * 28
    assert weights == {(c, a): s for c, a, s in kg.links()}
    assert any("Vogel" in line for line in graph.graph["rdf_extra"])
    back = KnowledgeGraph.from_networkx(graph)
    assert back.isomorphic(kg)
    assert back.links() == kg.links()
    back.save(tmp_path / "again.ttl")
    assert KnowledgeGraph.load(tmp_path / "again.ttl").isomorphic(kg)


def test_from_hand_made_networkx_graph():
    graph = nx.DiGraph(base="https://example.org/kg/hand/")
    graph.add_node("Robin", kind="class", label="Robin")
    graph.add_node("has_breast_color::red", kind="attribute", label="red breast")
    graph.add_node("has_breast_color", kind="group", label="breast colour")
    graph.add_node("breast", kind="part", label="breast")
    graph.add_edge("Robin", "has_breast_color::red", weight=0.8)
    graph.add_edge("has_breast_color::red", "has_breast_color")
    graph.add_edge("has_breast_color", "breast")
    kg = KnowledgeGraph.from_networkx(graph)
    assert kg.links() == [("Robin", "has_breast_color::red", 0.8)]
    assert kg.describe("attribute", "has_breast_color::red")["part"] == "breast"
    assert kg.validate().conforms

    graph.add_edge("Robin", "has_breast_color::red", weight=1.5)
    with pytest.raises(DataError, match=r"needs a 'weight' in \[0, 1\]"):
        KnowledgeGraph.from_networkx(graph)
    graph.add_node("mystery")
    with pytest.raises(DataError, match="node 'mystery' needs a 'kind'"):
        KnowledgeGraph.from_networkx(graph)


def test_to_pyg_hetero_contract(demo):
    data = demo.to_pyg()
    classes, attributes, parts = data["class"], data["attribute"], data["part"]
    assert (classes.num_nodes, attributes.num_nodes, parts.num_nodes) == (8, 28, 7)
    assert classes.names[:6] == demo.classes(leaves_only=True)
    assert classes.is_leaf.dtype == torch.bool and classes.is_leaf.tolist() == [True] * 6 + [False] * 2
    assert classes.label_index.tolist() == [0, 1, 2, 3, 4, 5, -1, -1]
    assert classes.iris[0].startswith("https://fgmm.dev/kg/procedural/class/")
    assert attributes.names == demo.attributes() and len(data.group_names) == 8
    assert attributes.group.tolist() == [data.group_names.index(n.split("::")[0]) for n in attributes.names]

    store = data["class", "has_attribute", "attribute"]
    assert store.edge_index.shape == (2, 6 * 28) and store.edge_weight.dtype == torch.float32
    strengths = {(c, a): s for c, a, s in demo.links()}
    for (i, j), w in zip(store.edge_index.t().tolist(), store.edge_weight.tolist(), strict=True):
        assert w == pytest.approx(strengths[classes.names[i], attributes.names[j]], abs=1e-7)
    of_part = data["attribute", "of_part", "part"].edge_index
    assert of_part.shape == (2, 28)
    part_names = [parts.names[j] for j in of_part[1].tolist()]
    assert part_names[attributes.names.index("has_eye_ring::present")] == "eye"
    sub = data["class", "subclass_of", "class"].edge_index
    assert sub.shape == (2, 6) and all(not classes.is_leaf[j] for j in sub[1].tolist())
    assert set(data.edge_types) == set(EDGE_TYPES)
    assert "x" not in classes


def test_to_pyg_class_order(demo):
    order = list(reversed(demo.classes(leaves_only=True)))
    order[0] = demo.label(demo.node("class", order[0]))  # a label works as well as a name
    data = demo.to_pyg(class_order=order)
    assert data["class"].label_index[:6].tolist() == list(range(6))
    assert data["class"].names[1:6] == order[1:]
    with pytest.raises(ConfigError, match="class 'Dodo' of the class order is not in the knowledge graph"):
        demo.to_pyg(class_order=[*order, "Dodo"])
    with pytest.raises(ConfigError, match="same class"):
        demo.to_pyg(class_order=[order[1], order[1]])


def test_to_pyg_homogeneous(demo):
    data = demo.to_pyg(hetero=False)
    assert data.num_nodes == 8 + 28 + 7
    assert data.node_type.tolist() == [0] * 8 + [1] * 28 + [2] * 7
    assert torch.equal(data.x, torch.nn.functional.one_hot(data.node_type, 3).float())
    assert data.edge_index.shape[1] == 6 * 28 + 28 + 6 == data.edge_type.numel() == data.edge_weight.numel()
    assert torch.bincount(data.edge_type).tolist() == [168, 28, 6]
    assert data.edge_index.max() < data.num_nodes
    links = data.edge_type == 0
    assert data.node_type[data.edge_index[0, links]].eq(0).all()
    assert data.node_type[data.edge_index[1, links]].eq(1).all()
    assert float(data.edge_weight[links].sum()) == pytest.approx(sum(s for *_, s in demo.links()), rel=1e-6)
    assert data.label_index.tolist() == list(range(6)) + [-1] * (2 + 28 + 7)
    assert data.node_type_names == list(NODE_TYPES)


def test_class_attribute_matrix(demo):
    matrix, classes, attributes = class_attribute_matrix(demo)
    assert matrix.shape == (6, 28) and matrix.dtype == np.float64
    assert classes == demo.classes(leaves_only=True) and attributes == demo.attributes()
    for c, a, s in demo.links():
        assert matrix[classes.index(c), attributes.index(a)] == s
    sub, rows, _ = demo.class_attribute_matrix(class_order=classes[::-1][:2])
    assert rows == classes[::-1][:2] and np.array_equal(sub, matrix[[5, 4]])


class FakeEncoder:
    """Deterministic 4-d 'embeddings' (length, vowels, words, 1) that record what they were asked."""

    dim = 4

    def __init__(self):
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        return torch.tensor([[len(t), sum(ch in "aeiou" for ch in t), len(t.split()), 1.0] for t in texts])


def test_text_node_features(demo):
    encoder = FakeEncoder()
    data = demo.to_pyg(features=True, encoder=encoder)
    assert data["class"].x.shape == (8, 4) and data["attribute"].x.shape == (28, 4) and data["part"].x.shape == (7, 4)
    first = demo.node("class", data["class"].names[0])
    assert node_text(demo, first).startswith(demo.label(first) + ". The ")  # label + description
    assert data["class"].x[0, 0] == len(node_text(demo, first))
    homogeneous = demo.to_pyg(hetero=False, features=True, encoder=encoder)
    assert homogeneous.x.shape == (43, 3 + 4)
    parts = text_node_features(demo, {"part": demo.nodes("part")}, encoder=encoder)
    assert list(parts) == ["part"] and parts["part"].shape == (7, 4)


@pytest.mark.slow
def test_text_node_features_with_the_offline_model_and_cache(tmp_path):
    kg = KnowledgeGraph("https://example.org/kg/t/")
    kg.add_class("Robin", description="A small thrush with a red breast.")
    kg.add_attribute("has_breast_color::red", group="has_breast_color", part="breast", label="breast colour: red")
    first = text_node_features(kg, cache=tmp_path / "cache")
    assert first["class"].shape == (1, 384) and first["part"].shape == (1, 384)
    assert torch.allclose(first["class"].norm(dim=1), torch.ones(1), atol=1e-4)
    again = text_node_features(kg, cache=tmp_path / "cache")  # served from the feature cache
    assert torch.equal(again["attribute"], first["attribute"])
    assert any((tmp_path / "cache").rglob("*.safetensors"))


def test_unknown_node_is_ignored_by_pyg_but_kept_by_networkx():
    kg = KnowledgeGraph("https://example.org/kg/x/")
    kg.add_class("A")
    kg.graph.add((kg.node("class", "A"), RDFS.seeAlso, URIRef("https://example.org/elsewhere")))
    assert kg.to_pyg()["class"].num_nodes == 1
    assert KnowledgeGraph.from_networkx(kg.to_networkx()).isomorphic(kg)
