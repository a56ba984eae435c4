"""SHACL validation of fgmm knowledge graphs with pyshacl, as readable violations.

``knowledge/shapes.ttl`` says what a valid graph is: every class, attribute, group and part has a
label; strengths are numbers in ``[0, 1]``; every attribute is in exactly one group; links,
``fgmm:hasAttribute`` and ``rdfs:subClassOf`` point only at declared nodes of the right kind; the
taxonomy has no cycle; ``fgmm:hasAttribute`` and the weighted links agree. pyshacl's report graph
is turned into :class:`Violation` records (focus node, path, message, severity, offending value)::

    report = kg.validate()
    if not report.conforms:
        print(report.format())
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rdflib import Graph, Literal, URIRef
from rdflib.namespace import RDF, RDFS, SH
from rdflib.term import Node

from fgmm.errors import DataError
from fgmm.kg.vocab import FGMM, knowledge_file

#: severities in the order they are listed
SEVERITIES = ("Violation", "Warning", "Info")


@dataclass(frozen=True)
class Violation:
    """One SHACL validation result in plain words.

    Attributes:
        focus: the node that breaks the rule (prefixed name when a prefix fits).
        path: the property concerned, or ``None`` for node-level rules.
        message: what is wrong.
        severity: ``"Violation"``, ``"Warning"`` or ``"Info"``.
        value: the offending value, when there is one.
    """

    focus: str
    path: str | None
    message: str
    severity: str = "Violation"
    value: str | None = None

    def format(self) -> str:
        where = self.focus if self.path is None else f"{self.focus} {self.path}"
        value = f" (value: {self.value})" if self.value is not None else ""
        return f"{self.severity}: {where}: {self.message}{value}"


class ValidationReport(list[Violation]):
    """The violations found (a list); ``conforms`` is true when none has severity ``Violation``."""

    @property
    def conforms(self) -> bool:
        return not any(v.severity == "Violation" for v in self)

    def severity_count(self, severity: str) -> int:
        return sum(v.severity == severity for v in self)

    def format(self) -> str:
        if not self:
            return "conforms: no violations"
        head = f"{self.severity_count('Violation')} violations, {self.severity_count('Warning')} warnings"
        return "\n".join([head, *(v.format() for v in self)])


@lru_cache(maxsize=4)
def load_shapes(path: str | None = None) -> Graph:
    """The SHACL shapes graph (default: the shipped ``knowledge/shapes.ttl``), parsed once."""
    source = Path(path) if path is not None else knowledge_file("shapes.ttl")
    from fgmm.kg.graph import KnowledgeGraph

    return KnowledgeGraph.load(source, format="turtle").graph


def short(graph: Graph, node: Node | None) -> str | None:
    """A node as ``prefix:rest`` using the graph's prefixes (longest namespace first), else N3."""
    if node is None:
        return None
    if isinstance(node, URIRef):
        text = str(node)
        for prefix, namespace in sorted(graph.namespaces(), key=lambda pn: -len(str(pn[1]))):
            if prefix and text.startswith(str(namespace)) and len(text) > len(str(namespace)):
                return f"{prefix}:{text[len(str(namespace)):]}"
        return f"<{text}>"
    if isinstance(node, Literal):
        return node.n3(graph.namespace_manager)
    return "[blank node]"


def consistency_violations(graph: Graph) -> list[Violation]:
    """Rules that relate several nodes, checked with set operations instead of SHACL-SPARQL.

    * a link exists exactly when ``class fgmm:hasAttribute attribute`` does;
    * at most one link joins a class and an attribute;
    * the ``rdfs:subClassOf`` taxonomy among fgmm classes has no cycle.
    """
    import networkx as nx

    links: dict[tuple[Node, Node], list[Node]] = {}
    for link, class_node in graph.subject_objects(FGMM.linkClass):
        for attribute in graph.objects(link, FGMM.linkAttribute):
            links.setdefault((class_node, attribute), []).append(link)
    plain = set(graph.subject_objects(FGMM.hasAttribute))
    has_attribute = short(graph, FGMM.hasAttribute)
    out = []
    for (class_node, attribute), nodes in links.items():
        for link in nodes:
            if (class_node, attribute) not in plain:
                out.append(Violation(short(graph, link), None, "link has no matching 'class fgmm:hasAttribute "
                                     "attribute' triple", value=short(graph, class_node)))
            if len(nodes) > 1:
                others = ", ".join(sorted(short(graph, n) for n in nodes if n != link))
                out.append(Violation(short(graph, link), None, "another attribute link joins the same class "
                                     f"and attribute: {others}"))
    for class_node, attribute in sorted(plain - links.keys()):
        out.append(Violation(short(graph, class_node), has_attribute, "fgmm:hasAttribute has no "
                             "fgmm:AttributeLink giving its strength", value=short(graph, attribute)))
    classes = set(graph.subjects(RDF.type, FGMM.Class))
    taxonomy = nx.DiGraph((s, o) for s, o in graph.subject_objects(RDFS.subClassOf) if s in classes and o in classes)
    for component in nx.strongly_connected_components(taxonomy):
        if len(component) > 1 or any(taxonomy.has_edge(n, n) for n in component):
            for node in sorted(component):
                out.append(Violation(short(graph, node), short(graph, RDFS.subClassOf),
                                     "the taxonomy has a cycle through this class"))
    return out


def validate(graph: Graph, shapes: str | Path | None = None) -> ValidationReport:
    """Validate an rdflib graph: SHACL shapes (default ``knowledge/shapes.ttl``) + :func:`consistency_violations`."""
    import pyshacl

    shapes_graph = load_shapes(str(shapes) if shapes is not None else None)
    data = graph
    if not graph.store.context_aware:  # pyshacl needs a context-aware store (fgmm uses SimpleMemory)
        data = Graph()
        for triple in graph:
            data.add(triple)
    try:
        _, results, _ = pyshacl.validate(data, shacl_graph=shapes_graph, inference="none",
                                         allow_warnings=True, abort_on_first=False, advanced=False)
    except Exception as exc:  # pyshacl reports broken shapes with its own exception types
        raise DataError(shapes, f"SHACL validation could not run: {exc}") from None
    report = ValidationReport()
    for result in results.subjects(RDF.type, SH.ValidationResult):
        severity = results.value(result, SH.resultSeverity)
        message = results.value(result, SH.resultMessage)
        focus, value = results.value(result, SH.focusNode), results.value(result, SH.value)
        report.append(Violation(
            focus=short(graph, focus) or "?",
            path=short(graph, results.value(result, SH.resultPath)),
            message=str(message) if message is not None else "constraint not met",
            severity=str(severity).rsplit("#", 1)[-1] if severity is not None else "Violation",
            value=None if value == focus else short(graph, value),
        ))
    report.extend(consistency_violations(graph))
    report.sort(key=lambda v: (SEVERITIES.index(v.severity) if v.severity in SEVERITIES else 9,
                               v.focus, v.path or "", v.message))
    return report
