"""``check_dataset``: counts, corrupt and duplicate images, missing files, load errors, format detection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fgmm.data import check_dataset, detect_format, load_cub, load_folder, scan_images, write_folder
from fgmm.errors import ConfigError, DataError


def test_clean_tiny_cub(tiny_cub: Path) -> None:
    report = check_dataset(tiny_cub)
    assert report.ok and report.errors == []
    assert (report.dataset_format, report.num_samples, report.num_classes, report.num_recordings) == ("cub", 12, 3, 1)
    assert report.split_counts == {"train": 9, "test": 3}
    assert report.modality_counts["image"] == 12 and report.modality_counts["text"] == 4
    assert report.corrupt_images == [] and report.duplicate_images == []
    assert report.boxes_past_border == 1  # image 10's box is 5 px past a 40x30 image
    assert "1 bounding box(es) reach past the image border" in report.format()
    assert report.format().endswith("OK")


def test_corrupt_and_duplicate_images_are_found(make_tiny_cub) -> None:
    report = check_dataset(make_tiny_cub(corrupt=True, duplicate=True, missing=1))
    assert not report.ok
    (corrupt,) = report.corrupt_images
    assert corrupt["path"].endswith("Red_Test_Bird_0000_10.jpg") and "truncated" in corrupt["problem"]
    (group,) = report.duplicate_images
    assert [Path(p).name for p in group] == ["Green_Test_Bird_0000_20.jpg", "Green_Test_Bird_0001_22.jpg"]
    assert report.left_out == {"image": 1, "text": 0, "audio": 0}
    text = report.format()
    assert "ERROR   1 image(s) cannot be decoded" in text and "2 images in 1 group(s) have identical content" in text
    assert "1 image file(s) named by the metadata are absent" in text and text.endswith("NOT OK")
    assert json.loads(json.dumps(report.to_dict()))["ok"] is False


def test_shallow_check_does_not_decode(tiny_cub_corrupt: Path) -> None:
    report = check_dataset(tiny_cub_corrupt, deep=False)
    assert report.ok and not report.deep and report.corrupt_images == []


def test_classes_without_images_and_missing_files(tiny_cub: Path, tmp_path: Path) -> None:
    dataset = load_cub(tiny_cub).with_classes([0, 1])
    assert check_dataset(dataset, deep=False).classes_without_images == ["Blue Test Bird"]
    copy = write_folder(load_cub(tiny_cub), tmp_path / "copy")
    (copy / "images" / "20.jpg").unlink()
    (copy / "recordings" / "audio" / "XC1.wav").unlink()
    report = check_dataset(copy)
    assert report.dataset_format == "folder" and not report.ok
    assert sorted(Path(p).name for p in report.missing_files) == ["20.jpg", "XC1.wav"]
    assert "2 file(s) referenced by samples are missing" in report.format()


def test_procedural_set_checks_clean(tiny_procedural) -> None:
    report = check_dataset(tiny_procedural.root)
    assert report.ok and report.warnings == []
    assert report.unseen_classes == [tiny_procedural.class_names[i] for i in tiny_procedural.unseen_classes]
    assert report.modality_counts == {"image": 48, "text": 48, "audio": 48, "location": 48, "time": 48}


def test_load_errors_are_reported_not_raised(tiny_cub: Path, tmp_path: Path) -> None:
    (tiny_cub / "CUB_200_2011" / "classes.txt").unlink()
    report = check_dataset(tiny_cub)
    assert not report.ok and "classes.txt: required CUB metadata file is missing" in report.load_error
    assert "cannot load" in report.format()
    assert "not a dataset root" in check_dataset(tmp_path).load_error


def test_format_detection(tiny_cub: Path, tiny_procedural, tmp_path: Path) -> None:
    assert detect_format(tiny_cub) == "cub" and detect_format(tiny_procedural.root) == "folder"
    with pytest.raises(DataError, match="not a dataset root"):
        detect_format(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        detect_format(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="unknown dataset format 'coco'"):
        check_dataset(tiny_cub, format="coco")
    assert len(load_folder(tiny_procedural.root)) == 48


def test_scan_images_keeps_order_and_reports_problems(tiny_cub_corrupt: Path) -> None:
    paths = sorted((tiny_cub_corrupt / "CUB_200_2011" / "images").rglob("*.jpg"))[:3]
    scans = scan_images([*paths, paths[0].with_name("absent.jpg")], digest=True, workers=2)
    assert [s.path for s in scans[:3]] == paths
    assert "truncated" in scans[0].problem and scans[1].size == (40, 30) and len(scans[1].digest) == 64
    assert scans[3].problem == "file not found"
