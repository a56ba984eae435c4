"""Datasets: the sample type, loaders for on-disk formats, the procedural demo set, splits, checks.

Loaders are registered by format name in :data:`DATASET_FORMATS`; :func:`load_dataset` picks the
format of a root by asking each one whether it recognises the folder::

    from fgmm.data import load_dataset, check_dataset
    dataset = load_dataset("data/cub200")          # CUB layout detected
    print(check_dataset(dataset).format())
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from fgmm.data.check import CheckReport, check_dataset, scan_images
from fgmm.data.cub import clip_bbox, is_cub_root, load_cub
from fgmm.data.folder import is_folder_root, load_folder, write_folder
from fgmm.data.image_folders import is_image_folders_root, load_image_folders
from fgmm.data.procedural import generate_procedural, procedural_class_spec
from fgmm.data.sample import MODALITIES, MultiModalDataset, Sample
from fgmm.data.splits import holdout_protocol, holdout_split
from fgmm.errors import DataError
from fgmm.registry import Registry


@dataclass(frozen=True)
class DatasetFormat:
    """An on-disk dataset layout: how to recognise a root of it and how to load one."""

    name: str
    detect: Callable[[Path], bool]
    load: Callable[..., MultiModalDataset]


DATASET_FORMATS: Registry[DatasetFormat] = Registry("dataset format")
for _name, _detect, _load in (("cub", is_cub_root, load_cub), ("folder", is_folder_root, load_folder),
                              ("image_folders", is_image_folders_root, load_image_folders)):
    DATASET_FORMATS.register(_name)(partial(DatasetFormat, _name, _detect, _load))


def detect_format(root: str | Path) -> str:
    """The name of the registered format that recognises ``root``.

    Raises:
        DataError: no format recognises it (the message lists what each expects).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist")
    for name in DATASET_FORMATS:
        if DATASET_FORMATS.create(name).detect(root):
            return name
    raise DataError(root, "not a dataset root: expected CUB_200_2011/images.txt (CUB-200-2011 layout) "
                          "or samples.csv (fgmm folder format; `fgmm data generate DIR` writes an example) "
                          "or class folders of images (ROOT/<class>/<image>, optionally under train/, val/, "
                          "test/)")


def load_dataset(root: str | Path, format: str | None = None, **kwargs) -> MultiModalDataset:
    """Load the dataset at ``root`` with the loader of ``format`` (auto-detected when ``None``).

    Extra keyword arguments go to the loader (e.g. ``holdout=``/``seed=`` for CUB).
    """
    return DATASET_FORMATS.create(format or detect_format(root)).load(root, **kwargs)


__all__ = [
    "DATASET_FORMATS", "MODALITIES", "CheckReport", "DatasetFormat", "MultiModalDataset", "Sample",
    "check_dataset", "clip_bbox", "detect_format", "generate_procedural", "holdout_protocol", "holdout_split",
    "load_cub", "load_dataset", "load_folder", "load_image_folders", "procedural_class_spec", "scan_images",
    "write_folder",
]
