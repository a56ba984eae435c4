"""`fgmm kg` commands on a tiny graph, through typer's CliRunner."""

from __future__ import annotations

import json

import pytest
import typer
from typer.testing import CliRunner

from fgmm.cli.kg import kg_app
from fgmm.kg import KnowledgeGraph

app = typer.Typer()
app.add_typer(kg_app, name="kg")
runner = CliRunner()

COMMANDS = ("new", "add-class", "add-attribute", "link", "validate", "query", "stats", "export", "show",
            "import-cub")


def run(*args: str, code: int = 0):
    result = runner.invoke(app, ["kg", *map(str, args)], env={"COLUMNS": "250"})
    assert result.exit_code == code, result.output + (result.stderr or "")
    return result


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "birds.ttl"
    run("new", path, "--base", "https://example.org/kg/birds/", "--title", "tiny birds")
    run("add-class", path, "Larus", "--rank", "genus")
    run("add-class", path, "Herring_Gull", "--label", "Herring Gull", "--parent", "Larus", "--rank", "species",
        "--scientific-name", "Larus argentatus", "--description", "A large gull.")
    run("add-class", path, "Ring_billed_Gull", "--label", "Ring-billed Gull", "--parent", "Larus")
    run("add-attribute", path, "has_leg_color::pink", "--group", "has_leg_color", "--part", "leg")
    run("add-attribute", path, "has_leg_color::yellow", "--group", "has_leg_color", "--label", "yellow legs")
    run("link", path, "Herring Gull", "has_leg_color::pink", "0.9")
    run("link", path, "Ring_billed_Gull", "yellow legs", "0.85")
    return path


def test_every_command_has_help_with_an_example():
    for command in COMMANDS:
        result = run(command, "--help")
        assert "Example" in result.output, command


def test_authoring_commands_build_a_valid_graph(tiny):
    kg = KnowledgeGraph.load(tiny)
    assert kg.links() == [("Herring_Gull", "has_leg_color::pink", 0.9),
                          ("Ring_billed_Gull", "has_leg_color::yellow", 0.85)]
    assert kg.describe("class", "Herring_Gull")["scientific_name"] == "Larus argentatus"
    assert "conforms" in run("validate", tiny).output


def test_errors_are_one_red_line_and_exit_code_2(tiny, tmp_path):
    before = tiny.read_bytes()
    result = run("link", tiny, "Herring_Gull", "has_leg_color::pink", "1.5", code=3)
    assert "error:" in result.stderr and "not a number in [0, 1]" in result.stderr
    assert "Traceback" not in result.output + result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert tiny.read_bytes() == before  # nothing written
    assert "unknown class 'Kittiwake'" in run("link", tiny, "Kittiwake", "has_leg_color::pink", "0.5", code=3).stderr
    assert "file exists" in run("new", tiny, code=3).stderr
    broken = tmp_path / "broken.ttl"
    broken.write_text("@prefix fgmm: <https://fgmm.dev/ns#> .\n<a:x> a fgmm:Class ;\n  fgmm:nope .\n")
    assert f"{broken}:3: malformed RDF" in run("stats", broken, code=3).stderr


def test_validate_prints_a_table_and_exits_1(tmp_path):
    path = tmp_path / "bad.ttl"
    path.write_text("""@prefix fgmm: <https://fgmm.dev/ns#> .
<https://example.org/x> a fgmm:Class .
<https://example.org/l> a fgmm:AttributeLink ; fgmm:linkClass <https://example.org/x> ;
    fgmm:linkAttribute <https://example.org/missing> ; fgmm:strength 1.5 .
""")
    result = run("validate", path, code=1)
    for text in ("Violation", "class has no rdfs:label", "strength is outside [0, 1]", "undeclared attribute"):
        assert text in result.output


def test_query(tiny, tmp_path):
    sparql = "SELECT ?label ?s WHERE { ?l fgmm:linkClass ?c ; fgmm:strength ?s . ?c rdfs:label ?label } ORDER BY ?s"
    table = run("query", tiny, sparql).output
    assert "2 rows" in table and "Herring Gull" in table and "Ring-billed Gull" in table
    assert "│ Herring Gull     │ 0.9 " in table
    csv = run("query", tiny, sparql, "--format", "csv").output
    assert csv.split("\n")[:3] == ["label,s", "Ring-billed Gull,0.85", "Herring Gull,0.9"]
    query_file = tmp_path / "count.rq"
    query_file.write_text("SELECT (COUNT(?a) AS ?n) WHERE { ?a a fgmm:Attribute }")
    rows = json.loads(run("query", tiny, f"@{query_file}", "--format", "json").output)
    assert rows["results"]["bindings"][0]["n"]["value"] == "2"
    assert run("query", tiny, "ASK { ?c dwc:taxonRank \"genus\" }").output.strip() == "true"
    assert "SPARQL syntax error" in run("query", tiny, "SELECT WHERE {", code=3).stderr


def test_stats_and_export(tiny, tmp_path):
    stats = json.loads(run("stats", tiny, "--json").output)
    assert (stats["classes"], stats["leaf_classes"], stats["attributes"], stats["groups"], stats["links"]) == \
        (3, 2, 2, 1, 2)
    assert "leaf_classes" in run("stats", tiny).output
    for suffix in (".nt", ".jsonld"):
        out = tmp_path / f"birds{suffix}"
        run("export", tiny, out)
        assert KnowledgeGraph.load(out).isomorphic(KnowledgeGraph.load(tiny))


def test_show_writes_png_and_svg(tiny, tmp_path):
    png = tmp_path / "gull.png"
    run("show", tiny, "Herring_Gull", "--out", png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    svg = tmp_path / "larus.svg"
    run("show", tiny, "Larus", "--out", svg)  # a genus: draws its species
    assert "<svg" in svg.read_text() and "Herring Gull" in svg.read_text()
    assert "use a .png or .svg" in run("show", tiny, "Larus", "--out", tmp_path / "x.gif", code=3).stderr


def test_import_cub_command(tiny_cub, tmp_path):
    out = tmp_path / "cub.nt"
    result = run("import-cub", tiny_cub, "--out", out, "--no-taxonomy")
    assert "3 classes" in result.output and "4 attributes in 2 groups" in result.output
    assert KnowledgeGraph.load(out).stats()["leaf_classes"] == 3
