"""Inconsistent data is reported, never silently accepted; data commands never overwrite users' files.

Issue 8 items 6 (data generate), 7 (CUB cross-checks, `data check` exit codes) and 9 (--json, image size).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli.main import app
from fgmm.data import images as images_module
from fgmm.data import load_cub
from fgmm.data.images import load_image, set_max_image_pixels
from fgmm.errors import ConfigError, DataError
from fgmm.ownership import read_marker

runner = CliRunner()
CUB = "CUB_200_2011"


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result, " ".join(result.output.split())


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


# ---------------------------------------------------------------- item 7: CUB cross-checks
@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: edit(r / CUB / "attributes" / "class_attribute_labels_continuous.txt", "50.0", "nan"),
     "class_attribute_labels_continuous.txt:1: malformed row: 'nan' is not a finite number"),
    (lambda r: edit(r / CUB / "image_class_labels.txt", "10 1", "10 2"),
     "image_class_labels.txt:1: image id 10 is labelled 2 (002.Green_Test_Bird) but images.txt line 1 puts it "
     "in folder '001.Red_Test_Bird'"),
    (lambda r: edit(r / CUB / "classes.txt", "1 001.Red_Test_Bird\n2 002.Green_Test_Bird",
                    "1 002.Green_Test_Bird\n2 001.Red_Test_Bird"),
     "classes.txt:1: class id 1 names folder '002.Green_Test_Bird', whose number is 2: are two rows swapped?"),
    (lambda r: edit(r / CUB / "images.txt", "Red_Test_Bird_0000_10.jpg", "Red_Test_Bird_0000_10.jpg extra"),
     "images.txt:1: malformed row: expected '<id> <name>', 3 fields in"),
    (lambda r: edit(r / CUB / "classes.txt", "3 003.Blue_Test_Bird\n", ""),
     "003.Blue_Test_Bird: image folder is not a class of"),
])
def test_inconsistent_cub_metadata_is_an_error(make_tiny_cub, damage, message):
    root = make_tiny_cub()
    damage(root)
    with pytest.raises(DataError):
        load_cub(root)
    result, text = invoke("data", "check", root, "--shallow")
    assert result.exit_code == 1 and message in text and "NOT OK" in text


def test_nan_attributes_fail_kg_import_in_one_line(make_tiny_cub, tmp_path):
    root = make_tiny_cub()
    edit(root / CUB / "attributes" / "class_attribute_labels_continuous.txt", "75.5", "nan")
    result, text = invoke("kg", "import-cub", root, "--out", tmp_path / "cub.nt")
    assert result.exit_code == 3 and "'nan' is not a finite number" in text


def test_absent_files_are_problems_unless_the_root_is_a_subset(make_tiny_cub):
    missing = make_tiny_cub(missing=1)
    result, text = invoke("data", "check", missing, "--shallow")
    assert result.exit_code == 1 and "1 image file(s) named by the metadata are absent" in text
    result, text = invoke("data", "check", missing, "--shallow", "--allow-subset")
    assert result.exit_code == 0 and "WARNING 1 image file(s)" in text
    no_caption = make_tiny_cub()
    (no_caption / "text_c10" / "001.Red_Test_Bird" / "Red_Test_Bird_0001_12.txt").unlink()
    result, text = invoke("data", "check", no_caption, "--shallow")
    assert result.exit_code == 1 and "1 text file(s) named by the metadata are absent" in text


def test_check_json_output(tiny_cub, tmp_path):
    result, _ = invoke("data", "check", tiny_cub, "--shallow", "--out", tmp_path / "new" / "report.json")
    assert result.exit_code == 0 and (tmp_path / "new" / "report.json").is_file()
    result, text = invoke("data", "check", tiny_cub, "--shallow", "--out", tmp_path / "new")
    assert result.exit_code == 3 and "is a folder" in text
    result, text = invoke("data", "check", tiny_cub, "--shallow", "-o", tmp_path / "new" / "report.json")
    assert result.exit_code == 3 and "exists; pass --force" in text
    result, _ = invoke("data", "check", tiny_cub, "--shallow", "-o", tmp_path / "new" / "report.json", "--force")
    assert result.exit_code == 0


# ---------------------------------------------------------------- item 6: data generate
GENERATE = ("--classes", "2", "--images", "2", "--unseen", "0", "--no-audio")


def test_generate_never_overwrites_a_users_files(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "samples.csv").write_text("my samples")
    result, text = invoke("data", "generate", mine, *GENERATE)
    assert result.exit_code == 3 and "not empty and was not created by fgmm" in text
    result, text = invoke("data", "generate", mine, *GENERATE, "--force")
    assert result.exit_code == 3 and "samples.csv: exists and was not created by fgmm" in text
    assert (mine / "samples.csv").read_text() == "my samples" and sorted(p.name for p in mine.iterdir()) == [
        "samples.csv"]

    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "README.txt").write_text("keep")
    assert invoke("data", "generate", notes, *GENERATE, "--force")[0].exit_code == 0
    assert (notes / "README.txt").read_text() == "keep" and read_marker(notes)["foreign"] == ["README.txt"]

    ours = tmp_path / "ours"
    assert invoke("data", "generate", ours, *GENERATE)[0].exit_code == 0
    assert invoke("data", "generate", ours, *GENERATE, "--seed", "1")[0].exit_code == 0  # its own folder


@pytest.mark.parametrize("option", [["--classes", "0"], ["--classes", "-2"], ["--images", "1"],
                                    ["--noise", "nan"], ["--noise", "1.5"], ["--seed", "-1"],
                                    ["--classes", "3", "--unseen", "3"]])
def test_generate_bad_numbers_are_one_line(tmp_path, option):
    result, text = invoke("data", "generate", tmp_path / "out", *option)
    assert result.exit_code == 3 and text.startswith("error:")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- item 9: too large images
def test_too_large_image_is_named_so_and_the_limit_can_be_set(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.new("RGB", (40, 30)).save(path)
    previous = images_module.max_image_pixels()
    try:
        set_max_image_pixels(1000)
        with pytest.raises(DataError, match=r"image too large: 40 x 30 = 1,200 pixels is over the limit of 1,000"):
            load_image(path)
        set_max_image_pixels(500)  # over twice the limit Pillow itself refuses: the same message
        with pytest.raises(DataError, match=r"image too large: 1,200 pixels is over the limit of 500.*"
                                            r"FGMM_MAX_IMAGE_PIXELS"):
            load_image(path)
        monkeypatch.setenv("FGMM_MAX_IMAGE_PIXELS", "5000")
        images_module._limit_from_environment()
        assert load_image(path).size == (40, 30)
        monkeypatch.setenv("FGMM_MAX_IMAGE_PIXELS", "lots")
        with pytest.raises(ConfigError, match="FGMM_MAX_IMAGE_PIXELS"):
            images_module._limit_from_environment()
    finally:
        set_max_image_pixels(previous)
