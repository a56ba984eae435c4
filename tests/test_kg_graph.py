"""KnowledgeGraph authoring, files (round trips, parse errors, atomic saves), merge, SPARQL, stats."""

from __future__ import annotations

import pytest
from rdflib import Literal
from rdflib.namespace import RDFS

from fgmm.errors import ConfigError, DataError
from fgmm.kg import FGMM, KnowledgeGraph, build_procedural_kg, knowledge_file
from fgmm.kg.vocab import strength_literal

BASE = "https://example.org/kg/birds/"


def gulls() -> KnowledgeGraph:
    """Two gull species under Larus, three attributes in two groups; strengths with awkward floats."""
    kg = KnowledgeGraph(BASE, title="gulls", source="a field guide")
    kg.add_class("Laridae", rank="family")
    kg.add_class("Larus", parent="Laridae", rank="genus")
    kg.add_class("Herring_Gull", label="Herring Gull", parent="Larus", rank="species",
                 scientific_name="Larus argentatus", description="A large grey-backed gull.")
    kg.add_class("Ring_billed_Gull", label="Ring-billed Gull", parent="Larus", rank="species")
    kg.add_attribute("has_bill_color::yellow", group="has_bill_color", part="bill", label="bill colour: yellow")
    kg.add_attribute("has_leg_color::pink", group="has_leg_color", part="leg")
    kg.add_attribute("has_leg_color::yellow", group="has_leg_color")
    kg.link("Herring_Gull", "has_bill_color::yellow", 0.1 + 0.2)
    kg.link("Herring_Gull", "has_leg_color::pink", 0.9)
    kg.link("Ring_billed_Gull", "has_leg_color::yellow", 1e-7)
    kg.link("Ring_billed_Gull", "has_bill_color::yellow", 1.0)
    return kg


def test_authoring_counts_and_lookup():
    kg = gulls()
    assert kg.classes() == ["Herring_Gull", "Laridae", "Larus", "Ring_billed_Gull"]
    assert kg.classes(leaves_only=True) == ["Herring_Gull", "Ring_billed_Gull"]
    assert kg.attributes() == ["has_bill_color::yellow", "has_leg_color::pink", "has_leg_color::yellow"]
    assert kg.groups() == ["has_bill_color", "has_leg_color"] and kg.parts() == ["bill", "leg"]
    # by label, by normalised label, by IRI
    assert kg.find("class", "Ring-billed Gull") == kg.find("class", "ring billed gull") == \
        kg.find("class", f"{BASE}class/Ring_billed_Gull")
    assert kg.strength("herring gull", "has_bill_color::yellow") == 0.1 + 0.2
    assert kg.strength("Ring_billed_Gull", "has_leg_color::yellow") == 1e-7
    assert kg.strength("Ring_billed_Gull", "has_leg_color::pink") is None
    assert [kg.label(n) for n in kg.lineage("Herring_Gull")] == ["Herring Gull", "Larus", "Laridae"]
    info = kg.describe("attribute", "has_leg_color::yellow")
    assert (info["group"], info["part"]) == ("has_leg_color", "leg")
    # the plain triple exists for every link
    rows = kg.query("SELECT ?c ?a WHERE { ?c fgmm:hasAttribute ?a }")
    assert len(rows) == 4


def test_authoring_errors_name_the_problem():
    kg = gulls()
    with pytest.raises(ConfigError, match="unknown class 'Kittiwake'"):
        kg.link("Kittiwake", "has_leg_color::pink", 0.5)
    with pytest.raises(ConfigError, match="unknown attribute 'has_eye_color::red'"):
        kg.link("Herring_Gull", "has_eye_color::red", 0.5)
    for bad in (1.5, -0.1, float("nan"), "high"):
        with pytest.raises(ConfigError, match="not a number in \\[0, 1\\]"):
            kg.link("Herring_Gull", "has_leg_color::pink", bad)
    assert kg.strength("Herring_Gull", "has_leg_color::pink") == 0.9  # nothing changed
    with pytest.raises(ConfigError, match="already exists"):
        kg.add_class("Larus")
    with pytest.raises(ConfigError, match="unknown class 'Sternidae'"):
        kg.add_class("Common_Tern", parent="Sternidae")
    with pytest.raises(ConfigError, match="cycle"):
        kg.set_parent("Laridae", "Herring_Gull")
    with pytest.raises(ConfigError, match="still has attributes"):
        kg.remove("group", "has_leg_color")
    with pytest.raises(ConfigError, match="not about part"):
        kg.add_attribute("has_leg_color::black", group="has_leg_color", part="bill")


def test_relink_unlink_remove_rename():
    kg = gulls()
    snapshot = kg.copy()
    kg.link("Herring_Gull", "has_leg_color::pink", 0.25)
    assert kg.strength("Herring_Gull", "has_leg_color::pink") == 0.25
    assert len(kg.links()) == 4
    kg.unlink("Herring_Gull", "has_leg_color::pink")
    assert kg.strength("Herring_Gull", "has_leg_color::pink") is None
    assert not list(kg.graph.triples((None, FGMM.hasAttribute, kg.node("attribute", "has_leg_color::pink"))))

    kg.rename("class", "Herring_Gull", "European_Herring_Gull")
    assert "European_Herring_Gull" in kg.classes() and kg.find("class", f"{BASE}class/Herring_Gull") is None
    assert kg.find("class", "Herring Gull") == kg.node("class", "European_Herring_Gull")  # the label stays
    assert kg.strength("European_Herring_Gull", "has_bill_color::yellow") == 0.1 + 0.2
    assert all("European_Herring_Gull" in str(link) for link, c, *_ in kg.link_rows()
               if c == kg.node("class", "European_Herring_Gull"))
    kg.rename("attribute", "has_bill_color::yellow", "has_bill_color::bright_yellow")
    assert kg.strength("Ring_billed_Gull", "has_bill_color::bright_yellow") == 1.0
    assert kg.validate().conforms

    kg.remove("class", "Larus")  # its children move up to Laridae
    assert [kg.label(n) for n in kg.lineage("Ring_billed_Gull")] == ["Ring-billed Gull", "Laridae"]
    kg.remove("attribute", "has_leg_color::yellow")
    assert [row[1] for row in kg.links("Ring_billed_Gull")] == ["has_bill_color::bright_yellow"]
    assert kg.validate().conforms
    assert snapshot.isomorphic(gulls())  # the copy did not change with the original


@pytest.mark.parametrize("suffix", [".ttl", ".nt", ".jsonld"])
def test_save_load_round_trip_is_exact(tmp_path, suffix):
    kg = gulls()
    kg.graph.add((kg.node("class", "Larus"), RDFS.label, Literal("Möwen", lang="de")))
    path = kg.save(tmp_path / f"gulls{suffix}")
    back = KnowledgeGraph.load(path)
    assert back.isomorphic(kg)
    assert back.base == BASE
    assert back.links() == kg.links()  # identical floats, 0.30000000000000004 and 1e-07 included
    assert back.stats() == kg.stats()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_strength_literal_is_exact_plain_decimal():
    for value in (0.1 + 0.2, 1e-7, 1.0, 0.0, 0.598540145985, 5e-324):
        literal = strength_literal(value)
        assert "e" not in str(literal).lower() and "." in str(literal)
        assert float(literal.toPython()) == value


def test_atomic_save_keeps_the_old_file(tmp_path, monkeypatch):
    kg = gulls()
    path = kg.save(tmp_path / "gulls.ttl")
    before = path.read_bytes()
    kg.add_class("Kittiwake")

    def broken_write(target, data):
        raise OSError("disk full")

    monkeypatch.setattr("fgmm.kg.graph.write_atomic", broken_write)
    with pytest.raises(OSError):
        kg.save(path)
    assert path.read_bytes() == before


@pytest.mark.parametrize(("name", "text", "line", "words"), [
    ("bad.ttl", "@prefix fgmm: <https://fgmm.dev/ns#> .\n\n<a:x> a fgmm:Class ;\n    fgmm:index 1 2 .\n", 4,
     "malformed RDF"),
    ("prefix.ttl", "@prefix fgmm: <https://fgmm.dev/ns#> .\n<a:x> a fgmm:Class .\n<a:y> a nope:Class .\n", 3,
     "nope"),
    ("bad.nt", "<a:x> <a:p> <a:o> .\n<a:x> <a:p> oops .\n", 2, "malformed RDF"),
    ("bad.jsonld", '{"@id": "a:x",\n "a:p": [1,\n}', 3, "malformed JSON-LD"),
])
def test_parse_errors_name_file_and_line(tmp_path, name, text, line, words):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=words) as caught:
        KnowledgeGraph.load(path)
    assert caught.value.path == path and caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_load_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        KnowledgeGraph.load(tmp_path / "missing.ttl")
    with pytest.raises(ConfigError, match="suffix"):
        KnowledgeGraph.load(tmp_path / "graph.xyz")


def test_merge_unions_and_settles_strength_conflicts():
    a, b = gulls(), gulls()
    b.link("Herring_Gull", "has_leg_color::pink", 0.5)  # conflict: 0.9 vs 0.5
    b.add_class("Black_legged_Kittiwake", parent="Laridae")
    b.add_attribute("has_leg_color::black", group="has_leg_color")
    b.link("Black_legged_Kittiwake", "has_leg_color::black", 0.95)
    report = a.merge(b, prefer="mean")
    assert [(c.class_name, c.mine, c.theirs, c.kept) for c in report.conflicts] == \
        [("Herring_Gull", 0.9, 0.5, 0.7)]
    assert a.strength("Herring_Gull", "has_leg_color::pink") == 0.7
    assert a.strength("Black_legged_Kittiwake", "has_leg_color::black") == 0.95
    assert len(a.links()) == 5 and report.added_triples > 0
    assert a.validate().conforms  # one strength per link after the merge
    assert "1 strength conflicts" in report.format()

    for rule, kept in (("self", 0.9), ("other", 0.5), ("max", 0.9), ("min", 0.5)):
        c, d = gulls(), gulls()
        d.link("Herring_Gull", "has_leg_color::pink", 0.5)
        c.merge(d, prefer=rule)
        assert c.strength("Herring_Gull", "has_leg_color::pink") == kept
    with pytest.raises(ConfigError, match="unknown merge rule"):
        gulls().merge(gulls(), prefer="vote")


def test_merge_of_other_namespace_records_provenance():
    a = gulls()
    other = KnowledgeGraph("https://example.org/kg/terns/", title="terns")
    other.add_class("Common_Tern", label="Common Tern")
    a.merge(other)
    assert "Common_Tern" in a.classes()
    assert a.query("ASK { kg: prov:wasDerivedFrom <https://example.org/kg/terns/> }").askAnswer


def test_sparql_results_and_errors():
    kg = gulls()
    rows = kg.query(f"""
        SELECT ?label ?s WHERE {{
            ?link fgmm:linkClass ?c ; fgmm:linkAttribute ?a ; fgmm:strength ?s .
            ?c rdfs:label ?label . ?a fgmm:inGroup <{BASE}group/has_leg_color> .
        }} ORDER BY DESC(?s)""")
    assert [(str(r.label), float(r.s)) for r in rows] == [("Herring Gull", 0.9), ("Ring-billed Gull", 1e-7)]
    species = kg.query('SELECT (COUNT(?c) AS ?n) WHERE { ?c dwc:taxonRank "species" }')
    assert int(next(iter(species)).n) == 2
    with pytest.raises(ConfigError, match="SPARQL syntax error"):
        kg.query("SELECT ?x WHERE { ?x ?y }")
    with pytest.raises(ConfigError, match="SPARQL"):
        kg.query("SELECT ?x WHERE { ?x nope:p ?y }")


def test_stats():
    s = gulls().stats()
    assert (s["classes"], s["leaf_classes"], s["taxa"], s["attributes"], s["groups"], s["parts"], s["links"]) == \
        (4, 2, 2, 3, 2, 2, 4)
    assert s["ranks"] == {"family": 1, "genus": 1, "species": 2}
    assert s["taxonomy_depth"] == 2
    assert s["strength_mean"] == pytest.approx((0.3 + 0.9 + 1e-7 + 1.0) / 4)
    assert s["strength_max"] == 1.0


def test_shipped_procedural_graph_matches_a_fresh_build():
    shipped = KnowledgeGraph.load(knowledge_file("procedural.ttl"))
    fresh = build_procedural_kg()
    assert shipped.isomorphic(fresh), "regenerate knowledge/procedural.ttl (see knowledge/README.md)"
    s = fresh.stats()
    assert (s["leaf_classes"], s["attributes"], s["groups"], s["links"]) == (20, 28, 8, 20 * 28)
    assert fresh.validate().conforms


def test_vocabulary_file_defines_every_term():
    vocab = KnowledgeGraph.load(knowledge_file("fgmm.ttl"))
    defined = {str(s) for s in vocab.graph.subjects(RDFS.label, None)}
    for term in ("Class", "Attribute", "AttributeGroup", "Part", "AttributeLink", "hasAttribute", "linkClass",
                 "linkAttribute", "strength", "inGroup", "ofPart", "index"):
        assert str(FGMM[term]) in defined
