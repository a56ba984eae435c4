"""CUB-200-2011 loader on tiny trees in the official layout, and the seeded holdout split."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from fgmm.data import clip_bbox, load_cub, load_dataset
from fgmm.data.splits import holdout_protocol, holdout_split
from fgmm.errors import DataError

CUB = "CUB_200_2011"


def _rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_loads_every_annotation(tiny_cub: Path) -> None:
    ds = load_cub(tiny_cub)
    assert (len(ds), ds.num_classes, ds.name) == (12, 3, "cub200")
    assert ds.class_names == ["Red Test Bird", "Green Test Bird", "Blue Test Bird"]
    assert ds.meta["class_folders"][2] == "003.Blue_Test_Bird"
    first = ds[0]
    assert (first.id, first.label, first.meta["class_id"]) == ("10", 0, 1)
    assert first.image == tiny_cub / CUB / "images" / "001.Red_Test_Bird" / "Red_Test_Bird_0000_10.jpg"
    assert first.meta["bbox"] == (5.0, 5.0, 40.0, 30.0)  # stored raw, past the 40x30 border
    assert ds.meta["part_names"] == ["beak", "left eye", "tail"]
    np.testing.assert_array_equal(first.meta["parts"], [[30, 12, 1], [24, 10, 1], [0, 0, 0]])
    assert [s.label for s in ds] == [0] * 4 + [1] * 4 + [2] * 4
    assert ds.attribute_names[0] == "has_bill_shape::hooked"
    np.testing.assert_allclose(ds.class_attributes[2], [0.25, 0.0, 0.0, 0.755], rtol=1e-6)
    assert [len(s.texts) for s in ds] == [2] * 4 + [0] * 8
    assert ds[1].texts[0] == "this red bird number 1 has a hooked bill."
    assert ds.modality_counts() == {"image": 12, "text": 4, "audio": 0, "location": 0, "time": 0}
    (rec,) = ds.recordings
    assert (rec.id, rec.label, rec.location, rec.time.isoformat()) == ("XC1", 1, (45.5, -122.25),
                                                                       "2020-02-16T00:00:00")
    assert rec.audio == tiny_cub / "audio" / "002.Green_Test_Bird.wav"
    assert rec.meta["recordist"] == "Test Recordist" and rec.meta["locality"] == "Somewhere, Oregon"
    assert ds.meta["missing"] == {"image": [], "text": [], "audio": []}


def test_holdout_when_no_test_image(tiny_cub: Path) -> None:
    ds = load_cub(tiny_cub)
    assert ds.split_protocol == "holdout-20%-per-class-seed0"
    for label in range(3):  # round(0.2 * 4) = 1 test image per class
        assert [p for s, p in zip(ds, ds.split, strict=True) if s.label == label].count("test") == 1
    assert load_cub(tiny_cub).split == ds.split
    assert load_cub(tiny_cub, holdout=0.5, seed=3).split_protocol == "holdout-50%-per-class-seed3"


def test_official_split_when_test_images_present(make_tiny_cub) -> None:
    ds = load_cub(make_tiny_cub(test_ids=(12, 24)))
    assert ds.split_protocol == "official"
    assert [s.id for s, p in zip(ds, ds.split, strict=True) if p == "test"] == ["12", "24"]


def test_missing_images_are_counted_and_reported(make_tiny_cub, caplog) -> None:
    root = make_tiny_cub(missing=2)
    with caplog.at_level(logging.WARNING, logger="fgmm.data.cub"):
        ds = load_cub(root)
    assert len(ds) == 12 and ds.meta["images_listed"] == 14
    assert ds.meta["missing"]["image"] == ["003.Blue_Test_Bird/Blue_Test_Bird_9999_90.jpg",
                                           "003.Blue_Test_Bird/Blue_Test_Bird_9999_91.jpg"]
    assert "2 image file(s)" in caplog.text and "left out" in caplog.text
    kept = load_cub(root, require_images=False)
    assert len(kept) == 14 and [s.image for s in kept[-2:]] == [None, None]


def test_accepts_the_cub_folder_itself_and_autodetects(tiny_cub: Path) -> None:
    assert len(load_cub(tiny_cub / CUB)) == 12
    assert load_dataset(tiny_cub).meta["format"] == "cub"


def test_skip_bad_leaves_out_corrupt_images(tiny_cub_corrupt: Path) -> None:
    assert len(load_cub(tiny_cub_corrupt)) == 12  # not decoded at load time
    ds = load_cub(tiny_cub_corrupt, skip_bad=True)
    assert len(ds) == 11 and "10" not in {s.id for s in ds}
    (bad,) = ds.meta["skipped_bad"]
    assert bad["path"].endswith("Red_Test_Bird_0000_10.jpg") and "truncated" in bad["problem"]


@pytest.mark.parametrize("name", ["images.txt", "classes.txt", "image_class_labels.txt", "train_test_split.txt"])
def test_missing_metadata_file(tiny_cub: Path, name: str) -> None:
    (tiny_cub / CUB / name).unlink()
    with pytest.raises(DataError, match=f"{name}: required CUB metadata file is missing"):
        load_cub(tiny_cub)


def test_malformed_rows_name_file_and_line(tiny_cub: Path) -> None:
    labels = tiny_cub / CUB / "image_class_labels.txt"
    _rewrite(labels, "12 1\n", "12 one\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt:2: malformed row: 'one' is not a number"):
        load_cub(tiny_cub)
    _rewrite(labels, "12 one\n", "12 1 7\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt:2: malformed row: expected 2 fields, found 3"):
        load_cub(tiny_cub)
    _rewrite(labels, "12 1 7\n", "12 1.5\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt:2: malformed row: ids must be whole"):
        load_cub(tiny_cub)
    _rewrite(tiny_cub / CUB / "images.txt", "14 001", "x14 001")
    with pytest.raises(DataError, match=r"images.txt:3: malformed row"):
        load_cub(tiny_cub)


def test_label_out_of_range(tiny_cub: Path) -> None:
    _rewrite(tiny_cub / CUB / "image_class_labels.txt", "22 2\n", "22 4\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt:6: class id 4 is out of range 1..3"):
        load_cub(tiny_cub)


def test_repeated_image_id_and_missing_label_row(tiny_cub: Path) -> None:
    split = tiny_cub / CUB / "train_test_split.txt"
    _rewrite(split, "12 1\n", "10 1\n")
    with pytest.raises(DataError, match=r"train_test_split.txt:2: image id 10 repeats line 1"):
        load_cub(tiny_cub)
    _rewrite(split, "10 1\n", "")
    with pytest.raises(DataError, match=r"no row for image id 12 \(images.txt line 2\)"):
        load_cub(tiny_cub)


def test_empty_dataset(tiny_cub: Path) -> None:
    for image in (tiny_cub / CUB / "images").rglob("*.jpg"):
        image.unlink()
    with pytest.raises(DataError, match="none of the 12 listed images is usable.*the dataset is empty"):
        load_cub(tiny_cub)
    (tiny_cub / CUB / "images.txt").write_text("")
    with pytest.raises(DataError, match="images.txt: no images listed"):
        load_cub(tiny_cub)


def test_image_path_escaping_root(tiny_cub: Path) -> None:
    _rewrite(tiny_cub / CUB / "images.txt", "10 001.Red_Test_Bird", "10 ../../../etc/001.Red_Test_Bird")
    with pytest.raises(DataError, match=r"images.txt:1: path '../../../etc/.*' leaves the dataset root"):
        load_cub(tiny_cub)


def test_bad_caption_files(tiny_cub: Path) -> None:
    caption = tiny_cub / "text_c10" / "001.Red_Test_Bird" / "Red_Test_Bird_0002_14.txt"
    caption.write_text("\n  \n")
    with pytest.raises(DataError, match=r"Red_Test_Bird_0002_14.txt: text file is empty"):
        load_cub(tiny_cub)
    caption.write_bytes("a caf\u00e9 bird\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"Red_Test_Bird_0002_14.txt:1: text is not valid UTF-8"):
        load_cub(tiny_cub)
    ds = load_cub(tiny_cub, skip_bad=True)
    assert [len(s.texts) for s in ds[:4]] == [2, 2, 0, 2]
    assert ds.meta["skipped_bad"][0]["path"] == str(caption)


def test_missing_and_orphan_captions(tiny_cub: Path, caplog) -> None:
    (tiny_cub / "text_c10" / "001.Red_Test_Bird" / "Red_Test_Bird_0003_16.txt").rename(
        tiny_cub / "text_c10" / "001.Red_Test_Bird" / "Red_Test_Bird_0099_99.txt")
    ds = load_cub(tiny_cub)
    assert ds.meta["missing"]["text"] == ["text_c10/001.Red_Test_Bird/Red_Test_Bird_0003_16.txt"]
    assert ds.meta["captions_without_image"] == 1
    assert "1 caption file(s) under text_c10 belong to no loaded image" in caplog.text


def test_unknown_caption_folder(tiny_cub: Path) -> None:
    (tiny_cub / "text_c10" / "999.Dodo").mkdir()
    with pytest.raises(DataError, match=r"999.Dodo: caption folder is not a class"):
        load_cub(tiny_cub)


def test_recordings_errors_and_missing_audio(tiny_cub: Path) -> None:
    csv_path = tiny_cub / "audio" / "recordings.csv"
    _rewrite(csv_path, ",002.Green_Test_Bird,", ",007.Dodo,")
    with pytest.raises(DataError, match=r"recordings.csv:2: class '007.Dodo' is not a CUB class folder"):
        load_cub(tiny_cub)
    _rewrite(csv_path, ",007.Dodo,", ",002.Green_Test_Bird,")
    _rewrite(csv_path, "2020-02-16", "16/02/2020")
    with pytest.raises(DataError, match=r"recordings.csv:2: date '16/02/2020' is not YYYY-MM-DD"):
        load_cub(tiny_cub)
    _rewrite(csv_path, "16/02/2020", "2020-02-16")
    (tiny_cub / "audio" / "002.Green_Test_Bird.wav").unlink()
    ds = load_cub(tiny_cub)
    assert ds.recordings == [] and ds.meta["missing"]["audio"] == ["audio/002.Green_Test_Bird.wav"]


def test_attribute_matrix_shape_is_checked(tiny_cub: Path) -> None:
    matrix = tiny_cub / CUB / "attributes" / "class_attribute_labels_continuous.txt"
    matrix.write_text("50.0 100.0 0.0 0.0\n0.0 10.0 80.0 0.0\n")
    with pytest.raises(DataError, match="2 rows for 3 classes"):
        load_cub(tiny_cub)
    (tiny_cub / "attributes.txt").unlink()
    with pytest.raises(DataError, match="attribute names are missing"):
        load_cub(tiny_cub)


def test_optional_files_may_be_absent(tiny_cub: Path) -> None:
    for rel in ("bounding_boxes.txt", "parts/part_locs.txt", "attributes/class_attribute_labels_continuous.txt"):
        (tiny_cub / CUB / rel).unlink()
    ds = load_cub(tiny_cub)
    assert ds.class_attributes is None and "bbox" not in ds[0].meta and "parts" not in ds[0].meta
    assert len(ds.meta["absent_files"]) == 3


def test_clip_bbox() -> None:
    assert clip_bbox((5.0, 5.0, 40.0, 30.0), 40, 30) == (5.0, 5.0, 35.0, 25.0)
    assert clip_bbox((-3.0, 2.0, 10.0, 10.0), 40, 30) == (0.0, 2.0, 7.0, 10.0)


def test_holdout_split_rules() -> None:
    labels = [0] * 30 + [1] * 29 + [2] + [3] * 2 + [-1]
    split = holdout_split(labels, 0.2, seed=0)
    per_class = {c: [p for lab, p in zip(labels, split, strict=True) if lab == c].count("test") for c in range(4)}
    assert per_class == {0: 6, 1: 6, 2: 0, 3: 1}
    assert split[-1] == "train"
    assert holdout_split(labels, 0.2, seed=0) == split and holdout_split(labels, 0.2, seed=1) != split
    # a class's split does not depend on the other classes
    assert holdout_split(labels[:30], 0.2, seed=0) == split[:30]
    assert holdout_protocol(0.2, 0) == "holdout-20%-per-class-seed0"
    with pytest.raises(ValueError):
        holdout_split(labels, 1.0, 0)


def test_caption_class_ids_are_the_50_reed_classes() -> None:
    from fgmm.data.cub import CUB_CAPTION_CLASS_IDS

    assert len(CUB_CAPTION_CLASS_IDS) == len(set(CUB_CAPTION_CLASS_IDS)) == 50
    assert min(CUB_CAPTION_CLASS_IDS) == 1 and max(CUB_CAPTION_CLASS_IDS) == 197
