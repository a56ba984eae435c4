"""A tiny CUB-200-2011 tree in the official layout, written from code (no real data).

Shared by the pytest fixtures (``tests/conftest.py``), the README block tests and the CI smoke test
of the installed wheel (``.ci/smoke.sh``), so it imports neither pytest nor fgmm. From the shell::

    python tests/tiny_cub.py OUT_DIR [--real-names]   # OUT_DIR/CUB_200_2011/..., attributes.txt, text_c10/, audio/
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

TINY_CUB_CLASSES = ("001.Red_Test_Bird", "002.Green_Test_Bird", "003.Blue_Test_Bird")
#: the first three real CUB classes: what the shipped taxonomy (``import_cub(taxonomy=True)``) knows
REAL_CUB_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
TINY_CUB_COLORS = ((200, 40, 40), (40, 170, 60), (40, 70, 200))
TINY_CUB_ATTRIBUTES = ("has_bill_shape::hooked", "has_wing_color::red", "has_wing_color::green",
                       "has_wing_color::blue")
IMAGES_PER_CLASS = 4


def tiny_cub_image_id(class_index: int, k: int) -> int:
    """Official-style, non-contiguous ids: class 0 -> 10, 12, 14, 16; class 1 -> 20, ...; class 2 -> 30, ..."""
    return 10 * (class_index + 1) + 2 * k


def _jpeg(color: tuple[int, int, int], k: int) -> bytes:
    image = Image.new("RGB", (40, 30), color)
    ImageDraw.Draw(image).rectangle((4 + 6 * k, 6, 12 + 6 * k, 20), fill=(250, 250, 250))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _lines(path: Path, rows: Sequence[object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{row}\n" for row in rows), encoding="utf-8")


def _stem(folder: str) -> str:
    """``001.Red_Test_Bird`` -> ``Red_Test_Bird`` (CUB image files are named after the class)."""
    return folder.split(".", 1)[1]


def build_tiny_cub(root: Path, *, test_ids: Sequence[int] = (), missing: int = 0, corrupt: bool = False,
                   duplicate: bool = False, classes: Sequence[str] = TINY_CUB_CLASSES) -> Path:
    """Write a tiny CUB tree under ``root`` and return ``root``.

    Args:
        test_ids: image ids marked ``is_train=0`` in train_test_split.txt (official split).
        missing: extra rows in images.txt (class 3, ids 90, 91, ...) whose files are absent.
        corrupt: truncate the JPEG of image 10 (class 1).
        duplicate: make image 22 a byte copy of image 20 (class 2).
        classes: the three class folder names (:data:`REAL_CUB_CLASSES` for the shipped taxonomy).
    """
    cub = root / "CUB_200_2011"
    _lines(cub / "classes.txt", [f"{i + 1} {name}" for i, name in enumerate(classes)])
    images, labels, split, boxes, parts = [], [], [], [], []
    for c, (folder, color) in enumerate(zip(classes, TINY_CUB_COLORS, strict=True)):
        stem = _stem(folder)
        for k in range(IMAGES_PER_CLASS):
            image_id = tiny_cub_image_id(c, k)
            relpath = f"{folder}/{stem}_{k:04d}_{image_id}.jpg"
            (cub / "images" / folder).mkdir(parents=True, exist_ok=True)
            (cub / "images" / relpath).write_bytes(_jpeg(color, k))
            images.append(f"{image_id} {relpath}")
            labels.append(f"{image_id} {c + 1}")
            split.append(f"{image_id} {0 if image_id in test_ids else 1}")
            boxes.append(f"{image_id} 5.0 5.0 40.0 30.0" if image_id == 10 else f"{image_id} 2.0 3.0 30.0 20.0")
            parts += [f"{image_id} 1 30.0 12.0 1", f"{image_id} 2 24.0 10.0 1", f"{image_id} 3 0.0 0.0 0"]
    for extra in range(missing):
        image_id = 90 + extra
        images.append(f"{image_id} {classes[2]}/{_stem(classes[2])}_9999_{image_id}.jpg")
        labels.append(f"{image_id} 3")
        split.append(f"{image_id} 1")
    _lines(cub / "images.txt", images)
    _lines(cub / "image_class_labels.txt", labels)
    _lines(cub / "train_test_split.txt", split)
    _lines(cub / "bounding_boxes.txt", boxes)
    _lines(cub / "parts" / "parts.txt", ["1 beak", "2 left eye", "3 tail"])
    _lines(cub / "parts" / "part_locs.txt", parts)
    _lines(root / "attributes.txt", [f"{i + 1} {name}" for i, name in enumerate(TINY_CUB_ATTRIBUTES)])
    _lines(cub / "attributes" / "class_attribute_labels_continuous.txt",
           ["50.0 100.0 0.0 0.0", "0.0 10.0 80.0 0.0", "25.0 0.0 0.0 75.5"])
    for k in range(IMAGES_PER_CLASS):
        stem = f"{_stem(classes[0])}_{k:04d}_{tiny_cub_image_id(0, k)}"
        _lines(root / "text_c10" / classes[0] / f"{stem}.txt",
               [f"this red bird number {k} has a hooked bill.", "a small red bird with red wings."])
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    tone = 0.3 * np.sin(2 * np.pi * 2000 * np.arange(1600) / 16000)
    sf.write(audio / f"{classes[1]}.wav", tone.astype(np.float32), 16000, subtype="PCM_16")
    (audio / "recordings.csv").write_text(
        "file,class,xeno_canto_id,recordist,latitude,longitude,year,licence,locality,date,url\n"
        f"{classes[1]}.wav,{classes[1]},XC1,Test Recordist,45.5,-122.25,2020,"
        "CC BY-NC-SA,\"Somewhere, Oregon\",2020-02-16,https://xeno-canto.org/1\n", encoding="utf-8")
    if corrupt:
        first = cub / "images" / f"{classes[0]}/{_stem(classes[0])}_0000_10.jpg"
        first.write_bytes(first.read_bytes()[:200])
    if duplicate:
        source = cub / "images" / f"{classes[1]}/{_stem(classes[1])}_0000_20.jpg"
        (cub / "images" / f"{classes[1]}/{_stem(classes[1])}_0001_22.jpg").write_bytes(source.read_bytes())
    return root


if __name__ == "__main__":
    args = sys.argv[1:]
    real = "--real-names" in args
    args = [a for a in args if a != "--real-names"]
    if len(args) != 1:
        sys.exit("usage: python tests/tiny_cub.py OUT_DIR [--real-names]   (real names: 3 CUB classes the "
                 "shipped taxonomy knows)")
    print(build_tiny_cub(Path(args[0]), classes=REAL_CUB_CLASSES if real else TINY_CUB_CLASSES))
