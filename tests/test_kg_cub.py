"""import_cub on tiny CUB roots, and the shipped taxonomy of the 200 CUB classes."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from fgmm.errors import ConfigError, DataError
from fgmm.kg import CUB_BASE, DWC, KnowledgeGraph, import_cub, knowledge_file
from fgmm.kg.cub import attribute_label, part_of_group
from fgmm.kg.vocab import name_of

CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
ATTRIBUTES = ("has_bill_shape::hooked_seabird", "has_bill_shape::dagger", "has_upper_tail_color::black",
              "has_size::medium_(9_-_16_in)")
MATRIX = ("59.8540145985 0.0 2.9197080292 100.0",
          "0.0 12.5 0.0 33.3333333333",
          "7.14285714286 0.0 50.0 0.5")


def make_root(tmp_path: Path, matrix=MATRIX, classes=CLASSES) -> Path:
    root = tmp_path / "cub"
    (root / "CUB_200_2011" / "attributes").mkdir(parents=True)
    (root / "attributes.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(ATTRIBUTES, 1)))
    (root / "CUB_200_2011" / "classes.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes, 1)))
    (root / "CUB_200_2011" / "attributes" / "class_attribute_labels_continuous.txt").write_text(
        "\n".join(matrix) + "\n")
    return root


def test_import_with_taxonomy(tmp_path):
    kg = import_cub(make_root(tmp_path))
    assert kg.base == CUB_BASE
    assert kg.classes(leaves_only=True) == list(CLASSES)
    assert kg.attributes() == list(ATTRIBUTES)  # official order (fgmm:index), not alphabetical
    assert kg.groups() == ["has_bill_shape", "has_size", "has_upper_tail_color"]
    assert sorted(kg.parts()) == ["bill", "body", "tail"]
    assert kg.describe("attribute", "has_upper_tail_color::black")["part"] == "tail"
    # exact decimal strengths: percent / 100 without binary rounding, zeros left out
    assert kg.strength("001.Black_footed_Albatross", "has_bill_shape::hooked_seabird") == 0.598540145985
    assert kg.strength("003.Sooty_Albatross", "has_size::medium_(9_-_16_in)") == 0.005
    assert kg.strength("001.Black_footed_Albatross", "has_bill_shape::dagger") is None
    assert len(kg.links()) == 8
    matrix, rows, columns = kg.class_attribute_matrix()
    expected = [[float(Decimal(v) / 100) for v in row.split()] for row in MATRIX]
    assert rows == list(CLASSES) and columns == list(ATTRIBUTES) and matrix.tolist() == expected
    # the taxonomy came along: English names, ranks and the path to the root
    assert kg.label(kg.node("class", "001.Black_footed_Albatross")) == "Black-footed Albatross"
    assert [kg.label(n) for n in kg.lineage("Black-footed Albatross")] == \
        ["Black-footed Albatross", "Phoebastria", "Diomedeidae", "Procellariiformes", "Aves"]
    assert kg.describe("class", "003.Sooty_Albatross")["scientific_name"] == "Phoebetria fusca"
    assert kg.query("ASK { kg: prov:wasDerivedFrom <https://fgmm.dev/kg/cub-taxonomy/> }").askAnswer
    assert kg.validate().conforms
    # dataset class names as the CUB loader writes them resolve to the classes
    data = kg.to_pyg(class_order=["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"])
    assert data["class"].names[:3] == list(CLASSES) and data["class"].label_index[:3].tolist() == [0, 1, 2]
    assert int(data["class"].is_leaf.sum()) == 3


def test_threshold_and_no_taxonomy(tmp_path):
    kg = import_cub(make_root(tmp_path), threshold=0.3, taxonomy=False)
    assert [(c, a) for c, a, _ in kg.links()] == [
        ("001.Black_footed_Albatross", "has_size::medium_(9_-_16_in)"),
        ("001.Black_footed_Albatross", "has_bill_shape::hooked_seabird"),
        ("002.Laysan_Albatross", "has_size::medium_(9_-_16_in)"),
        ("003.Sooty_Albatross", "has_upper_tail_color::black")]
    assert kg.strength("002.Laysan_Albatross", "has_size::medium_(9_-_16_in)") == 0.333333333333
    assert kg.classes() == list(CLASSES)  # no taxa without the taxonomy
    assert kg.label(kg.node("class", "002.Laysan_Albatross")) == "Laysan Albatross"
    with pytest.raises(ConfigError, match="threshold"):
        import_cub(make_root(tmp_path / "b"), threshold=30)


def test_import_accepts_the_cub_folder_itself(tmp_path):
    root = make_root(tmp_path)
    kg = import_cub(root / "CUB_200_2011", taxonomy=False)
    assert len(kg.links()) == 8


@pytest.mark.parametrize(("matrix", "line", "message"), [
    (MATRIX[:2], None, "2 rows for 3 classes"),
    (("59.8 0.0 2.9 100.0", "0.0 12.5 0.0", MATRIX[2]), 2, "expected 4 values"),
    ((MATRIX[0], "0.0 12.5 x 1.0", MATRIX[2]), 2, "'x' is not a number"),
    ((MATRIX[0], MATRIX[1], "7.1 0.0 150.0 0.5"), 3, r"percentage 150.0 is outside \[0, 100\]"),
])
def test_malformed_matrix_names_file_and_line(tmp_path, matrix, line, message):
    with pytest.raises(DataError, match=message) as caught:
        import_cub(make_root(tmp_path, matrix=matrix))
    assert caught.value.path.name == "class_attribute_labels_continuous.txt" and caught.value.line == line


def test_missing_files_and_unknown_classes(tmp_path):
    with pytest.raises(DataError, match="not a CUB root"):
        import_cub(tmp_path)
    root = make_root(tmp_path)
    (root / "attributes.txt").unlink()
    with pytest.raises(DataError, match="required CUB file is missing"):
        import_cub(root)
    other = make_root(tmp_path / "other", classes=("001.Dodo", "002.Laysan_Albatross", "003.Sooty_Albatross"))
    with pytest.raises(DataError, match="the taxonomy has no entry for 1 CUB classes.*001.Dodo"):
        import_cub(other)
    assert len(import_cub(other, taxonomy=False).classes()) == 3


def test_attribute_naming():
    assert part_of_group("has_bill_shape") == "bill" and part_of_group("has_primary_color") == "body"
    assert part_of_group("has_under_tail_color") == "tail" and part_of_group("has_eye_ring") == "eye"
    assert part_of_group("has_upperparts_color") == "upperparts"
    assert attribute_label("has_bill_shape::curved_(up_or_down)") == "bill shape: curved (up or down)"


def test_shipped_taxonomy_covers_200_classes():
    tax = KnowledgeGraph.load(knowledge_file("cub_taxonomy.ttl"), base=CUB_BASE)
    leaves = tax.nodes("class")
    leaves = [n for n in leaves if not tax.children(n)]
    names = [name_of(n) for n in leaves]
    assert len(leaves) == 200
    assert [int(name.split(".")[0]) for name in sorted(names)] == list(range(1, 201))
    assert all(re.fullmatch(r"\d{3}\.[A-Za-z_]+", name) for name in names)
    rank = {n: str(tax.graph.value(n, DWC.taxonRank)) for n in tax.nodes("class")}
    scientific = {n: str(tax.graph.value(n, DWC.scientificName)) for n in tax.nodes("class")}
    counts: dict[str, int] = {}
    for leaf in leaves:
        path = tax.lineage(leaf)
        ranks = [rank[n] for n in path]
        assert ranks[-3:] == ["family", "order", "class"] and len(path) in (4, 5), name_of(leaf)
        assert ranks[0] in ("species", "genus") and tax.label(leaf)
        if ranks[0] == "species":
            assert ranks[1] == "genus" and scientific[leaf].split()[0] == scientific[path[1]], name_of(leaf)
        counts[ranks[0]] = counts.get(ranks[0], 0) + 1
    assert counts == {"species": 196, "genus": 4}
    assert [name_of(n) for n in tax.lineage("001.Black_footed_Albatross")] == \
        ["001.Black_footed_Albatross", "Phoebastria", "Diomedeidae", "Procellariiformes", "Aves"]
    assert tax.stats()["ranks"] == {"class": 1, "family": 37, "genus": 123, "order": 13, "species": 196}
    assert tax.validate().conforms
