"""``fgmm data audit`` on a tiny folder: duplicates and leakage, corrupt files, label suspects, and the
dataset folder left byte-identical."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli.main import app

runner = CliRunner()
COLORS = {"Red Bird": (200, 40, 40), "Green Bird": (40, 170, 60), "Blue Bird": (40, 70, 200)}


def _image(color: tuple[int, int, int], seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    texture = rng.random((12, 12, 1)) * 0.6 + 0.4
    return Image.fromarray((texture * np.array(color)).astype(np.uint8)).resize((64, 64), Image.Resampling.BICUBIC)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@pytest.fixture()
def crawled(tmp_path: Path) -> Path:
    """3 classes x 6 images with captions; an exact copy and a resized copy of training images in the test
    split (leakage), a truncated JPEG, and one red bird labelled green."""
    root = tmp_path / "crawled"
    (root / "images").mkdir(parents=True)
    (root / "texts").mkdir()
    rows = []
    for c, (name, color) in enumerate(COLORS.items()):
        for k in range(6):
            sid = f"{c}-{k}"
            (root / "images" / f"{sid}.jpg").write_bytes(_jpeg(_image(color, 10 * c + k)))
            (root / "texts" / f"{sid}.txt").write_text(f"a {name.split()[0].lower()} bird on a branch\n")
            label = "Green Bird" if sid == "0-5" else name
            rows.append([sid, label, f"images/{sid}.jpg", f"texts/{sid}.txt", "test" if k == 4 else "train"])
    shutil.copyfile(root / "images" / "1-0.jpg", root / "images" / "copy.jpg")
    _image(COLORS["Blue Bird"], 20).resize((48, 48)).save(root / "images" / "resized.png")
    (root / "images" / "broken.jpg").write_bytes(_jpeg(_image((90, 90, 90), 99))[:300])
    rows += [["copy", "Green Bird", "images/copy.jpg", "", "test"],
             ["resized", "Blue Bird", "images/resized.png", "", "test"],
             ["broken", "Blue Bird", "images/broken.jpg", "", "train"]]
    with open(root / "samples.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "label", "image", "texts", "split"])
        writer.writerows(rows)
    (root / "classes.csv").write_text("name\n" + "\n".join(COLORS) + "\n")
    return root


def _snapshot(root: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry under ``root``: content hash (files), size and modification time."""
    out = {}
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        out[str(path.relative_to(root))] = (digest, stat.st_size if path.is_file() else 0, stat.st_mtime_ns)
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_audit_cli_reports_and_leaves_folder_byte_identical(crawled: Path, tmp_path: Path) -> None:
    before = _snapshot(crawled)
    out = tmp_path / "audit"
    result = runner.invoke(app, ["data", "audit", str(crawled), "--out", str(out), "--vision", "efficientnet_lite0",
                                 "--image-size", "64", "--cache", str(tmp_path / "cache"), "--top", "6"])
    assert result.exit_code == 0, result.output
    assert _snapshot(crawled) == before
    assert "1 span several splits" not in result.output and "2 span several splits" in result.output
    corrupt = _rows(out / "corrupt.csv")
    assert [row["id"] for row in corrupt] == ["broken"] and "corrupt" in corrupt[0]["problem"]
    groups: dict[str, set[str]] = {}
    for row in _rows(out / "duplicates.csv"):
        groups.setdefault(row["group"], set()).add(row["id"])
        assert row["leak"] == "1"
    assert sorted(groups.values(), key=sorted) == [{"1-0", "copy"}, {"2-0", "resized"}]
    kinds = {row["id"]: row["kind"] for row in _rows(out / "duplicates.csv")}
    assert kinds["copy"] == "exact" and kinds["resized"] == "near"
    issues = _rows(out / "label_issues.csv")
    assert len(issues) == 20  # every labelled, readable image
    assert {row["decision"] for row in issues} <= {"keep", "drop", "relabel"}
    assert [int(row["rank"]) for row in issues] == list(range(1, 21))
    with Image.open(out / "contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > 100
    assert (out / "duplicates.png").is_file() and (out / "audit.json").is_file()
    again = runner.invoke(app, ["data", "audit", str(crawled), "--out", str(out), "--no-labels"])
    assert again.exit_code == 0, again.output  # an earlier audit's folder may be rewritten
    assert _snapshot(crawled) == before


def test_audit_refuses_to_write_inside_the_dataset_or_over_other_files(crawled: Path, tmp_path: Path) -> None:
    before = _snapshot(crawled)
    inside = runner.invoke(app, ["data", "audit", str(crawled), "--out", str(crawled / "audit"), "--no-labels"])
    assert inside.exit_code == 3 and "never writes into the dataset folder" in inside.output
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("keep me")
    busy = runner.invoke(app, ["data", "audit", str(crawled), "--out", str(other), "--no-labels"])
    assert busy.exit_code == 3 and "not empty" in busy.output
    assert (other / "thesis.txt").read_text() == "keep me"
    assert _snapshot(crawled) == before


def test_crawler_class_folders_load_and_audit(tmp_path: Path) -> None:
    """The class-per-folder layout of crawlers (WebFG-496 style): labels from folder names, sidecar texts,
    splits from the top folders; a picture crawled twice into train and val is a leak."""
    from fgmm.data import detect_format, load_dataset
    from fgmm.filters.audit import AuditConfig, audit_dataset

    root = tmp_path / "web-bird"
    for split in ("train", "val"):
        for c, name in enumerate(COLORS):
            folder = root / split / name.replace(" ", "_")
            folder.mkdir(parents=True)
            for k in range(2):
                (folder / f"{k}.jpg").write_bytes(_jpeg(_image(COLORS[name], 100 * c + 10 * k + len(split))))
    (root / "train" / "Red_Bird" / "0.txt").write_text("Scarlet tanager at the feeder\nphoto by a reader\n")
    shutil.copyfile(root / "train" / "Red_Bird" / "1.jpg", root / "val" / "Blue_Bird" / "dup.jpg")
    before = _snapshot(root)
    assert detect_format(root) == "image_folders"
    dataset = load_dataset(root)
    assert dataset.class_names == ["Blue_Bird", "Green_Bird", "Red_Bird"] and len(dataset) == 13
    assert sorted(set(dataset.split)) == ["train", "val"]
    red = next(s for s in dataset if s.id == "train/Red_Bird/0.jpg")
    assert red.label == 2 and red.texts == ["Scarlet tanager at the feeder", "photo by a reader"]
    report = audit_dataset(root, tmp_path / "audit", AuditConfig(labels=False, progress=False))
    assert (report.exact_duplicate_groups, report.leaking_groups) == (1, 1)
    assert _snapshot(root) == before
