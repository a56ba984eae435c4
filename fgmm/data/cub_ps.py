"""Xian et al.'s proposed split (PS) of CUB-200-2011 for zero-shot learning: 150 seen, 50 unseen classes.

The class lists are the ``trainvalclasses.txt`` / ``testclasses.txt`` of the xlsa17 release (Xian,
Lampert, Schiele, Akata, "Zero-Shot Learning — A Comprehensive Evaluation of the Good, the Bad and the
Ugly", TPAMI 2018). They are data, kept in the repository at ``datasets/cub-zsl-ps/`` with their
provenance (``datasets/cub-zsl-ps.md``), and shipped inside the wheel as ``fgmm/data/cub_zsl_ps/``
(``setup.py`` maps the folder). PS was designed so that no unseen class is one of the ImageNet-1k
classes an ImageNet backbone was trained on.

Example::

    from fgmm.data.cub_ps import cub_ps_split
    split = cub_ps_split()
    seen, unseen = split.labels(dataset.meta["class_folders"])   # 0-based labels of a loaded CUB dataset
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from fgmm.errors import DataError

#: where the lists live in an installed wheel (inside ``fgmm.data``) and in a checkout
PACKAGED_DIR = "cub_zsl_ps"
CHECKOUT_DIR = Path(__file__).resolve().parents[2] / "datasets" / "cub-zsl-ps"
SEEN_FILE, UNSEEN_FILE = "trainvalclasses.txt", "testclasses.txt"
#: the lists' sizes in the xlsa17 release
N_SEEN, N_UNSEEN = 150, 50
_FOLDER = re.compile(r"(\d{3})\.\w+")


@dataclass(frozen=True)
class ZeroShotClassSplit:
    """A class-level zero-shot split by class folder name (``"043.Yellow_bellied_Flycatcher"``).

    Attributes:
        name: the split's name (``"xlsa17-PS"``).
        seen: the training (``trainval``) classes, in the file's order.
        unseen: the test classes, in the file's order.
    """

    name: str
    seen: tuple[str, ...]
    unseen: tuple[str, ...]

    def labels(self, class_folders: Sequence[str]) -> tuple[list[int], list[int]]:
        """Sorted 0-based labels of the seen and unseen classes in a dataset whose label ``i`` is the
        class folder ``class_folders[i]`` (CUB: ``dataset.meta["class_folders"]``).

        Raises:
            DataError: a class of the split is not among ``class_folders``.
        """
        position = {folder: label for label, folder in enumerate(class_folders)}
        absent = [folder for folder in self.seen + self.unseen if folder not in position]
        if absent:
            raise DataError(None, f"the {self.name} zero-shot split needs the CUB-200-2011 classes; this dataset "
                                  f"lacks {len(absent)} of them (first: '{absent[0]}')")
        return sorted(position[f] for f in self.seen), sorted(position[f] for f in self.unseen)


def _list_file(name: str) -> Path:
    """The shipped list ``name`` (wheel: package data; checkout or editable install: ``datasets/``)."""
    shipped = resources.files("fgmm.data").joinpath(PACKAGED_DIR, name)
    if isinstance(shipped, Path) and shipped.is_file():
        return shipped
    checkout = CHECKOUT_DIR / name
    if checkout.is_file():
        return checkout
    raise DataError(checkout, "the xlsa17 class list is missing from this fgmm installation (reinstall fgmm)")


def _read_classes(path: Path, expected: int) -> tuple[str, ...]:
    folders: list[str] = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        folder = line.strip()
        if not folder:
            continue
        if not _FOLDER.fullmatch(folder):
            raise DataError(path, f"malformed class '{folder}': expected NNN.Class_Name", line_number)
        folders.append(folder)
    if len(folders) != expected or len(set(folders)) != expected:
        raise DataError(path, f"expected {expected} distinct classes, found {len(set(folders))}")
    return tuple(folders)


def cub_ps_split() -> ZeroShotClassSplit:
    """Xian et al.'s proposed split of CUB: 150 seen (``trainvalclasses.txt``), 50 unseen (``testclasses.txt``).

    Raises:
        DataError: a list is missing, malformed, or the two overlap.
    """
    seen_file, unseen_file = _list_file(SEEN_FILE), _list_file(UNSEEN_FILE)
    seen, unseen = _read_classes(seen_file, N_SEEN), _read_classes(unseen_file, N_UNSEEN)
    both = set(seen) & set(unseen)
    if both:
        raise DataError(unseen_file, f"{len(both)} classes are also seen classes (first: '{sorted(both)[0]}')")
    return ZeroShotClassSplit("xlsa17-PS", seen, unseen)
