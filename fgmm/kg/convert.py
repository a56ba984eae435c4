"""Knowledge graph ⇄ networkx, and knowledge graph → PyTorch Geometric / a class × attribute matrix.

networkx keeps everything (exact round trip for graphs that pass ``validate()``): nodes are IRIs
with ``kind`` (``class``/``attribute``/``group``/``part``), ``name`` and, where the RDF holds one
plain value, ``label``, ``description``, ``rank``, ``scientific_name``, ``index``; edges carry
``kind`` (``has_attribute`` with ``weight`` = strength and ``link`` = link IRI, ``in_group``,
``of_part``, ``subclass_of``); every other triple travels as N-Triples lines in
``G.graph["rdf_extra"]``.

PyG gets the learning view: three node types and three edge types (see :func:`to_pyg`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rdflib import Graph, Literal, URIRef
from rdflib.namespace import DCTERMS, RDF, RDFS, XSD
from rdflib.util import from_n3

from fgmm.errors import ConfigError, DataError
from fgmm.kg.graph import KnowledgeGraph, new_graph
from fgmm.kg.vocab import DEFAULT_BASE, DWC, FGMM, KINDS, link_iri, mint, name_of, strength_literal

#: node types of the PyG views, in the order of their ``node_type`` ids
NODE_TYPES: tuple[str, ...] = ("class", "attribute", "part")

#: edge types of the PyG views, in the order of their ``edge_type`` ids (directed as written)
EDGE_TYPES: tuple[tuple[str, str, str], ...] = (
    ("class", "has_attribute", "attribute"),
    ("attribute", "of_part", "part"),
    ("class", "subclass_of", "class"),
)

#: networkx node attribute → (predicate, datatype of the plain literal, or None for xsd:string)
NODE_FIELDS: dict[str, tuple[URIRef, URIRef | None]] = {
    "label": (RDFS.label, None),
    "description": (DCTERMS.description, None),
    "rank": (DWC.taxonRank, None),
    "scientific_name": (DWC.scientificName, None),
    "index": (FGMM.index, XSD.integer),
}

#: networkx edge kind → (predicate, source kind, target kind) for the unweighted structure
STRUCTURE: dict[str, tuple[URIRef, str, str]] = {
    "subclass_of": (RDFS.subClassOf, "class", "class"),
    "in_group": (FGMM.inGroup, "attribute", "group"),
    "of_part": (FGMM.ofPart, "group", "part"),
}


# ---------------------------------------------------------------------------------------- networkx

def _plain(value: Any, datatype: URIRef | None) -> bool:
    """Whether ``value`` is a literal a networkx attribute holds exactly (no language, expected type)."""
    if not isinstance(value, Literal) or value.language is not None:
        return False
    if datatype is None:
        return value.datatype is None
    return value.datatype == datatype and Literal(value.toPython(), datatype=datatype) == value


def _one(graph: Graph, subject: URIRef, predicate: URIRef) -> Any:
    values = list(graph.objects(subject, predicate))
    return values[0] if len(values) == 1 else None


def to_networkx(kg: KnowledgeGraph):
    """The graph as a ``networkx.DiGraph`` (see the module docstring for its attributes)."""
    import networkx as nx

    g = kg.graph
    out = nx.DiGraph(base=kg.base, namespaces={p: str(n) for p, n in g.namespaces()})
    kinds: dict[URIRef, str] = {}
    used: set[tuple] = set()
    for kind in ("class", "attribute", "group", "part"):
        for node in kg.nodes(kind):
            if node in kinds:
                continue  # a node typed twice keeps its first kind; the other type triple is extra
            kinds[node] = kind
            used.add((node, RDF.type, KINDS[kind][0]))
            attrs: dict[str, Any] = {"kind": kind, "name": name_of(node)}
            for key, (predicate, datatype) in NODE_FIELDS.items():
                value = _one(g, node, predicate)
                if value is not None and _plain(value, datatype):
                    attrs[key] = value.toPython() if datatype is not None else str(value)
                    used.add((node, predicate, value))
            out.add_node(str(node), **attrs)
    for edge_kind, (predicate, source_kind, target_kind) in STRUCTURE.items():
        for s, o in g.subject_objects(predicate):
            if kinds.get(s) == source_kind and kinds.get(o) == target_kind:
                out.add_edge(str(s), str(o), kind=edge_kind)
                used.add((s, predicate, o))
    for link in g.subjects(RDF.type, FGMM.AttributeLink):
        class_iri, attribute_iri = _one(g, link, FGMM.linkClass), _one(g, link, FGMM.linkAttribute)
        strength = _one(g, link, FGMM.strength)
        if (kinds.get(class_iri) != "class" or kinds.get(attribute_iri) != "attribute"
                or not isinstance(strength, Literal) or out.has_edge(str(class_iri), str(attribute_iri))):
            continue
        try:
            weight = float(strength.toPython())
        except (TypeError, ValueError):
            continue
        attrs = {"kind": "has_attribute", "weight": weight, "link": str(link)}
        if strength != strength_literal(weight):
            attrs["strength_literal"] = strength.n3()
        out.add_edge(str(class_iri), str(attribute_iri), **attrs)
        used.update({(link, RDF.type, FGMM.AttributeLink), (link, FGMM.linkClass, class_iri),
                     (link, FGMM.linkAttribute, attribute_iri), (link, FGMM.strength, strength),
                     (class_iri, FGMM.hasAttribute, attribute_iri)})
    out.graph["rdf_extra"] = sorted(f"{s.n3()} {p.n3()} {o.n3()} ." for s, p, o in g if (s, p, o) not in used)
    return out


def _node_iri(node: Any, data: dict, base: str) -> URIRef:
    text = str(node)
    if text.startswith(("http://", "https://")):
        return URIRef(text)
    return mint(base, data["kind"], text)


def from_networkx(graph) -> KnowledgeGraph:
    """A :class:`KnowledgeGraph` from a networkx graph made by :func:`to_networkx` or by hand.

    Hand-made graphs need a ``kind`` on every node (``class``, ``attribute``, ``group`` or
    ``part``); nodes that are not IRIs are named by their key in the namespace ``graph.graph["base"]``.
    Edges need ``kind`` unless the node kinds make it plain; ``has_attribute`` edges need ``weight``.

    Raises:
        DataError: a node or edge that cannot be read, naming it.
    """
    base = graph.graph.get("base", DEFAULT_BASE)
    kg = KnowledgeGraph(base, graph=new_graph())
    g = kg.graph
    for prefix, namespace in graph.graph.get("namespaces", {}).items():
        g.bind(prefix, namespace, override=True, replace=True)
    iris: dict[Any, URIRef] = {}
    kinds: dict[Any, str] = {}
    for node, data in graph.nodes(data=True):
        if data.get("kind") not in ("class", "attribute", "group", "part"):
            raise DataError(None, f"networkx node '{node}' needs a 'kind' of class, attribute, group or part")
        iri = iris[node] = _node_iri(node, data, base)
        kinds[node] = data["kind"]
        g.add((iri, RDF.type, KINDS[data["kind"]][0]))
        for key, (predicate, datatype) in NODE_FIELDS.items():
            if data.get(key) is not None:
                g.add((iri, predicate, Literal(data[key], datatype=datatype)))
    by_kinds = {(source, target): kind for kind, (_, source, target) in STRUCTURE.items()}
    by_kinds["class", "attribute"] = "has_attribute"
    for source, target, data in graph.edges(data=True):
        edge_kind = data.get("kind") or by_kinds.get((kinds[source], kinds[target]))
        s, o = iris[source], iris[target]
        if edge_kind == "has_attribute":
            if kinds[source] != "class" or kinds[target] != "attribute":
                raise DataError(None, f"has_attribute edge {source} -> {target} must join a class to an "
                                      "attribute")
            weight = data.get("weight")
            if not isinstance(weight, int | float) or not 0.0 <= float(weight) <= 1.0:
                raise DataError(None, f"has_attribute edge {source} -> {target} needs a 'weight' in [0, 1], "
                                      f"got {weight!r}")
            link = URIRef(data["link"]) if "link" in data else link_iri(base, s, o)
            strength = (from_n3(data["strength_literal"]) if "strength_literal" in data
                        else strength_literal(float(weight)))
            for triple in ((link, RDF.type, FGMM.AttributeLink), (link, FGMM.linkClass, s),
                           (link, FGMM.linkAttribute, o), (link, FGMM.strength, strength),
                           (s, FGMM.hasAttribute, o)):
                g.add(triple)
        elif edge_kind in STRUCTURE and (kinds[source], kinds[target]) == STRUCTURE[edge_kind][1:]:
            g.add((s, STRUCTURE[edge_kind][0], o))
        else:
            raise DataError(None, f"networkx edge {source} -> {target} ({kinds[source]} -> {kinds[target]}, "
                                  f"kind {edge_kind!r}) is not an fgmm relation")
    extra = graph.graph.get("rdf_extra", [])
    if extra:
        for triple in Graph().parse(data="\n".join(extra), format="nt"):
            g.add(triple)
    return kg


# ---------------------------------------------------------------------------------------- PyG

@dataclass
class _Layout:
    """Node lists of the PyG views, dataset labels first among the classes."""

    classes: list[URIRef]
    attributes: list[URIRef]
    parts: list[URIRef]
    groups: list[URIRef]
    label_index: list[int]
    is_leaf: list[bool]


def dataset_classes(kg: KnowledgeGraph, class_order: Sequence[str] | None) -> list[URIRef]:
    """The class nodes of the dataset labels ``0..L-1``: ``class_order`` resolved, or the leaf classes.

    Raises:
        ConfigError: a name of ``class_order`` is not a class of the graph, or appears twice.
    """
    if class_order is None:
        classes = kg.nodes("class")
        parents = _parents(kg, set(classes))
        return [c for c in classes if c not in parents]
    nodes, seen = [], {}
    for name in class_order:
        node = kg.find("class", name)
        if node is None:
            raise ConfigError(f"class '{name}' of the class order is not in the knowledge graph "
                              f"{kg.path or kg.base}")
        if node in seen:
            raise ConfigError(f"class order names '{seen[node]}' and '{name}', which are the same class "
                              f"{node}")
        seen[node] = name
        nodes.append(node)
    return nodes


def _parents(kg: KnowledgeGraph, classes: set[URIRef]) -> set[URIRef]:
    """The classes some other class is a direct subclass of (the non-leaves)."""
    return {o for s, o in kg.graph.subject_objects(RDFS.subClassOf) if s in classes and o in classes}


def _layout(kg: KnowledgeGraph, class_order: Sequence[str] | None) -> _Layout:
    labelled = dataset_classes(kg, class_order)
    chosen = set(labelled)
    classes = labelled + [c for c in kg.nodes("class") if c not in chosen]
    parents = _parents(kg, set(classes))
    label_index = list(range(len(labelled))) + [-1] * (len(classes) - len(labelled))
    return _Layout(classes=classes, attributes=kg.nodes("attribute"), parts=kg.nodes("part"),
                   groups=kg.nodes("group"), label_index=label_index,
                   is_leaf=[c not in parents for c in classes])


def _edges(kg: KnowledgeGraph, layout: _Layout) -> dict[tuple[str, str, str], tuple[torch.Tensor, ...]]:
    """Edge index ``[2, E]`` and weight ``[E]`` per edge type."""
    class_id = {c: i for i, c in enumerate(layout.classes)}
    attribute_id = {a: i for i, a in enumerate(layout.attributes)}
    part_id = {p: i for i, p in enumerate(layout.parts)}
    g = kg.graph
    links = [(class_id[c], attribute_id[a], s) for _, c, a, s in kg.link_rows()
             if c in class_id and a in attribute_id]
    part_of_group = {grp: p for grp, p in g.subject_objects(FGMM.ofPart) if p in part_id}
    of_part = [(attribute_id[a], part_id[part_of_group[grp]]) for a, grp in g.subject_objects(FGMM.inGroup)
               if a in attribute_id and grp in part_of_group]
    subclass = [(class_id[s], class_id[o]) for s, o in g.subject_objects(RDFS.subClassOf)
                if s in class_id and o in class_id]

    def pack(pairs: list[tuple], weights: list[float] | None) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = sorted(pairs)
        index = torch.tensor([[p[0] for p in pairs], [p[1] for p in pairs]], dtype=torch.long).reshape(2, -1)
        weight = torch.tensor([p[2] for p in pairs] if weights is None else weights, dtype=torch.float32)
        return index, weight

    return {
        EDGE_TYPES[0]: pack(links, None),
        EDGE_TYPES[1]: pack(of_part, [1.0] * len(of_part)),
        EDGE_TYPES[2]: pack(subclass, [1.0] * len(subclass)),
    }


def to_pyg(kg: KnowledgeGraph, hetero: bool = True, class_order: Sequence[str] | None = None,
           features: bool = False, encoder: Any = None, cache: Any = None):
    r"""The knowledge graph as a PyTorch Geometric ``HeteroData`` (or homogeneous ``Data``).

    **Heterogeneous** (``hetero=True``), the contract GNN code relies on:

    * ``data["class"]``: every ``fgmm:Class``, taxa (genera, families, ...) included. The first
      ``L`` class nodes are the dataset classes in label order (``class_order`` when given, else
      the leaf classes ordered by ``fgmm:index`` then name); the others follow by index/name.

      - ``names`` (list[str], node names), ``iris`` (list[str])
      - ``is_leaf`` ``bool [C]``: no class is a subclass of it
      - ``label_index`` ``long [C]``: dataset label ``0..L-1`` of the first ``L`` nodes, ``-1`` for
        the rest
    * ``data["attribute"]``: every ``fgmm:Attribute``; ``names``, ``iris``, ``group`` ``long [A]``
      (index into ``data.group_names``, ``-1`` when ungrouped).
    * ``data["part"]``: every ``fgmm:Part``; ``names``, ``iris``.
    * ``data["class", "has_attribute", "attribute"]``: ``edge_index [2, E]``, ``edge_weight [E]``
      = link strength in ``[0, 1]``.
    * ``data["attribute", "of_part", "part"]``: attribute → the part of its group;
      ``edge_weight`` = 1.
    * ``data["class", "subclass_of", "class"]``: child → parent; ``edge_weight`` = 1.
    * ``data.group_names``: names of the attribute groups.
    * ``x`` per node type only when ``features=True``: ``float [N, D]`` text embeddings of the
      node's label and description (:func:`fgmm.kg.features.text_node_features`).

    Edges are directed as listed; apply ``torch_geometric.transforms.ToUndirected`` for message
    passing both ways. Edges are sorted by (source, target), so the output is deterministic.

    **Homogeneous** (``hetero=False``): one ``Data`` with nodes ordered classes, attributes, parts;
    ``node_type long [N]`` (index into :data:`NODE_TYPES`), ``x`` = one-hot node type ``[N, 3]``
    (followed by the text embedding when ``features=True``), ``edge_index``, ``edge_weight``,
    ``edge_type long [E]`` (index into :data:`EDGE_TYPES`), ``is_leaf [N]`` and
    ``label_index [N]`` (``False``/``-1`` off class nodes), ``names``, ``iris``,
    ``node_type_names`` and ``edge_type_names``.

    Args:
        kg: the knowledge graph.
        hetero: heterogeneous (default) or homogeneous output.
        class_order: dataset class names (node names, labels or IRIs) in label order.
        features: attach text-embedding node features.
        encoder: the text encoder for ``features`` (default: the offline all-MiniLM-L6-v2).
        cache: a :class:`fgmm.cache.FeatureCache` or folder caching the text embeddings.

    Raises:
        ConfigError: a class of ``class_order`` is not in the graph (named).
    """
    from fgmm._pyg import import_pyg

    import_pyg()
    from torch_geometric.data import Data, HeteroData

    layout = _layout(kg, class_order)
    nodes = {"class": layout.classes, "attribute": layout.attributes, "part": layout.parts}
    edges = _edges(kg, layout)
    group_id = {grp: i for i, grp in enumerate(layout.groups)}
    group_of = dict(kg.graph.subject_objects(FGMM.inGroup))
    attribute_group = torch.tensor([group_id.get(group_of.get(a), -1) for a in layout.attributes],
                                   dtype=torch.long)
    text = None
    if features:
        from fgmm.kg.features import text_node_features

        text = text_node_features(kg, nodes, encoder=encoder, cache=cache)
    if hetero:
        data = HeteroData()
        for node_type, members in nodes.items():
            store = data[node_type]
            store.num_nodes = len(members)
            store.names = [name_of(n) for n in members]
            store.iris = [str(n) for n in members]
            if text is not None:
                store.x = text[node_type]
        data["class"].is_leaf = torch.tensor(layout.is_leaf, dtype=torch.bool)
        data["class"].label_index = torch.tensor(layout.label_index, dtype=torch.long)
        data["attribute"].group = attribute_group
        data.group_names = [name_of(grp) for grp in layout.groups]
        for edge_type, (index, weight) in edges.items():
            data[edge_type].edge_index = index
            data[edge_type].edge_weight = weight
        return data
    counts = [len(nodes[t]) for t in NODE_TYPES]
    offsets = dict(zip(NODE_TYPES, np.cumsum([0, *counts[:-1]]).tolist(), strict=True))
    node_type = torch.cat([torch.full((n,), i, dtype=torch.long) for i, n in enumerate(counts)])
    x = torch.nn.functional.one_hot(node_type, len(NODE_TYPES)).float()
    if text is not None:
        x = torch.cat([x, torch.cat([text[t] for t in NODE_TYPES])], dim=1)
    rest = sum(counts) - counts[0]
    edge_index, edge_weight, edge_type = [], [], []
    for i, ((src, _, dst), (index, weight)) in enumerate(edges.items()):
        edge_index.append(index + torch.tensor([[offsets[src]], [offsets[dst]]]))
        edge_weight.append(weight)
        edge_type.append(torch.full((weight.numel(),), i, dtype=torch.long))
    return Data(
        x=x, node_type=node_type, num_nodes=sum(counts), edge_index=torch.cat(edge_index, dim=1),
        edge_weight=torch.cat(edge_weight), edge_type=torch.cat(edge_type),
        is_leaf=torch.cat([torch.tensor(layout.is_leaf, dtype=torch.bool),
                           torch.zeros(rest, dtype=torch.bool)]),
        label_index=torch.cat([torch.tensor(layout.label_index, dtype=torch.long),
                               torch.full((rest,), -1, dtype=torch.long)]),
        names=[name_of(n) for t in NODE_TYPES for n in nodes[t]],
        iris=[str(n) for t in NODE_TYPES for n in nodes[t]],
        node_type_names=list(NODE_TYPES), edge_type_names=[list(t) for t in EDGE_TYPES],
    )


def class_attribute_matrix(kg: KnowledgeGraph, class_order: Sequence[str] | None = None
                           ) -> tuple[np.ndarray, list[str], list[str]]:
    """The ``[C, A]`` float64 strength matrix (0 where no link) of the dataset classes.

    Rows follow ``class_order`` (default: the leaf classes, as in :func:`to_pyg`); columns are the
    attributes ordered by ``fgmm:index`` then name. Returns ``(matrix, class_names, attribute_names)``.
    """
    classes = dataset_classes(kg, class_order)
    attributes = kg.nodes("attribute")
    row = {c: i for i, c in enumerate(classes)}
    col = {a: j for j, a in enumerate(attributes)}
    matrix = np.zeros((len(classes), len(attributes)), dtype=np.float64)
    for _, class_iri, attribute_iri, strength in kg.link_rows():
        if class_iri in row and attribute_iri in col:
            matrix[row[class_iri], col[attribute_iri]] = strength
    return matrix, [name_of(c) for c in classes], [name_of(a) for a in attributes]
