"""The CUB-200-2011 class–attribute knowledge graph, built from the official attribute files.

Reads ``attributes.txt`` (312 ``"<id> has_<group>::<value>"`` rows in 28 groups),
``CUB_200_2011/classes.txt`` (200 ``"<id> NNN.Class_Name"`` rows) and
``CUB_200_2011/attributes/class_attribute_labels_continuous.txt`` (200 × 312 percentages of a class's
images annotated with each attribute) and writes:

* 200 ``fgmm:Class`` nodes named by the class folder (``001.Black_footed_Albatross``), ``fgmm:index``
  = official id;
* 312 ``fgmm:Attribute`` nodes named by the official attribute string, ``fgmm:index`` = official id,
  each in one of 28 ``fgmm:AttributeGroup`` nodes (``has_bill_shape``) about one of 16 ``fgmm:Part``
  nodes (bill, wing, ..., body for size/shape/primary colour);
* one weighted link per non-zero percentage: strength = percentage / 100 as an exact decimal
  (``59.8540145985`` → ``0.598540145985``); a ``threshold`` keeps only strengths at or above it;
* with ``taxonomy=True``, the hand-authored ``knowledge/cub_taxonomy.ttl`` merged in (order → family
  → genus above each class, English and scientific names), restricted to the root's classes and
  their ancestors.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from pathlib import Path

from rdflib import Literal, URIRef
from rdflib.namespace import DCTERMS, RDF

from fgmm.data.cub import ATTRIBUTE_MATRIX, ATTRIBUTE_NAME_PLACES, CUB_DIR
from fgmm.errors import ConfigError, DataError
from fgmm.kg.graph import KnowledgeGraph, new_graph
from fgmm.kg.vocab import FGMM, knowledge_file, mint

CUB_BASE = "https://fgmm.dev/kg/cub/"

#: attribute groups whose part is not spelled in their name
GROUP_PARTS: dict[str, str] = {
    "has_size": "body", "has_shape": "body", "has_primary_color": "body",
    "has_upper_tail_color": "tail", "has_under_tail_color": "tail",
}

#: last word of a group name that names the aspect, not the part ("has_bill_shape" → bill)
ASPECTS = ("color", "shape", "pattern", "length", "ring")

#: CUB part keypoints (``parts/parts.txt``) that locate each attribute part in an image
PART_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "back": ("back",), "bill": ("beak",), "belly": ("belly",), "breast": ("breast",), "crown": ("crown",),
    "forehead": ("forehead",), "eye": ("left eye", "right eye"), "leg": ("left leg", "right leg"),
    "wing": ("left wing", "right wing"), "nape": ("nape",), "tail": ("tail",), "throat": ("throat",),
}

PROVENANCE = ("Wah, Branson, Welinder, Perona, Belongie: The Caltech-UCSD Birds-200-2011 Dataset, "
              "CNS-TR-2011-001, 2011; files attributes.txt, CUB_200_2011/classes.txt, "
              f"CUB_200_2011/{ATTRIBUTE_MATRIX}")


def part_of_group(group: str) -> str:
    """The part an attribute group is about: ``has_bill_shape`` → ``bill``, ``has_size`` → ``body``."""
    if group in GROUP_PARTS:
        return GROUP_PARTS[group]
    words = group.removeprefix("has_").split("_")
    if len(words) > 1 and words[-1] in ASPECTS:
        words = words[:-1]
    return "_".join(words)


def words(text: str) -> str:
    """``has_bill_shape`` → ``bill shape``; ``curved_(up_or_down)`` → ``curved (up or down)``."""
    return text.removeprefix("has_").replace("_", " ").strip()


def attribute_label(name: str) -> str:
    """``has_bill_shape::curved_(up_or_down)`` → ``bill shape: curved (up or down)``."""
    group, _, value = name.partition("::")
    return f"{words(group)}: {words(value)}" if value else words(group)


def _rows(path: Path) -> list[tuple[int, int, str]]:
    """``(line, id, text)`` of a ``"<id> <text>"`` file, ids required to be 1..N in order."""
    if not path.is_file():
        raise DataError(path, "required CUB file is missing")
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1)
        if len(fields) != 2 or not fields[0].isdigit():
            raise DataError(path, f"malformed row: expected '<id> <name>', found '{line.strip()}'", number)
        if int(fields[0]) != len(rows) + 1:
            raise DataError(path, f"ids must run 1, 2, 3, ...; found {fields[0]} where {len(rows) + 1} belongs",
                            number)
        rows.append((number, int(fields[0]), fields[1].strip()))
    return rows


def _percentages(path: Path, rows: int, columns: int) -> list[list[str]]:
    """The matrix as decimal strings, checked to be ``rows`` × ``columns`` numbers in [0, 100]."""
    if not path.is_file():
        raise DataError(path, "required CUB file is missing")
    lines = [(n, line.split()) for n, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), 1)
             if line.strip()]
    if len(lines) != rows:
        raise DataError(path, f"{len(lines)} rows for {rows} classes")
    out = []
    for number, tokens in lines:
        if len(tokens) != columns:
            raise DataError(path, f"expected {columns} values (one per attribute), found {len(tokens)}", number)
        for token in tokens:
            try:
                value = Decimal(token)
            except InvalidOperation:
                raise DataError(path, f"'{token}' is not a number", number) from None
            if not value.is_finite():
                raise DataError(path, f"'{token}' is not a finite number", number)
            if not 0 <= value <= 100:
                raise DataError(path, f"percentage {token} is outside [0, 100]", number)
        out.append(tokens)
    return out


def _locate(root: Path) -> tuple[Path, Path]:
    """``(dataset root, CUB_200_2011 folder)`` for a root given as either of them."""
    root = Path(root).expanduser()
    if root.name == CUB_DIR and (root / "classes.txt").is_file():
        return root.parent, root
    if not (root / CUB_DIR).is_dir():
        raise DataError(root, f"not a CUB root: no {CUB_DIR}/ folder inside")
    return root, root / CUB_DIR


def import_cub(root: str | Path, threshold: float | None = None, taxonomy: bool = True) -> KnowledgeGraph:
    """Build the CUB class–attribute knowledge graph from a CUB root (see the module docstring).

    Args:
        root: folder holding ``attributes.txt`` and ``CUB_200_2011/`` (or ``CUB_200_2011`` itself).
        threshold: keep links whose strength is at least this (in ``[0, 1]``); ``None`` keeps every
            non-zero strength. Strengths stay continuous either way.
        taxonomy: merge ``knowledge/cub_taxonomy.ttl`` (class labels, genus, family, order).

    Raises:
        DataError: a file is missing or malformed (file and line), or the taxonomy lacks a class.
        ConfigError: ``threshold`` is outside ``[0, 1]``.
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1], got {threshold}")
    root, meta = _locate(root)
    classes = _rows(meta / "classes.txt")
    names_path = next((root / p for p in ATTRIBUTE_NAME_PLACES if (root / p).is_file()), root / "attributes.txt")
    attributes = _rows(names_path)
    for number, _, name in attributes:
        if "::" not in name:
            raise DataError(names_path, f"attribute '{name}' is not of the form has_<part>::<value>", number)
    matrix = _percentages(meta / ATTRIBUTE_MATRIX, len(classes), len(attributes))

    kept = "every non-zero strength" if threshold is None else f"strengths >= {threshold}"
    kg = KnowledgeGraph(CUB_BASE, title="CUB-200-2011 class-attribute knowledge graph", source=PROVENANCE)
    kg.graph.add((kg.dataset, DCTERMS.description, Literal(
        f"Built by fgmm.kg.import_cub: links keep {kept}; strength = share of a class's images annotated "
        "with the attribute (percentage / 100).")))
    groups = dict.fromkeys(name.split("::", 1)[0] for _, _, name in attributes)
    for part in dict.fromkeys(part_of_group(g) for g in groups):
        keypoints = PART_KEYPOINTS.get(part)
        kg.add_part(part, label=words(part), description=None if keypoints is None else
                    f"Located by the CUB part keypoints: {', '.join(keypoints)}.")
    for group in groups:
        kg.add_group(group, part=part_of_group(group), label=words(group))
    for _, attribute_id, name in attributes:
        kg.add_attribute(name, group=name.split("::", 1)[0], label=attribute_label(name), index=attribute_id)
    class_iris = [mint(CUB_BASE, "class", folder) for _, _, folder in classes]
    tax = _taxonomy(class_iris) if taxonomy else None
    for (_, class_id, folder), iri in zip(classes, class_iris, strict=True):
        label = tax.label(iri) if tax is not None else words(folder.split(".", 1)[-1])
        kg.add_class(folder, label=label, index=class_id)
    attribute_iris = [mint(CUB_BASE, "attribute", name) for _, _, name in attributes]
    minimum = Decimal(0) if threshold is None else Decimal(repr(float(threshold))) * 100
    kg.link_many((class_iri, attribute_iri, float(Decimal(token).scaleb(-2)))
                 for class_iri, row in zip(class_iris, matrix, strict=True)
                 for attribute_iri, token in zip(attribute_iris, row, strict=True)
                 if Decimal(token) > 0 and Decimal(token) >= minimum)
    if tax is not None:
        kg.merge(tax)  # adds taxa, subClassOf, scientific names; records prov:wasDerivedFrom
    return kg


def _taxonomy(class_iris: list[URIRef]) -> KnowledgeGraph:
    """The part of the shipped CUB taxonomy above ``class_iris``: those classes and their ancestors.

    A root with a subset of the 200 classes gets only their taxa, so its leaves stay its classes.
    """
    path = knowledge_file("cub_taxonomy.ttl")
    full = KnowledgeGraph.load(path)
    missing = [iri for iri in class_iris if (iri, RDF.type, FGMM.Class) not in full.graph]
    if missing:
        raise DataError(path, f"the taxonomy has no entry for {len(missing)} CUB classes, e.g. {missing[0]}")
    keep = {full.dataset, *class_iris}
    for iri in class_iris:
        keep.update(full.lineage(iri))
    tax = KnowledgeGraph(full.base, graph=new_graph(), path=path)
    for prefix, namespace in full.graph.namespaces():
        tax.graph.bind(prefix, namespace, override=True, replace=True)
    for triple in full.graph:
        if triple[0] in keep:
            tax.graph.add(triple)
    return tax
