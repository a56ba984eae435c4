"""The generic folder/CSV format: loading, errors naming file and line, and exact round-trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fgmm.data import load_cub, load_dataset, load_folder, write_folder
from fgmm.data.folder import resolve_inside
from fgmm.errors import DataError

HEADER = "id,label,image,texts,audio,latitude,longitude,time,split,clean_label,meta,photographer\n"


def _root(tmp_path: Path, rows: str, classes: str = "name,description,unseen\nwren,a small bird,0\nrobin,,1\n",
          header: str = HEADER) -> Path:
    root = tmp_path / "data"
    (root / "texts").mkdir(parents=True)
    (root / "texts" / "a.txt").write_text("a brown bird\n\nwith a cocked tail\n")
    (root / "classes.csv").write_text(classes)
    (root / "samples.csv").write_text(header + rows)
    return root


def test_load_minimal_folder(tmp_path: Path) -> None:
    root = _root(tmp_path, 'a,wren,img/a.jpg,texts/a.txt,,51.5,-0.25,2021-05-04T06:30:00,train,robin,'
                           '"{""bbox"": [1, 2, 3, 4]}",Ann\n'
                           "b,,img/b.jpg,,snd/b.wav,,,,test,,,\n")
    ds = load_dataset(root)
    assert ds.meta["format"] == "folder" and ds.name == "data" and ds.split_protocol == "given"
    a, b = ds
    assert (a.label, a.texts, a.location, a.time.hour) == (0, ["a brown bird", "with a cocked tail"], (51.5, -0.25), 6)
    assert a.image == root / "img" / "a.jpg" and b.audio == root / "snd" / "b.wav"
    assert a.meta == {"bbox": [1, 2, 3, 4], "photographer": "Ann", "clean_label": 1}
    assert (b.label, b.texts, b.location, b.time, b.meta) == (-1, [], None, None, {})
    assert ds.split == ["train", "test"] and ds.unseen_classes == [1]
    assert ds.class_descriptions == {0: "a small bird"} and ds.class_attributes is None


@pytest.mark.parametrize(("row", "message"), [
    ("a,sparrow,,,,,,,,,,\n", r"samples.csv:2: label 'sparrow' is not a class of classes.csv"),
    ("a,wren,../outside.jpg,,,,,,,,,\n", r"samples.csv:2: path '../outside.jpg' leaves the dataset root"),
    ("a,wren,/etc/passwd,,,,,,,,,\n", r"samples.csv:2: path '/etc/passwd' leaves the dataset root"),
    ("a,wren,,,C:\\x.wav,,,,,,,\n", r"samples.csv:2: path 'C:\\x.wav' leaves the dataset root"),
    ("a,wren,,texts/none.txt,,,,,,,,\n", r"samples.csv:2: texts file .*none.txt: text file is missing"),
    ("a,wren,,,,91,0,,,,,\n", r"samples.csv:2: latitude 91.0 is outside \[-90, 90\]"),
    ("a,wren,,,,10,,,,,,\n", r"samples.csv:2: latitude and longitude must be given together"),
    ("a,wren,,,,,,yesterday,,,,\n", r"samples.csv:2: time 'yesterday' is not ISO 8601"),
    ("a,wren,,,,,,,holdout,,,\n", r"samples.csv:2: split 'holdout' is not one of train, val, test"),
    ("a,wren,,,,,,,train,,,\nb,wren,,,,,,,,,,\n", r"samples.csv:3: split must be given on every row or on none"),
    ("a,wren,,,,,,,,,,\na,wren,,,,,,,,,,\n", r"samples.csv:3: id 'a' repeats line 2"),
    ("a,wren,,,,,,,,,[1],\n", r"samples.csv:2: meta must be a JSON object"),
    ("a,wren,,,,,,,,,,,extra\n", r"samples.csv:2: row has more fields than the header"),
    ("a,wren\n", r"samples.csv:2: row has fewer fields than the header"),
    ("", r"samples.csv: the dataset is empty"),
])
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_folder(_root(tmp_path, row))


def test_bad_classes_and_texts(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"classes.csv:3: class 'wren' is listed twice"):
        load_folder(_root(tmp_path / "1", "", classes="name\nwren\nwren\n"))
    with pytest.raises(DataError, match=r"classes.csv:1: unknown column\(s\) genus"):
        load_folder(_root(tmp_path / "2", "", classes="name,genus\nwren,x\n"))
    with pytest.raises(DataError, match=r"samples.csv:1: missing column\(s\) id"):
        load_folder(_root(tmp_path / "3", "wren\n", header="label\n"))
    root = _root(tmp_path / "4", "a,wren,,texts/a.txt,,,,,,,,\n")
    (root / "texts" / "a.txt").write_bytes(b"ok\n\xff\xfe broken\n")
    with pytest.raises(DataError, match=r"samples.csv:2: texts file .*a.txt: text is not valid UTF-8"):
        load_folder(root)
    with pytest.raises(DataError, match="dataset folder does not exist"):
        load_folder(tmp_path / "nowhere")


def test_class_attributes_file(tmp_path: Path) -> None:
    root = _root(tmp_path, "a,wren,,,,,,,,,,\n")
    (root / "class_attributes.csv").write_text("class,has_tail::cocked,has_size::small\nrobin,0.1,0.5\nwren,1.0,0.9\n")
    ds = load_folder(root)
    assert ds.attribute_names == ["has_tail::cocked", "has_size::small"]
    np.testing.assert_allclose(ds.class_attributes, [[1.0, 0.9], [0.1, 0.5]])
    (root / "class_attributes.csv").write_text("class,has_tail::cocked\nwren,1.5\nrobin,0\n")
    with pytest.raises(DataError, match=r"class_attributes.csv:2: has_tail::cocked 1.5 is outside \[0, 1\]"):
        load_folder(root)
    (root / "class_attributes.csv").write_text("class,has_tail::cocked\nwren,1\n")
    with pytest.raises(DataError, match=r"class_attributes.csv: no attribute row for 1 class\(es\), e.g. 'robin'"):
        load_folder(root)


def test_resolve_inside_allows_inner_dotdot(tmp_path: Path) -> None:
    assert resolve_inside(tmp_path, "a/../b.jpg", source=tmp_path) == tmp_path / "a/../b.jpg"
    with pytest.raises(DataError):
        resolve_inside(tmp_path, "a/../../b.jpg", source=tmp_path)


def _same_samples(left, right) -> None:
    assert [s.id for s in left] == [s.id for s in right]
    for a, b in zip(left, right, strict=True):
        assert (a.label, a.texts, a.location, a.time) == (b.label, b.texts, b.location, b.time)
        assert a.image is None or a.image.read_bytes() == b.image.read_bytes()
        assert a.audio is None or a.audio.read_bytes() == b.audio.read_bytes()


def test_round_trip_of_procedural_dataset(tiny_procedural, tmp_path: Path) -> None:
    copy = load_folder(write_folder(tiny_procedural, tmp_path / "copy"))
    _same_samples(tiny_procedural, copy)
    assert [s.meta for s in copy] == [s.meta for s in tiny_procedural]
    assert copy[0].image == tmp_path / "copy" / "images" / f"{copy[0].id}.jpg"  # copied into the new root
    assert (copy.class_names, copy.split, copy.split_protocol, copy.unseen_classes, copy.attribute_names) == (
        tiny_procedural.class_names, tiny_procedural.split, tiny_procedural.split_protocol,
        tiny_procedural.unseen_classes, tiny_procedural.attribute_names)
    np.testing.assert_array_equal(copy.class_attributes, tiny_procedural.class_attributes)
    assert copy.class_descriptions == tiny_procedural.class_descriptions
    assert copy.meta == tiny_procedural.meta
    # rewriting in place references the files where they are and changes no byte
    before = {p: p.read_bytes() for p in copy.root.rglob("*") if p.is_file()}
    write_folder(copy, copy.root)
    assert {p: p.read_bytes() for p in copy.root.rglob("*") if p.is_file()} == before


def test_round_trip_of_cub_dataset(tiny_cub: Path, tmp_path: Path) -> None:
    cub = load_cub(tiny_cub)
    copy = load_folder(write_folder(cub, tmp_path / "copy"))
    _same_samples(cub, copy)
    assert copy.split == cub.split and copy.split_protocol == cub.split_protocol
    assert copy[0].meta["bbox"] == [5.0, 5.0, 40.0, 30.0]
    assert copy[0].meta["parts"] == cub[0].meta["parts"].tolist()
    _same_samples(cub.recordings, copy.recordings)
    assert copy.recordings[0].meta == cub.recordings[0].meta
    assert copy.meta["class_folders"] == cub.meta["class_folders"]


def test_write_refuses_repeated_ids(tiny_procedural, tmp_path: Path) -> None:
    twice = tiny_procedural.subset([0, 0])
    with pytest.raises(DataError, match=f"sample id '{tiny_procedural[0].id}' is not unique"):
        write_folder(twice, tmp_path / "twice")
