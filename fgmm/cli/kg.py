"""``fgmm kg``: author, check, query, export and draw knowledge graphs.

Commands that change a graph (``add-class``, ``add-attribute``, ``link``) read the file, apply the
change and write it back atomically in the same format.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import typer
from rich.table import Table

from fgmm.cli._common import EXIT_PROBLEMS, console, friendly_errors, one_path, print_json
from fgmm.errors import DataError, UsageError
from fgmm.ownership import check_new_file

kg_app = typer.Typer(help="Author, validate, query, export and draw knowledge graphs (RDF/Turtle).",
                     no_args_is_help=True)

KG_ARGUMENT = typer.Argument(..., help="knowledge graph file (.ttl, .nt, .jsonld, ...)")


def _load(path: Path):
    from fgmm.kg import KnowledgeGraph

    return KnowledgeGraph.load(path)


@kg_app.command("new", epilog="Example: fgmm kg new birds.ttl --base https://example.org/kg/birds/ "
                              "--title 'My birds'")
@friendly_errors
def new(
    path: Path = typer.Argument(..., help="file to create (.ttl, .nt, .jsonld)"),
    base: str = typer.Option("https://fgmm.dev/kg/default/", help="namespace of the graph's nodes"),
    title: str | None = typer.Option(None, help="title of the graph"),
    source: str | None = typer.Option(None, help="where the knowledge comes from (provenance)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing file"),
) -> None:
    """Create an empty knowledge graph file."""
    from fgmm.kg import KnowledgeGraph

    check_new_file(path, force, what="knowledge graph file")
    KnowledgeGraph(base, title=title, source=source).save(path)
    console.print(f"created {path} (namespace {base})")


@kg_app.command("add-class", epilog="Example: fgmm kg add-class birds.ttl Herring_Gull --label 'Herring Gull' "
                                    "--parent Larus --rank species")
@friendly_errors
def add_class(
    path: Path = KG_ARGUMENT,
    name: str = typer.Argument(..., help="class name (unique identifier)"),
    label: str | None = typer.Option(None, help="human-readable name (default: the name)"),
    parent: str | None = typer.Option(None, help="existing class this one is a subclass of"),
    description: str | None = typer.Option(None, help="free-text description"),
    rank: str | None = typer.Option(None, help="taxonomic rank: species, genus, family, order, ..."),
    scientific_name: str | None = typer.Option(None, help="scientific name"),
) -> None:
    """Add a class (a species or a taxon) to a graph."""
    kg = _load(path)
    kg.add_class(name, label=label, parent=parent, description=description, rank=rank,
                 scientific_name=scientific_name)
    kg.save(path)
    console.print(f"added class {name} to {path}")


@kg_app.command("add-attribute", epilog="Example: fgmm kg add-attribute birds.ttl has_bill_color::yellow "
                                        "--group has_bill_color --part bill")
@friendly_errors
def add_attribute(
    path: Path = KG_ARGUMENT,
    name: str = typer.Argument(..., help="attribute name, e.g. has_bill_color::yellow"),
    group: str = typer.Option(..., help="attribute group (created when missing)"),
    part: str | None = typer.Option(None, help="part the group is about (created when missing)"),
    label: str | None = typer.Option(None, help="human-readable name (default: the name)"),
    description: str | None = typer.Option(None, help="free-text description"),
) -> None:
    """Add an attribute in an attribute group (and the group and part when new)."""
    kg = _load(path)
    kg.add_attribute(name, group=group, part=part, label=label, description=description)
    kg.save(path)
    console.print(f"added attribute {name} (group {group}) to {path}")


@kg_app.command("link", epilog="Example: fgmm kg link birds.ttl Herring_Gull has_bill_color::yellow 0.93")
@friendly_errors
def link(
    path: Path = KG_ARGUMENT,
    class_name: str = typer.Argument(..., metavar="CLASS", help="class name or label"),
    attribute: str = typer.Argument(..., help="attribute name or label"),
    strength: float = typer.Argument(..., help="how strongly the class shows the attribute, in [0, 1]"),
) -> None:
    """Link a class to an attribute with a strength (replaces an existing strength)."""
    kg = _load(path)
    kg.link(class_name, attribute, strength)
    kg.save(path)
    console.print(f"linked {class_name} -> {attribute} ({strength:g}) in {path}")


@kg_app.command("validate", epilog="Examples:\n\n  fgmm kg validate birds.ttl\n\n"
                                   "  fgmm kg validate birds.ttl --json")
@friendly_errors
def validate(
    path: Path = KG_ARGUMENT,
    shapes: Path | None = typer.Option(None, help="SHACL shapes file (default: the fgmm shapes shipped with the "
                                                  "package)"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON to stdout"),
) -> None:
    """Check a graph against the fgmm SHACL shapes; exit code 1 when it does not conform."""
    from dataclasses import asdict

    report = _load(path).validate(shapes)
    if as_json:
        print_json({"graph": str(path), "conforms": report.conforms, "violations": report.severity_count("Violation"),
                    "warnings": report.severity_count("Warning"), "results": [asdict(v) for v in report]})
        if not report.conforms:
            raise typer.Exit(code=EXIT_PROBLEMS)
        return
    if not report:
        console.print(f"[green]{path} conforms[/]: no violations")
        return
    table = Table(title=f"{path}: {report.severity_count('Violation')} violations, "
                        f"{report.severity_count('Warning')} warnings")
    for column in ("severity", "focus node", "path", "message", "value"):
        table.add_column(column, overflow="fold")
    for v in report:
        style = "red" if v.severity == "Violation" else "yellow"
        table.add_row(f"[{style}]{v.severity}[/]", v.focus, v.path or "", v.message, v.value or "")
    console.print(table)
    if not report.conforms:
        raise typer.Exit(code=EXIT_PROBLEMS)


@kg_app.command("query", epilog="Examples:\n\n  fgmm kg query birds.ttl "
                                "'SELECT ?c ?a WHERE { ?c fgmm:hasAttribute ?a }'\n\n"
                                "  fgmm kg query cub.ttl @strong_links.rq --format csv")
@friendly_errors
def query(
    path: Path = KG_ARGUMENT,
    sparql: str = typer.Argument(..., help="a SPARQL query, or @FILE to read it from a file; prefixes fgmm:, "
                                           "rdfs:, dwc:, dcterms:, kg: (the graph's namespace) are declared"),
    fmt: Literal["table", "csv", "json"] = typer.Option("table", "--format", help="table, csv or json"),
    as_json: bool = typer.Option(False, "--json", help="print JSON to stdout (same as --format json)"),
) -> None:
    """Run a SPARQL query and print the result."""
    from rdflib import Literal

    from fgmm.kg.validate import short

    if sparql.startswith("@"):
        source = Path(sparql[1:])
        if not source.is_file():
            raise DataError(source, "SPARQL query file does not exist")
        sparql = source.read_text(encoding="utf-8")
    fmt = "json" if as_json else fmt
    kg = _load(path)
    result = kg.query(sparql)
    if result.type == "ASK":
        console.print(str(bool(result.askAnswer)).lower())
        return
    if result.type != "SELECT":
        console.print(result.serialize(format="turtle").decode("utf-8"), markup=False, highlight=False)
        return
    if fmt != "table":
        console.print(result.serialize(format=fmt).decode("utf-8"), markup=False, highlight=False)
        return
    columns = [str(v) for v in result.vars]
    table = Table(title=f"{len(result)} rows")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in result:
        table.add_row(*(str(v) if isinstance(v, Literal) else short(kg.graph, v) or "" for v in row))
    console.print(table)


@kg_app.command("stats", epilog="Example: fgmm kg stats cub.ttl --json")
@friendly_errors
def stats(
    path: Path = KG_ARGUMENT,
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Counts of classes (leaves/taxa), attributes, groups, parts and links, and strength summary."""
    summary = _load(path).stats()
    if as_json:
        print_json(summary)
        return
    table = Table(title=str(path))
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        shown = ", ".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else (
            f"{value:.4f}" if isinstance(value, float) else str(value))
        table.add_row(key, shown)
    console.print(table)


@kg_app.command("export", epilog="Examples:\n\n  fgmm kg export birds.ttl -o birds.jsonld\n\n"
                                 "  fgmm kg export cub.ttl --out cub.nt")
@friendly_errors
def export(
    path: Path = KG_ARGUMENT,
    out_argument: Path | None = typer.Argument(None, metavar="[OUT]", show_default=False,
                                               help="same as --out (the older form)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="output file; the format follows its suffix "
                                                              "(.ttl, .nt, .jsonld, .rdf)"),
    fmt: str | None = typer.Option(None, "--format", help="rdflib format name, overriding the suffix"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """Write a graph in another RDF format (exact round trip)."""
    out = one_path(out, out_argument, "output file", "with --out/-o FILE")
    check_new_file(out, force)
    kg = _load(path)
    kg.save(out, format=fmt)
    console.print(f"wrote {len(kg)} triples to {out}")


@kg_app.command("show", epilog="Example: fgmm kg show cub.ttl 001.Black_footed_Albatross --out albatross.png")
@friendly_errors
def show(
    path: Path = KG_ARGUMENT,
    class_name: str = typer.Argument(..., metavar="CLASS", help="class name or label"),
    out: Path = typer.Option(..., "--out", "-o", help="picture to write (.png or .svg)"),
    top_k: int = typer.Option(12, min=1, help="how many of the strongest attributes to draw"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """Draw a class's neighbourhood: strongest attributes, their parts, its taxonomy path."""
    from fgmm.kg.draw import draw_class

    check_new_file(out, force, what="picture (--out)")
    draw_class(_load(path), class_name, out, top_k=top_k)
    console.print(f"wrote {out}")


@kg_app.command("describe", epilog="Examples:\n\n  fgmm kg describe cub.nt 'Vermilion Flycatcher'\n\n"
                                   "  fgmm kg describe cub.nt --out descriptions.jsonl\n\n"
                                   "  fgmm kg describe birds.ttl --write")
@friendly_errors
def describe(
    path: Path = KG_ARGUMENT,
    class_name: str | None = typer.Argument(None, metavar="[CLASS]",
                                            help="class name or label (default: every leaf class)"),
    variants: int = typer.Option(10, help="caption-style variants per class"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write the descriptions as JSON lines"),
    write: bool = typer.Option(False, "--write", help="store the descriptions in the graph file (replaces "
                                                      "descriptions generated earlier, never authored text)"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --out file"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Describe classes in words from their attributes, taxonomy and authored text (deterministic)."""
    from fgmm.kg.describe import DescribeConfig, Describer, export_descriptions, write_descriptions

    if out is not None and out.exists() and not force:
        raise DataError(out, "file exists; use --force to overwrite it")
    kg = _load(path)
    config = DescribeConfig(variants=variants)
    describer = Describer(kg, config)
    descriptions = [describer.describe(class_name)] if class_name else describer.describe_all()
    if out is not None:
        export_descriptions(descriptions, out)
    if write:
        write_descriptions(kg, descriptions, config)
        kg.save(path)
    if as_json:
        print_json([d.to_dict() for d in descriptions])
    elif class_name:
        d = descriptions[0]
        console.print(d.text, highlight=False)
        table = Table(title=f"{d.label}: the attribute values its descriptions use")
        for column, justify in (("attribute", "left"), ("strength", "right"), ("vs. average class", "right")):
            table.add_column(column, justify=justify)
        for e in sorted(d.evidence, key=lambda e: -e.contrast):
            table.add_row(e.attribute, f"{e.strength:.2f}", f"{e.contrast:+.2f}")
        console.print(table)
        for variant in d.variants:
            console.print(f"  - {variant}", highlight=False)
    elif out is None and not write:
        for d in descriptions:
            console.print(f"[bold]{d.name}[/]: {d.text}", highlight=False)
    done = [f"wrote {out}" if out else "", f"stored {len(descriptions)} descriptions in {path}" if write else ""]
    if any(done):
        console.print("; ".join(x for x in done if x))


@kg_app.command("import-cub", epilog="Example: fgmm kg import-cub data/cub200 --out cub.nt --threshold 0.05")
@friendly_errors
def import_cub(
    root: Path = typer.Argument(..., help="CUB root (holding attributes.txt and CUB_200_2011/)"),
    out: Path = typer.Option(..., "--out", "-o", help="knowledge graph file to write (.nt is fastest)"),
    threshold: float | None = typer.Option(None, help="keep links with strength >= this (default: all > 0)"),
    taxonomy: bool = typer.Option(True, "--taxonomy/--no-taxonomy",
                                  help="merge the shipped order/family/genus taxonomy"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """Build the CUB class-attribute graph from the official attribute files."""
    from fgmm.kg.cub import import_cub as build

    check_new_file(out, force, what="knowledge graph file (--out)")
    if threshold is not None and not 0 <= threshold <= 1:
        raise UsageError(f"--threshold must be in [0, 1], got {threshold}")
    start = time.perf_counter()
    kg = build(root, threshold=threshold, taxonomy=taxonomy)
    built = time.perf_counter() - start
    kg.save(out)
    s = kg.stats()
    console.print(f"{s['leaf_classes']} classes ({s['taxa']} taxa above them), {s['attributes']} attributes in "
                  f"{s['groups']} groups, {s['links']} links; built in {built:.1f} s, wrote {out}")
