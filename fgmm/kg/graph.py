"""`KnowledgeGraph`: authoring, storing and querying fgmm knowledge graphs on rdflib.

The graph is plain RDF in the fgmm vocabulary (``knowledge/fgmm.ttl``, see :mod:`fgmm.kg.vocab`):
every operation here is a small, documented edit of triples, so what is saved is exactly what
``query()`` sees and what ``validate()`` checks. Names are the user-facing handles of nodes; a
name is looked up as an IRI, then as ``<namespace><kind>/<name>``, then as the name or label of a
node of that kind in any namespace (ignoring case, punctuation and a ``NNN.`` numeric prefix), so
``"001.Black_footed_Albatross"``, ``"Black-footed Albatross"`` and ``"black footed albatross"``
reach the same CUB class.

Example::

    kg = KnowledgeGraph("https://example.org/kg/birds/", title="my birds")
    kg.add_class("Laridae", rank="family")
    kg.add_class("Herring_Gull", label="Herring Gull", parent="Laridae", rank="species")
    kg.add_attribute("bill_color::yellow", group="bill_color", part="bill")
    kg.link("Herring_Gull", "bill_color::yellow", 0.93)
    kg.save("birds.ttl")
    assert KnowledgeGraph.load("birds.ttl").isomorphic(kg)
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rdflib import Graph, Literal, URIRef
from rdflib.compare import isomorphic
from rdflib.namespace import DCTERMS, PROV, RDF, RDFS, VOID
from rdflib.plugins.parsers.notation3 import BadSyntax

from fgmm.errors import ConfigError, DataError
from fgmm.io import write_bytes_atomic as write_atomic
from fgmm.kg.vocab import (
    DEFAULT_BASE,
    DWC,
    FGMM,
    KINDS,
    PREFIXES,
    SAFE,
    bind_kinds,
    check_base,
    link_iri,
    mint,
    name_of,
    strength_literal,
)

#: file suffix → rdflib serialisation format
FORMATS: dict[str, str] = {
    ".ttl": "turtle", ".turtle": "turtle", ".nt": "nt", ".ntriples": "nt", ".n3": "n3",
    ".jsonld": "json-ld", ".json": "json-ld", ".rdf": "xml", ".owl": "xml", ".xml": "xml", ".trig": "trig",
}

#: formats whose rdflib parsers need a context-aware store
QUAD_FORMATS = frozenset({"json-ld", "trig"})

#: how :meth:`KnowledgeGraph.merge` settles two different strengths of the same class → attribute link
MERGE_RULES: dict[str, Callable[[float, float], float]] = {
    "other": lambda mine, theirs: theirs,
    "self": lambda mine, theirs: mine,
    "max": max,
    "min": min,
    "mean": lambda mine, theirs: (mine + theirs) / 2.0,
}


def rdf_format(path: str | Path, fmt: str | None = None) -> str:
    """The rdflib format for ``path`` (from ``fmt`` when given, else from the file suffix)."""
    if fmt is not None:
        if fmt in FORMATS.values():
            return fmt
        if f".{fmt.lstrip('.')}" in FORMATS:
            return FORMATS[f".{fmt.lstrip('.')}"]
        choices = ", ".join(sorted(set(FORMATS.values())))
        raise ConfigError(f"unknown RDF format '{fmt}'; choose one of: {choices}")
    suffix = Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"cannot tell the RDF format of '{path}' from its suffix; use one of "
                          f"{', '.join(sorted(FORMATS))} or pass a format")
    return FORMATS[suffix]


def new_graph() -> Graph:
    """An empty rdflib graph on the in-memory store fgmm uses.

    ``SimpleMemory`` keeps no named-graph bookkeeping, which makes adding triples about a third
    faster than rdflib's default store; fgmm graphs have no named graphs. For graphs beyond a few
    million triples wrap a graph on a persistent store instead (``KnowledgeGraph(graph=...)``, e.g.
    ``rdflib.Graph(store="Oxigraph")`` from ``oxrdflib``).
    """
    return Graph(store="SimpleMemory")


def _normalised(text: str) -> str:
    """Lower-case alphanumeric words of ``text`` without a leading ``NNN.`` id (for lenient lookup)."""
    text = re.sub(r"^\d+\.", "", text)
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _first_bad_line(path: Path, fmt: str) -> int | None:
    """The first line of a line-based file (N-Triples) that does not parse on its own."""
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        try:
            Graph().parse(data=line, format=fmt)
        except Exception:
            return number
    return None


def _parse_error(path: Path, fmt: str, exc: Exception) -> DataError:
    """A :class:`DataError` with the file and, where the parser tells it, the line."""
    if isinstance(exc, BadSyntax):
        why = re.sub(r"\s+", " ", exc._why).strip()
        return DataError(path, f"malformed RDF: {why}", exc.lines + 1)
    if isinstance(exc, json.JSONDecodeError):
        return DataError(path, f"malformed JSON-LD: {exc.msg}", exc.lineno)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    found = re.search(r"line:? (\d+)", message)
    line = int(found.group(1)) if found else _first_bad_line(path, fmt) if fmt == "nt" else None
    return DataError(path, f"malformed RDF: {message}", line)


@dataclass
class StrengthConflict:
    """One class → attribute link that two merged graphs weigh differently."""

    class_name: str
    attribute_name: str
    mine: float
    theirs: float
    kept: float


@dataclass
class MergeReport:
    """What :meth:`KnowledgeGraph.merge` did: triples added and strength conflicts settled."""

    added_triples: int
    rule: str
    conflicts: list[StrengthConflict] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"merged: {self.added_triples} triples added, {len(self.conflicts)} strength conflicts "
                 f"(rule '{self.rule}')"]
        lines += [f"  {c.class_name} -> {c.attribute_name}: {c.mine:g} vs {c.theirs:g}, kept {c.kept:g}"
                  for c in self.conflicts]
        return "\n".join(lines)


class KnowledgeGraph:
    """An fgmm knowledge graph: classes, taxonomy, attributes, groups, parts and weighted links.

    Args:
        base: namespace of this graph's own nodes (an http(s) IRI ending in ``/`` or ``#``); the
            graph describes itself as a ``void:Dataset`` with this IRI.
        title: ``dcterms:title`` of the dataset node.
        source: ``dcterms:source`` of the dataset node (where the knowledge comes from).
        graph: wrap an existing rdflib graph instead of starting an empty one (no triples added).
        path: the file the graph was read from, used in error messages.
    """

    def __init__(self, base: str = DEFAULT_BASE, title: str | None = None, source: str | None = None,
                 graph: Graph | None = None, path: str | Path | None = None):
        self.base = check_base(base)
        self.path = Path(path) if path is not None else None
        self.graph = graph if graph is not None else new_graph()
        for prefix, namespace in PREFIXES.items():
            self.graph.bind(prefix, namespace, override=False)
        if graph is None:
            bind_kinds(self.graph, self.base)
            self.graph.add((self.dataset, RDF.type, VOID.Dataset))
        if title is not None:
            self.graph.set((self.dataset, DCTERMS.title, Literal(title)))
        if source is not None:
            self.graph.add((self.dataset, DCTERMS.source, Literal(source)))

    # ------------------------------------------------------------------ files

    @property
    def dataset(self) -> URIRef:
        """The ``void:Dataset`` node describing this graph (its IRI is the namespace)."""
        return URIRef(self.base)

    @classmethod
    def load(cls, path: str | Path, format: str | None = None, base: str | None = None) -> KnowledgeGraph:
        """Read a Turtle, N-Triples, JSON-LD (or other rdflib) file.

        The namespace is ``base`` when given, else the graph's own ``void:Dataset`` (the one no
        other dataset was derived from), else :data:`~fgmm.kg.vocab.DEFAULT_BASE`.

        Raises:
            DataError: the file is missing or malformed (with the line when the parser gives it).
        """
        path = Path(path)
        fmt = rdf_format(path, format)
        if not path.is_file():
            raise DataError(path, "knowledge graph file does not exist")
        graph = new_graph()
        try:
            if fmt in QUAD_FORMATS:  # their parsers need a context-aware store; keep the default graph
                parsed = Graph()
                parsed.parse(path, format=fmt)
                for prefix, namespace in parsed.namespaces():
                    graph.bind(prefix, namespace, override=True, replace=True)
                for triple in parsed:
                    graph.add(triple)
            else:
                graph.parse(path, format=fmt)
        except Exception as exc:  # rdflib parsers raise many types (BadSyntax, ParseError, JSONDecodeError)
            raise _parse_error(path, fmt, exc) from None
        if base is None:
            datasets = {s for s in graph.subjects(RDF.type, VOID.Dataset) if isinstance(s, URIRef)}
            derived = set(graph.objects(None, PROV.wasDerivedFrom))
            own = sorted((d for d in datasets - derived if str(d)[-1:] in "/#"), key=str)
            base = str(own[0]) if own else DEFAULT_BASE
        return cls(base, graph=graph, path=path)

    def save(self, path: str | Path, format: str | None = None) -> Path:
        """Write the graph atomically (temporary file + ``os.replace``); the format follows the suffix."""
        path = Path(path)
        fmt = rdf_format(path, format)
        data = self.graph.serialize(format=fmt, encoding="utf-8")
        write_atomic(path, data)
        return path

    def copy(self) -> KnowledgeGraph:
        graph = new_graph()
        for prefix, namespace in self.graph.namespaces():
            graph.bind(prefix, namespace, override=True, replace=True)
        for triple in self.graph:
            graph.add(triple)
        return KnowledgeGraph(self.base, graph=graph, path=self.path)

    def isomorphic(self, other: KnowledgeGraph) -> bool:
        """Whether both graphs hold the same triples (up to blank-node renaming)."""
        return isomorphic(self.graph, other.graph)

    def __len__(self) -> int:
        return len(self.graph)

    def __repr__(self) -> str:
        s = self.stats()
        return (f"KnowledgeGraph({self.base!r}: {s['classes']} classes, {s['attributes']} attributes, "
                f"{s['links']} links)")

    # ------------------------------------------------------------------ lookup

    def _error(self, problem: str) -> ConfigError:
        where = f"{self.path}: " if self.path is not None else ""
        return ConfigError(f"{where}{problem}")

    def find(self, kind: str, name: str | URIRef) -> URIRef | None:
        """The IRI of the ``kind`` node called ``name`` (see the module docstring), or ``None``."""
        rdf_type = KINDS[kind][0]
        text = str(name)
        if text.startswith(("http://", "https://")):
            iri = URIRef(text)
            return iri if (iri, RDF.type, rdf_type) in self.graph else None
        iri = mint(self.base, kind, text)
        if (iri, RDF.type, rdf_type) in self.graph:
            return iri
        candidates = {s: [name_of(s), *map(str, self.graph.objects(s, RDFS.label))]
                      for s in self.graph.subjects(RDF.type, rdf_type, unique=True)}
        hits = [s for s, keys in candidates.items() if keys[0] == text]
        hits = hits or [s for s, keys in candidates.items() if text in keys[1:]]
        if len(hits) == 1:
            return hits[0]
        wanted = _normalised(text)
        hits = hits or [s for s, keys in candidates.items() if wanted in map(_normalised, keys)]
        if len(hits) > 1:
            raise self._error(f"{kind} name '{text}' is ambiguous: {', '.join(sorted(map(name_of, hits)))}")
        return hits[0] if hits else None

    def node(self, kind: str, name: str | URIRef) -> URIRef:
        """Like :meth:`find` but raises :class:`ConfigError` naming the unknown node."""
        iri = self.find(kind, name)
        if iri is None:
            raise self._error(f"unknown {kind} '{name}'")
        return iri

    def nodes(self, kind: str) -> list[URIRef]:
        """All nodes of ``kind`` ordered by ``fgmm:index`` (when present), then by name."""
        index = {node: value for node, value in self.graph.subject_objects(FGMM.index)
                 if isinstance(value, Literal) and isinstance(value.value, int)}

        def key(node: URIRef) -> tuple[float, str, str]:
            return (index[node].value if node in index else math.inf, name_of(node), str(node))

        return sorted(self.graph.subjects(RDF.type, KINDS[kind][0], unique=True), key=key)

    def names(self, kind: str) -> list[str]:
        return [name_of(n) for n in self.nodes(kind)]

    def classes(self, leaves_only: bool = False) -> list[str]:
        """Class names; ``leaves_only`` keeps classes no other class is a subclass of."""
        nodes = self.nodes("class")
        if leaves_only:
            nodes = [n for n in nodes if not self._children(n)]
        return [name_of(n) for n in nodes]

    def attributes(self) -> list[str]:
        return self.names("attribute")

    def groups(self) -> list[str]:
        return self.names("group")

    def parts(self) -> list[str]:
        return self.names("part")

    def label(self, iri: URIRef) -> str:
        """The ``rdfs:label`` of a node (its name when it has none)."""
        value = self.graph.value(iri, RDFS.label)
        return str(value) if value is not None else name_of(iri)

    def describe(self, kind: str, name: str) -> dict[str, Any]:
        """Everything about one node: name, IRI, label, description and its kind's relations."""
        iri = self.node(kind, name)
        out: dict[str, Any] = {"kind": kind, "name": name_of(iri), "iri": str(iri), "label": self.label(iri),
                               "description": _text_or_none(self.graph.value(iri, DCTERMS.description))}
        if kind == "class":
            out.update(rank=_text_or_none(self.graph.value(iri, DWC.taxonRank)),
                       scientific_name=_text_or_none(self.graph.value(iri, DWC.scientificName)),
                       parents=[name_of(p) for p in self._parents(iri)],
                       children=[name_of(c) for c in self._children(iri)],
                       lineage=[name_of(n) for n in self.lineage(iri)],
                       links=len(list(self.graph.subjects(FGMM.linkClass, iri))))
        elif kind == "attribute":
            group = self.graph.value(iri, FGMM.inGroup)
            part = self.graph.value(group, FGMM.ofPart) if group is not None else None
            out.update(group=_name_or_none(group), part=_name_or_none(part))
        elif kind == "group":
            out.update(part=_name_or_none(self.graph.value(iri, FGMM.ofPart)),
                       attributes=[name_of(a) for a in self.graph.subjects(FGMM.inGroup, iri)])
        return out

    # ------------------------------------------------------------------ taxonomy

    def _parents(self, iri: URIRef) -> list[URIRef]:
        return sorted((p for p in self.graph.objects(iri, RDFS.subClassOf) if isinstance(p, URIRef)), key=str)

    def _children(self, iri: URIRef) -> list[URIRef]:
        return sorted((c for c in self.graph.subjects(RDFS.subClassOf, iri)
                       if (c, RDF.type, FGMM.Class) in self.graph), key=str)

    def children(self, name: str | URIRef) -> list[URIRef]:
        """The classes that are a direct ``rdfs:subClassOf`` the class ``name``."""
        return self._children(self.node("class", name))

    def lineage(self, name: str | URIRef) -> list[URIRef]:
        """The class and its ancestors up to a root, following the first parent at each step."""
        path = [self.node("class", name)]
        while True:
            parents = [p for p in self._parents(path[-1]) if p not in path]
            if not parents:
                return path
            path.append(parents[0])

    def set_parent(self, name: str, parent: str | None) -> None:
        """Make ``parent`` the only superclass of ``name`` (``None``: make it a root)."""
        iri = self.node("class", name)
        self.graph.remove((iri, RDFS.subClassOf, None))
        if parent is None:
            return
        parent_iri = self.node("class", parent)
        ancestors = self._ancestors(parent_iri)
        if iri == parent_iri or iri in ancestors:
            raise self._error(f"making '{parent}' the parent of '{name}' would create a taxonomy cycle")
        self.graph.add((iri, RDFS.subClassOf, parent_iri))

    def _ancestors(self, iri: URIRef) -> set[URIRef]:
        seen: set[URIRef] = set()
        todo = [iri]
        while todo:
            for parent in self._parents(todo.pop()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    # ------------------------------------------------------------------ authoring

    def _add_node(self, kind: str, name: str, label: str | None, description: str | None,
                  index: int | None = None) -> URIRef:
        iri = mint(self.base, kind, name)
        if (iri, RDF.type, KINDS[kind][0]) in self.graph:
            raise self._error(f"{kind} '{name}' already exists")
        self.graph.add((iri, RDF.type, KINDS[kind][0]))
        self.graph.add((iri, RDFS.label, Literal(label if label is not None else name)))
        if description:
            self.graph.add((iri, DCTERMS.description, Literal(description)))
        if index is not None:
            self.graph.add((iri, FGMM.index, Literal(int(index))))
        return iri

    def add_class(self, name: str, label: str | None = None, parent: str | None = None,
                  description: str | None = None, rank: str | None = None,
                  scientific_name: str | None = None, index: int | None = None) -> URIRef:
        """Add a class (a species or a taxon) under an existing ``parent`` class.

        Args:
            name: identifier, unique among classes (the last segment of its IRI).
            label: human-readable name (default: ``name``).
            parent: an existing class this one is a ``rdfs:subClassOf``.
            description: free text (``dcterms:description``), embedded for node features.
            rank: taxonomic rank (``dwc:taxonRank``: "species", "genus", "family", "order", ...).
            scientific_name: ``dwc:scientificName``.
            index: position in the dataset's class list (sort key).
        """
        parent_iri = self.node("class", parent) if parent is not None else None
        iri = self._add_node("class", name, label, description, index)
        if parent_iri is not None:
            self.graph.add((iri, RDFS.subClassOf, parent_iri))
        if rank:
            self.graph.add((iri, DWC.taxonRank, Literal(rank)))
        if scientific_name:
            self.graph.add((iri, DWC.scientificName, Literal(scientific_name)))
        return iri

    def add_part(self, name: str, label: str | None = None, description: str | None = None) -> URIRef:
        """Add a body part (e.g. ``bill``) that attribute groups concern."""
        return self._add_node("part", name, label, description)

    def add_group(self, name: str, part: str | None = None, label: str | None = None,
                  description: str | None = None) -> URIRef:
        """Add an attribute group (e.g. ``has_bill_shape``) about ``part`` (created when missing)."""
        part_iri = None
        if part is not None:
            part_iri = self.find("part", part) or self.add_part(part)
        iri = self._add_node("group", name, label, description)
        if part_iri is not None:
            self.graph.add((iri, FGMM.ofPart, part_iri))
        return iri

    def add_attribute(self, name: str, group: str, label: str | None = None, description: str | None = None,
                      part: str | None = None, index: int | None = None) -> URIRef:
        """Add an attribute in ``group``; a missing group is created (about ``part`` when given)."""
        group_iri = self.find("group", group)
        if group_iri is None:
            group_iri = self.add_group(group, part=part)
        elif part is not None and self.graph.value(group_iri, FGMM.ofPart) != self.find("part", part):
            raise self._error(f"group '{group}' is not about part '{part}'")
        iri = self._add_node("attribute", name, label, description, index)
        self.graph.add((iri, FGMM.inGroup, group_iri))
        return iri

    def link(self, class_name: str, attribute_name: str, strength: float) -> URIRef:
        """Say that ``class_name`` has ``attribute_name`` with ``strength`` in ``[0, 1]`` (replacing any)."""
        return self.link_many([(class_name, attribute_name, strength)])[0]

    def link_many(self, rows: Iterable[tuple[str | URIRef, str | URIRef, float]]) -> list[URIRef]:
        """Link many (class, attribute, strength) rows; returns the link nodes.

        Raises:
            ConfigError: naming the row whose class or attribute is unknown or whose strength is
                not a number in ``[0, 1]``; nothing is added then.
        """
        resolved: dict[tuple[str, str], URIRef] = {}

        def resolve(kind: str, name: str | URIRef) -> URIRef:
            key = (kind, str(name))
            if key not in resolved:
                resolved[key] = self.node(kind, name)
            return resolved[key]

        prepared = []
        for class_name, attribute_name, strength in rows:
            class_iri, attribute_iri = resolve("class", class_name), resolve("attribute", attribute_name)
            try:
                value = float(strength)
            except (TypeError, ValueError):
                value = math.nan
            if not 0.0 <= value <= 1.0:
                raise self._error(f"strength {strength!r} of {class_name} -> {attribute_name} "
                                  "is not a number in [0, 1]")
            prepared.append((class_iri, attribute_iri, strength_literal(value)))
        links = []
        add = self.graph.add
        link_type, link_class, link_attribute = FGMM.AttributeLink, FGMM.linkClass, FGMM.linkAttribute
        has_attribute, strength_predicate = FGMM.hasAttribute, FGMM.strength
        for class_iri, attribute_iri, literal in prepared:
            link = self._link_node(class_iri, attribute_iri)
            if link is None:
                link = link_iri(self.base, class_iri, attribute_iri)
                add((link, RDF.type, link_type))
                add((link, link_class, class_iri))
                add((link, link_attribute, attribute_iri))
                add((class_iri, has_attribute, attribute_iri))
                add((link, strength_predicate, literal))
            else:
                self.graph.set((link, strength_predicate, literal))
            links.append(link)
        return links

    def _link_node(self, class_iri: URIRef, attribute_iri: URIRef) -> URIRef | None:
        if (class_iri, FGMM.hasAttribute, attribute_iri) not in self.graph:
            return None
        candidate = link_iri(self.base, class_iri, attribute_iri)
        if (candidate, FGMM.linkClass, class_iri) in self.graph:
            return candidate
        for link in self.graph.subjects(FGMM.linkClass, class_iri):
            if (link, FGMM.linkAttribute, attribute_iri) in self.graph:
                return link
        return None

    def unlink(self, class_name: str, attribute_name: str) -> None:
        """Remove the link between a class and an attribute (and its ``fgmm:hasAttribute``)."""
        class_iri, attribute_iri = self.node("class", class_name), self.node("attribute", attribute_name)
        link = self._link_node(class_iri, attribute_iri)
        if link is None:
            raise self._error(f"class '{class_name}' has no link to attribute '{attribute_name}'")
        self.graph.remove((link, None, None))
        self.graph.remove((class_iri, FGMM.hasAttribute, attribute_iri))

    def strength(self, class_name: str, attribute_name: str) -> float | None:
        """The strength of a link, or ``None`` when the class has no link to the attribute."""
        link = self._link_node(self.node("class", class_name), self.node("attribute", attribute_name))
        return None if link is None else self._strength_value(link, self.graph.value(link, FGMM.strength))

    def _strength_value(self, link: URIRef, literal: Any) -> float:
        """The float of a link's strength literal; a missing or non-numeric one is a DataError."""
        value = literal.value if isinstance(literal, Literal) else None
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise DataError(self.path, f"link {link} has no numeric fgmm:strength (found {literal!r}); "
                                       "run validate() for a full report")
        return float(value)

    def link_rows(self) -> Iterator[tuple[URIRef, URIRef, URIRef, float]]:
        """Every link as ``(link node, class IRI, attribute IRI, strength)``.

        Raises:
            DataError: a link without a numeric strength (``validate()`` reports all problems).
        """
        attribute_of = dict(self.graph.subject_objects(FGMM.linkAttribute))
        strength_of = dict(self.graph.subject_objects(FGMM.strength))
        for link, class_iri in self.graph.subject_objects(FGMM.linkClass):
            if link in attribute_of:
                yield link, class_iri, attribute_of[link], self._strength_value(link, strength_of.get(link))

    def links(self, class_name: str | None = None) -> list[tuple[str, str, float]]:
        """``(class, attribute, strength)`` of every link (of one class when ``class_name`` is given)."""
        only = self.node("class", class_name) if class_name is not None else None
        rows = [(name_of(c), name_of(a), s) for _, c, a, s in self.link_rows() if only is None or c == only]
        return sorted(rows, key=lambda row: (row[0], -row[2], row[1]))

    def remove(self, kind: str, name: str) -> None:
        """Remove a node and every triple about it.

        A removed class takes its links with it and its subclasses are re-attached to its parents;
        a removed attribute takes its links; a group or part still in use is refused.
        """
        iri = self.node(kind, name)
        if kind == "group" and (None, FGMM.inGroup, iri) in self.graph:
            raise self._error(f"group '{name}' still has attributes; remove or regroup them first")
        if kind == "part" and (None, FGMM.ofPart, iri) in self.graph:
            raise self._error(f"part '{name}' is still used by attribute groups")
        if kind == "class":
            parents = self._parents(iri)
            for child in self._children(iri):
                for parent in parents:
                    self.graph.add((child, RDFS.subClassOf, parent))
        link_predicate = {"class": FGMM.linkClass, "attribute": FGMM.linkAttribute}.get(kind)
        if link_predicate is not None:
            for link in list(self.graph.subjects(link_predicate, iri)):
                self.graph.remove((link, None, None))
        self.graph.remove((iri, None, None))
        self.graph.remove((None, None, iri))

    def rename(self, kind: str, old: str, new: str) -> URIRef:
        """Give a node a new name (a new IRI in the same namespace); every reference follows.

        Links named ``<namespace>link/<class>/<attribute>`` (as fgmm mints them) are renamed too;
        other link IRIs are left as they are.
        """
        iri = self.node(kind, old)
        new_iri = URIRef(str(iri).rsplit("/", 1)[0] + "/" + quote(new, safe=SAFE))
        if (new_iri, None, None) in self.graph:
            raise self._error(f"cannot rename {kind} '{old}' to '{new}': that name is taken")
        ends = (FGMM.linkClass, FGMM.linkAttribute)
        minted = []
        if kind in ("class", "attribute"):
            for link in self.graph.subjects(ends[0] if kind == "class" else ends[1], iri):
                base = str(link).rsplit("/", 3)[0] + "/"
                if link == link_iri(base, *(self.graph.value(link, p) for p in ends)):
                    minted.append((link, base))
        self._replace(iri, new_iri)
        for link, base in minted:
            self._replace(link, link_iri(base, *(self.graph.value(link, p) for p in ends)))
        return new_iri

    def _replace(self, old: URIRef, new: URIRef) -> None:
        for s, p, o in list(self.graph.triples((old, None, None))):
            self.graph.remove((s, p, o))
            self.graph.add((new, p, o))
        for s, p, o in list(self.graph.triples((None, None, old))):
            self.graph.remove((s, p, o))
            self.graph.add((s, p, new))

    # ------------------------------------------------------------------ merge

    def merge(self, other: KnowledgeGraph, prefer: str = "other") -> MergeReport:
        """Add every triple of ``other`` to this graph.

        Both graphs keep their own namespaces, so nodes are shared exactly when their IRIs are equal
        (load the other graph with the same ``base`` to merge by name). Links are matched by their
        (class, attribute) pair; when the strengths differ, ``prefer`` settles it: ``"other"``
        (the incoming graph wins, like ``dict.update``), ``"self"``, ``"max"``, ``"min"`` or
        ``"mean"``; every such conflict is reported. Labels and other values are unioned. The
        dataset node records ``prov:wasDerivedFrom`` the other graph's dataset.
        """
        if prefer not in MERGE_RULES:
            raise ConfigError(f"unknown merge rule '{prefer}'; choose one of: {', '.join(MERGE_RULES)}")
        incoming = list(other.link_rows())
        mine = {(c, a): (link, s) for link, c, a, s in self.link_rows()} if incoming else {}
        renamed: dict[URIRef, URIRef] = {}
        settled: dict[URIRef, float] = {}
        report = MergeReport(added_triples=0, rule=prefer)
        for link, class_iri, attribute_iri, theirs in incoming:
            if (class_iri, attribute_iri) not in mine:
                continue
            own_link, own = mine[class_iri, attribute_iri]
            renamed[link] = own_link
            if own != theirs:
                kept = float(MERGE_RULES[prefer](own, theirs))
                settled[own_link] = kept
                report.conflicts.append(
                    StrengthConflict(name_of(class_iri), name_of(attribute_iri), own, theirs, kept))
        before = len(self.graph)
        for prefix, namespace in other.graph.namespaces():
            if prefix and prefix not in dict(self.graph.namespaces()):
                self.graph.bind(prefix, namespace, override=False)
        for s, p, o in other.graph:
            s = renamed.get(s, s)
            if p == FGMM.strength and s in settled:
                continue
            self.graph.add((s, p, o))
        for link, kept in settled.items():
            self.graph.set((link, FGMM.strength, strength_literal(kept)))
        if other.dataset != self.dataset and (other.dataset, RDF.type, VOID.Dataset) in other.graph:
            self.graph.add((self.dataset, PROV.wasDerivedFrom, other.dataset))
        report.added_triples = len(self.graph) - before
        return report

    # ------------------------------------------------------------------ query, checks, summaries

    def query(self, sparql: str, bindings: dict[str, Any] | None = None):
        """Run a SPARQL query (the fgmm prefixes and ``kg:`` for this namespace are predeclared).

        Queries run on this graph only: ``SERVICE`` (a remote endpoint) and ``FROM`` / ``FROM NAMED``
        (graphs fetched by address) are refused, so a query never touches the network.

        Returns rdflib's ``Result``: iterate rows, read ``.vars``, or ``.serialize(format="csv")``.

        Raises:
            ConfigError: the query does not parse (with rdflib's message and position), or names a
                remote endpoint or graph.
        """
        from pyparsing import ParseException
        from rdflib.plugins.sparql import prepareQuery
        from rdflib.plugins.sparql.algebra import traverse

        namespaces = {**{k: str(v) for k, v in PREFIXES.items()}, "kg": self.base}
        try:
            prepared = prepareQuery(sparql, initNs=namespaces)
            remote: list[str] = []
            traverse(prepared.algebra, lambda node: remote.append("SERVICE")
                     if getattr(node, "name", None) == "ServiceGraphPattern" else None)
            if prepared.algebra.get("datasetClause"):
                remote.append("FROM")
            if remote:
                raise ConfigError(f"SPARQL {remote[0]} clauses are refused: fgmm queries only the loaded graph and "
                                  "never the network (fetch the remote data yourself and load or merge it)")
            return self.graph.query(prepared, initBindings=bindings or {})
        except ParseException as exc:
            raise ConfigError(f"SPARQL syntax error at line {exc.lineno}, column {exc.col}: {exc.msg}") \
                from None
        except Exception as exc:  # rdflib raises plain Exception for unknown prefixes
            if "prefix" in str(exc).lower():
                raise ConfigError(f"SPARQL error: {exc}") from None
            raise

    def validate(self, shapes: str | Path | None = None):
        """Check the graph against the SHACL shapes (default ``knowledge/shapes.ttl``).

        Returns a :class:`fgmm.kg.validate.ValidationReport` (a list of ``Violation``).
        """
        from fgmm.kg.validate import validate

        return validate(self.graph, shapes)

    def stats(self) -> dict[str, Any]:
        """Counts and strength summary: classes (leaves/taxa), attributes, groups, parts, links, ..."""
        classes = self.nodes("class")
        leaves = [c for c in classes if not self._children(c)]
        strengths = [s for *_, s in self.link_rows()]
        ranks: dict[str, int] = defaultdict(int)
        for c in classes:
            ranks[str(self.graph.value(c, DWC.taxonRank) or "unranked")] += 1
        linked = {c for c in self.graph.subjects(FGMM.hasAttribute, None)}
        depth = max((len(self.lineage(c)) - 1 for c in leaves), default=0)
        return {
            "triples": len(self.graph),
            "classes": len(classes),
            "leaf_classes": len(leaves),
            "taxa": len(classes) - len(leaves),
            "ranks": dict(sorted(ranks.items())),
            "taxonomy_depth": depth,
            "attributes": len(self.nodes("attribute")),
            "groups": len(self.nodes("group")),
            "parts": len(self.nodes("part")),
            "links": len(strengths),
            "classes_with_links": len(linked),
            "links_per_linked_class": len(strengths) / len(linked) if linked else 0.0,
            "strength_mean": math.fsum(strengths) / len(strengths) if strengths else 0.0,
            "strength_min": min(strengths, default=0.0),
            "strength_max": max(strengths, default=0.0),
        }

    # ------------------------------------------------------------------ converters (fgmm.kg.convert)

    def to_networkx(self):
        """See :func:`fgmm.kg.convert.to_networkx`."""
        from fgmm.kg.convert import to_networkx

        return to_networkx(self)

    @classmethod
    def from_networkx(cls, graph) -> KnowledgeGraph:
        """See :func:`fgmm.kg.convert.from_networkx`."""
        from fgmm.kg.convert import from_networkx

        return from_networkx(graph)

    def to_pyg(self, hetero: bool = True, class_order: list[str] | None = None, features: bool = False,
               encoder: Any = None, cache: Any = None):
        """See :func:`fgmm.kg.convert.to_pyg` (the contract the GNN code relies on)."""
        from fgmm.kg.convert import to_pyg

        return to_pyg(self, hetero=hetero, class_order=class_order, features=features, encoder=encoder,
                      cache=cache)

    def class_attribute_matrix(self, class_order: list[str] | None = None):
        """See :func:`fgmm.kg.convert.class_attribute_matrix`."""
        from fgmm.kg.convert import class_attribute_matrix

        return class_attribute_matrix(self, class_order)


def _text_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _name_or_none(value: Any) -> str | None:
    return None if value is None else name_of(value)


__all__ = ["FORMATS", "MERGE_RULES", "KnowledgeGraph", "MergeReport", "StrengthConflict", "rdf_format"]
