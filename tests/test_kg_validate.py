"""SHACL validation: every kind of bad graph gets a readable violation; good graphs conform."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rdflib import Literal, URIRef
from rdflib.namespace import RDF, RDFS

from fgmm.kg import FGMM, KnowledgeGraph, ValidationReport, Violation

BASE = "https://example.org/kg/v/"
DECIMAL = URIRef("http://www.w3.org/2001/XMLSchema#decimal")


def good() -> KnowledgeGraph:
    kg = KnowledgeGraph(BASE)
    kg.add_class("Corvus", rank="genus")
    kg.add_class("Raven", parent="Corvus")
    kg.add_class("Crow", parent="Corvus")
    kg.add_attribute("has_size::large", group="has_size", part="body")
    kg.add_attribute("has_size::medium", group="has_size")
    kg.link("Raven", "has_size::large", 0.9)
    kg.link("Crow", "has_size::medium", 0.8)
    return kg


def iri(kind: str, name: str) -> URIRef:
    return URIRef(f"{BASE}{kind}/{name}")


RAVEN_LINK = URIRef(f"{BASE}link/Raven/has_size::large")
LINK = "kg:link/Raven/has_size::large"  # as reports write it


def _set_strength(value: Literal) -> Callable[[KnowledgeGraph], None]:
    return lambda kg: kg.graph.set((RAVEN_LINK, FGMM.strength, value))


BROKEN: dict[str, tuple[Callable[[KnowledgeGraph], None], str, str, str | None]] = {
    # name: (edit, focus, message part, path)
    "class without label": (lambda kg: kg.graph.remove((iri("class", "Crow"), RDFS.label, None)),
                            "class:Crow", "class has no rdfs:label", "rdfs:label"),
    "strength above 1": (_set_strength(Literal("1.5", datatype=DECIMAL)), LINK,
                         "strength is outside [0, 1]", "fgmm:strength"),
    "negative strength": (_set_strength(Literal("-0.25", datatype=DECIMAL)), LINK,
                          "strength is outside [0, 1]", "fgmm:strength"),
    "strength not a number": (_set_strength(Literal("high")), LINK, "must be an xsd:decimal",
                              "fgmm:strength"),
    "integer strength": (_set_strength(Literal(1)), LINK, "must be an xsd:decimal", "fgmm:strength"),
    "link without strength": (lambda kg: kg.graph.remove((RAVEN_LINK, FGMM.strength, None)), LINK,
                              "exactly one fgmm:strength", "fgmm:strength"),
    "attribute without group": (
        lambda kg: kg.graph.remove((iri("attribute", "has_size::medium"), FGMM.inGroup, None)),
        "attribute:has_size::medium", "belongs to no attribute group", "fgmm:inGroup"),
    "group that is no group": (
        lambda kg: kg.graph.set((iri("attribute", "has_size::medium"), FGMM.inGroup, iri("group", "nope"))),
        "attribute:has_size::medium", "not an fgmm:AttributeGroup", "fgmm:inGroup"),
    "link to undeclared class": (lambda kg: kg.graph.set((RAVEN_LINK, FGMM.linkClass, iri("class", "Rook"))),
                                 LINK, "undeclared class", "fgmm:linkClass"),
    "link to undeclared attribute": (
        lambda kg: kg.graph.set((RAVEN_LINK, FGMM.linkAttribute, iri("attribute", "has_size::tiny"))),
        LINK, "undeclared attribute", "fgmm:linkAttribute"),
    "subClassOf a non-class": (
        lambda kg: kg.graph.add((iri("class", "Crow"), RDFS.subClassOf, iri("attribute", "has_size::large"))),
        "class:Crow", "not an fgmm:Class", "rdfs:subClassOf"),
    "hasAttribute to a non-attribute": (
        lambda kg: kg.graph.add((iri("class", "Crow"), FGMM.hasAttribute, iri("class", "Raven"))),
        "class:Crow", "not an fgmm:Attribute", "fgmm:hasAttribute"),
    "taxonomy cycle": (lambda kg: kg.graph.add((iri("class", "Corvus"), RDFS.subClassOf, iri("class", "Raven"))),
                       "class:Corvus", "cycle", "rdfs:subClassOf"),
    "link without hasAttribute": (
        lambda kg: kg.graph.remove((iri("class", "Raven"), FGMM.hasAttribute, None)),
        LINK, "no matching 'class fgmm:hasAttribute attribute'", None),
    "hasAttribute without link": (
        lambda kg: kg.graph.add((iri("class", "Crow"), FGMM.hasAttribute, iri("attribute", "has_size::large"))),
        "class:Crow", "no fgmm:AttributeLink", "fgmm:hasAttribute"),
    "duplicate link": (
        lambda kg: [kg.graph.add((URIRef(f"{BASE}link/dup"), p, o)) for p, o in kg.graph.predicate_objects(RAVEN_LINK)],
        "kg:link/dup", "another attribute link joins the same class and attribute", None),
    "untyped link": (lambda kg: kg.graph.remove((RAVEN_LINK, RDF.type, FGMM.AttributeLink)),
                     LINK, "not typed fgmm:AttributeLink", None),
}


def test_good_graph_conforms():
    report = good().validate()
    assert isinstance(report, ValidationReport) and report.conforms and report == []
    assert report.format() == "conforms: no violations"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_each_kind_of_bad_graph_is_reported(case):
    edit, focus, message, path = BROKEN[case]
    kg = good()
    edit(kg)
    report = kg.validate()
    assert not report.conforms
    hits = [v for v in report if message in v.message]
    assert hits, report.format()
    assert any(v.focus == focus and v.path == path and v.severity == "Violation" for v in hits), report.format()
    assert message in report.format()


def test_group_without_part_is_a_warning():
    kg = good()
    kg.add_group("has_shape")
    report = kg.validate()
    assert report.conforms
    assert [(v.severity, v.focus, v.path) for v in report] == [("Warning", "group:has_shape", "fgmm:ofPart")]
    assert report.format().startswith("0 violations, 1 warnings")


def test_bad_turtle_file_loads_and_validation_names_the_nodes(tmp_path):
    path = tmp_path / "bad.ttl"
    path.write_text("""@prefix fgmm: <https://fgmm.dev/ns#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix kg: <https://example.org/kg/v/> .
kg:x a fgmm:Class .
kg:a a fgmm:Attribute ; rdfs:label "a" .
kg:l a fgmm:AttributeLink ; fgmm:linkClass kg:x ; fgmm:linkAttribute kg:missing ; fgmm:strength 2.5 .
kg:x fgmm:hasAttribute kg:missing .
""", encoding="utf-8")
    report = KnowledgeGraph.load(path).validate()
    messages = {(v.focus, v.message) for v in report}
    assert ("kg:x", "class has no rdfs:label") in messages
    assert ("kg:a", "attribute belongs to no attribute group (fgmm:inGroup)") in messages
    assert ("kg:l", "strength is outside [0, 1]") in messages
    assert any(f == "kg:l" and "undeclared attribute" in m for f, m in messages)
    assert any(f == "kg:x" and "not an fgmm:Attribute" in m for f, m in messages)
    assert report.severity_count("Violation") == len(report)


def test_violation_format():
    v = Violation("class:Crow", "rdfs:label", "class has no rdfs:label")
    assert v.format() == "Violation: class:Crow rdfs:label: class has no rdfs:label"
    assert Violation("kg:l", None, "bad", "Warning", "2.5").format() == "Warning: kg:l: bad (value: 2.5)"
