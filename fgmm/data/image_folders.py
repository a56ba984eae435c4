"""Class-per-folder image collections, the usual output of image crawlers (datasets/web-data.md).

Layout (format name ``image_folders``; WebFG-496's Web-bird/Web-car/Web-aircraft and most crawler
tools write it)::

    root/<class>/<image>                         unsplit
    root/{train,val,test}/<class>/<image>        split by the top folder
    root/.../<class>/<image stem>.txt            optional: text found around the image (alt text,
                                                 page title, caption), one text per line

The folder name is the (noisy) web label; classes are the class folders in sorted order (the union
over splits). ``Sample.id`` is the image's path relative to the root; ``Sample.meta["source"]`` is
``"image_folders"``. Nothing else is read, so loading costs one directory walk; ``fgmm data audit``
then finds labels to fix and duplicates across splits. For verified labels, URLs or other per-image
fields, convert once with :func:`fgmm.data.write_folder` and edit ``samples.csv`` (the folder format).
"""

from __future__ import annotations

import os
from pathlib import Path

from fgmm.data.folder import read_text_lines
from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")
SPLIT_FOLDERS = ("train", "val", "test")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def is_image_folders_root(root: str | Path) -> bool:
    """Whether ``root`` holds class folders of images (directly or under train/val/test)."""
    root = Path(root)
    if not root.is_dir() or (root / "samples.csv").exists():
        return False
    splits = [root / s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    for parent in splits or [root]:
        for folder in _class_dirs(parent):
            with os.scandir(folder) as entries:
                if any(e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES for e in entries):
                    return True
    return False


def load_image_folders(root: str | Path) -> MultiModalDataset:
    """Load a class-per-folder collection (module docstring).

    Raises:
        DataError: the root does not exist or holds no image in any class folder; a sidecar text file is
            empty or not UTF-8 (naming the file).
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist")
    splits = [s for s in SPLIT_FOLDERS if (root / s).is_dir()]
    parents = [(root / s, s) for s in splits] or [(root, "")]
    names = sorted({d.name for parent, _ in parents for d in _class_dirs(parent)})
    index = {name: i for i, name in enumerate(names)}
    samples, split = [], []
    for parent, part in parents:
        for folder in _class_dirs(parent):
            for image in _images(folder):
                side = image.with_suffix(".txt")
                texts = read_text_lines(side) if side.is_file() else []
                samples.append(Sample(id=image.relative_to(root).as_posix(), label=index[folder.name], image=image,
                                      texts=texts, meta={"source": "image_folders"}))
                split.append(part)
    if not samples:
        raise DataError(root, f"no images ({', '.join(IMAGE_SUFFIXES)}) in any class folder")
    return MultiModalDataset(samples=samples, class_names=names, split=split if splits else [],
                             split_protocol="given" if splits else "none", root=root, name=root.name,
                             meta={"format": "image_folders"})
