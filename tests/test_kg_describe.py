"""Class descriptions from a knowledge graph (fgmm.kg.describe), query matching (fgmm.kg.phrases), the CLI."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from fgmm.cli.kg import kg_app
from fgmm.errors import ConfigError
from fgmm.kg import KnowledgeGraph
from fgmm.kg.describe import (
    DescribeConfig,
    Describer,
    common_nouns,
    export_descriptions,
    head_noun,
    read_descriptions,
    singular,
    write_descriptions,
)
from fgmm.kg.phrases import aspect_and_noun, match_attributes, noun_phrase, value_phrase

VALUES = {"has_size": ["large_(16_-_32_in)", "medium_(9_-_16_in)"], "has_wing_color": ["grey", "black", "white"],
          "has_back_color": ["grey", "black"], "has_bill_color": ["yellow", "red", "black"],
          "has_bill_shape": ["hooked_seabird", "dagger"], "has_head_pattern": ["plain", "capped"],
          "has_leg_color": ["pink", "red"]}
LINKS = {
    "Herring_Gull": {"has_size::large_(16_-_32_in)": 0.9, "has_wing_color::grey": 0.8, "has_wing_color::black": 0.5,
                     "has_back_color::grey": 0.85, "has_bill_color::yellow": 0.9,
                     "has_bill_shape::hooked_seabird": 0.7, "has_head_pattern::plain": 0.6, "has_leg_color::pink": 0.7},
    "Laughing_Gull": {"has_size::medium_(9_-_16_in)": 0.8, "has_wing_color::grey": 0.6, "has_wing_color::black": 0.4,
                      "has_back_color::grey": 0.7, "has_bill_color::red": 0.6, "has_bill_shape::hooked_seabird": 0.5,
                      "has_head_pattern::capped": 0.7, "has_leg_color::red": 0.5},
    "Black_Skimmer": {"has_size::medium_(9_-_16_in)": 0.7, "has_wing_color::black": 0.9, "has_wing_color::white": 0.2,
                      "has_back_color::black": 0.9, "has_bill_color::red": 0.8, "has_bill_color::black": 0.6,
                      "has_bill_shape::dagger": 0.6, "has_leg_color::red": 0.6},
}


def toy_kg() -> KnowledgeGraph:
    """Three Laridae in two genera, CUB-style attribute names, one authored description."""
    kg = KnowledgeGraph("https://example.org/kg/gulls/", title="toy gulls")
    kg.add_class("Laridae", rank="family", description="Gulls, terns and skimmers")
    kg.add_class("Larus", parent="Laridae", rank="genus")
    kg.add_class("Rynchops", parent="Laridae", rank="genus")
    kg.add_class("Herring_Gull", label="Herring Gull", parent="Larus", rank="species",
                 scientific_name="Larus argentatus", description="A large gull of northern coasts.")
    kg.add_class("Laughing_Gull", label="Laughing Gull", parent="Larus", rank="species")
    kg.add_class("Black_Skimmer", label="Black Skimmer", parent="Rynchops", rank="species")
    for group, names in VALUES.items():
        for value in names:
            kg.add_attribute(f"{group}::{value}", group=group)
    kg.link_many((c, a, s) for c, row in LINKS.items() for a, s in row.items())
    return kg


@pytest.fixture(scope="module")
def describer() -> Describer:
    return Describer(toy_kg(), DescribeConfig(variants=3))


def test_canonical_descriptions_are_exact(describer):
    texts = {d.name: d.text for d in describer.describe_all()}
    assert texts == {
        "Herring_Gull": "The Herring Gull (Larus argentatus) is a gull of the family Laridae (gulls, terns and "
                        "skimmers). It is a large bird with a yellow hooked seabird bill, pink legs, a plain head, "
                        "grey and black wings and a grey back. A large gull of northern coasts.",
        "Laughing_Gull": "The Laughing Gull is a gull of the family Laridae (gulls, terns and skimmers). It is a "
                         "medium-sized bird with a cap, a grey back, a red hooked seabird bill, grey and black wings "
                         "and red legs.",
        "Black_Skimmer": "The Black Skimmer is a skimmer of the family Laridae (gulls, terns and skimmers). It is a "
                         "medium-sized bird with a black back and wings, a red and black dagger-shaped bill and red "
                         "legs.",
    }


def test_rules_values_salience_merging_and_variants(describer):
    skimmer = describer.describe("Black Skimmer")
    # white wings (0.2) is under min_strength; black bill (0.6 >= 0.6 x 0.8) is co-dominant with red
    assert [e.attribute for e in skimmer.evidence if e.noun == "wing"] == ["has_wing_color::black"]
    assert [(p.text, round(p.salience, 4)) for p in skimmer.phrases] == [
        ("a black back and wings", 0.6), ("a red and black dagger-shaped bill", 0.4), ("red legs", 0.2333)]
    assert skimmer.noun == "skimmer"  # not shared in the family, but listed in its common name
    gull = describer.describe("Herring Gull")
    assert gull.variants == ["this large bird has a yellow hooked seabird bill, pink legs, a plain head and a grey "
                             "back.",
                             "the bird has a yellow hooked seabird bill, pink legs and a plain head.",
                             "this gull has a yellow hooked seabird bill, a plain head and grey and black wings."]
    assert Describer(toy_kg(), DescribeConfig(variants=3)).describe("Herring Gull").variants == gull.variants
    assert gull.texts()[0] == gull.text and len(gull.texts()) == 4
    assert Describer(toy_kg(), DescribeConfig(min_strength=0.65, max_phrases=1)).describe("Herring_Gull").text == (
        "The Herring Gull (Larus argentatus) is a gull of the family Laridae (gulls, terns and skimmers). It is a "
        "large bird with a yellow hooked seabird bill. A large gull of northern coasts.")
    with pytest.raises(ConfigError, match="min_strength"):
        DescribeConfig(min_strength=2.0)


def test_words_nouns_and_phrases():
    assert aspect_and_noun("has_upper_tail_color") == ("color", "upper tail")
    assert aspect_and_noun("has_primary_color") == ("color", "body") and aspect_and_noun("has_size") == ("size", "body")
    assert value_phrase("shape", "tail", "notched_tail") == ("adjective", "notched")
    assert value_phrase("shape", "wing", "rounded-wings") == ("adjective", "rounded")
    assert value_phrase("pattern", "head", "eyering") == ("feature", "an eye ring")
    assert noun_phrase(["olive"], ["back", "wing"]) == "an olive back and wings"
    assert noun_phrase(["black"], ["wing"]) == "black wings"
    assert [singular(w) for w in ("albatrosses", "finches", "larks", "chat", "allies")] == [
        "albatross", "finch", "lark", "chat", "ally"]
    assert [head_noun(n) for n in ("Florida Scrub-Jay", "Eastern Whip-poor-will")] == ["jay", "whip-poor-will"]
    assert common_nouns("Troupials and allies: blackbirds, orioles") == ["troupial", "blackbird", "oriole"]


def test_query_matching_finds_the_attributes_a_sentence_names():
    names = [f"{g}::{v}" for g, vs in {**VALUES, "has_crown_color": ["red"], "has_underparts_color": ["red"],
                                         "has_nape_color": ["red"], "has_size": ["small_(5_-_9_in)"]}.items()
             for v in vs]
    terms = match_attributes("A small flycatcher with a brilliant red crown and underparts, pink feet", names)
    assert [(t.attribute, t.words) for t in terms] == [
        ("has_size::small_(5_-_9_in)", "small"), ("has_crown_color::red", "red crown"),
        ("has_underparts_color::red", "red underparts"), ("has_leg_color::pink", "pink feet")]
    assert [t.attribute for t in match_attributes("its head is red; the bill is yellow", names)] == [
        "has_crown_color::red", "has_nape_color::red", "has_bill_color::yellow"]
    assert [t.attribute for t in match_attributes("a bird with a black cap", names)] == ["has_head_pattern::capped"]


def test_descriptions_are_stored_in_the_graph_and_exported(tmp_path, describer):
    kg = toy_kg()
    descriptions = describer.describe_all()
    assert write_descriptions(kg, descriptions) == 12
    assert write_descriptions(kg, descriptions[:1]) == 4  # generated nodes are replaced, not duplicated
    kg.save(tmp_path / "gulls.ttl")
    stored = read_descriptions(KnowledgeGraph.load(tmp_path / "gulls.ttl"))
    assert stored == {"Black_Skimmer": descriptions[0].texts()}
    assert str(KnowledgeGraph.load(tmp_path / "gulls.ttl").describe("class", "Herring Gull")["description"]) == (
        "A large gull of northern coasts.")  # authored text untouched
    exported = export_descriptions(descriptions, tmp_path / "d.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in exported]
    assert [r["name"] for r in rows] == ["Black_Skimmer", "Herring_Gull", "Laughing_Gull"]
    assert rows[0]["evidence"][0] == {"attribute": "has_back_color::black", "strength": 0.9, "contrast": 0.6}


def test_cli_describe(tmp_path):
    app = typer.Typer()
    app.add_typer(kg_app, name="kg")
    path = tmp_path / "gulls.ttl"
    toy_kg().save(path)
    runner = CliRunner()
    result = runner.invoke(app, ["kg", "describe", str(path), "Herring Gull", "--variants", "2"],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "is a gull of the family Laridae" in result.output and "has_bill_color::yellow" in result.output
    assert result.output.count("  - ") == 2
    out = tmp_path / "all.jsonl"
    result = runner.invoke(app, ["kg", "describe", str(path), "--out", str(out), "--write"])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 3 and len(read_descriptions(KnowledgeGraph.load(path))) == 3
    result = runner.invoke(app, ["kg", "describe", str(path), "--out", str(out)])
    assert result.exit_code == 3 and "file exists" in result.output
    result = runner.invoke(app, ["kg", "describe", str(path), "Puffin"])
    assert result.exit_code == 3 and "unknown class 'Puffin'" in result.output
