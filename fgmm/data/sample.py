"""The one sample type of fgmm and the dataset container that holds samples.

A :class:`Sample` is a record whose modalities are all optional: an image file, 0..n texts, an
audio file, a location, a time, and a label. A :class:`MultiModalDataset` is a list of samples with
class names, a split assignment, and optional class-level knowledge (attribute matrix, class
descriptions) that loaders fill in when the source provides it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

import numpy as np

from fgmm.errors import DataError

MODALITIES: tuple[str, ...] = ("image", "text", "audio", "location", "time")


@dataclass
class Sample:
    """One multi-modal example. Every modality may be missing.

    Attributes:
        id: a unique identifier within its dataset (CUB: the official image id).
        label: class index in ``0..num_classes-1``; ``-1`` when unknown.
        image: path of the image file, or ``None``.
        texts: descriptions of this sample (CUB: 10 Reed et al. captions); may be empty.
        audio: path of an audio file, or ``None``.
        location: ``(latitude, longitude)`` in decimal degrees, or ``None``.
        time: when the sample was recorded, or ``None``.
        meta: free-form extras (bounding box, parts, source, noisy label, ...).
    """

    id: str
    label: int = -1
    image: Path | None = None
    texts: list[str] = field(default_factory=list)
    audio: Path | None = None
    location: tuple[float, float] | None = None
    time: datetime | None = None
    meta: dict = field(default_factory=dict)

    def has(self, modality: str) -> bool:
        """Whether this sample carries ``modality`` (one of :data:`MODALITIES`)."""
        value = {"image": self.image, "text": self.texts, "audio": self.audio,
                 "location": self.location, "time": self.time}[modality]
        return bool(value) if modality == "text" else value is not None


@dataclass
class MultiModalDataset(Sequence[Sample]):
    """Samples plus what is known about their classes.

    Attributes:
        samples: the samples, in a stable order.
        class_names: human-readable class names; ``label`` indexes this list.
        split: per-sample ``"train"`` / ``"test"`` (same length as ``samples``), or empty when unsplit.
        split_protocol: how the split was made, e.g. ``"official"`` or ``"holdout-20%-seed0"``.
        attribute_names: names of class-level attributes (CUB: 312 ``has_part::value`` strings).
        class_attributes: ``[num_classes, num_attributes]`` strengths in ``[0, 1]``, or ``None``.
        class_descriptions: per-class free text (from a KG or the user), may be empty.
        root: folder the dataset was loaded from.
        name: short dataset name used in reports and cache keys.
        unseen_classes: class indices held out for zero-shot evaluation (no training samples).
        recordings: class-level audio recordings (not tied to one sample), as audio-only samples
            whose ``label`` is the recorded class (CUB: xeno-canto songs, one per recorded class).
        meta: dataset-level extras written by loaders: what was left out and why
            (``"missing"``, ``"skipped_bad"``), source files, class folder names, ...
    """

    samples: list[Sample]
    class_names: list[str]
    split: list[str] = field(default_factory=list)
    split_protocol: str = "none"
    attribute_names: list[str] = field(default_factory=list)
    class_attributes: np.ndarray | None = None
    class_descriptions: dict[int, str] = field(default_factory=dict)
    root: Path | None = None
    name: str = "dataset"
    unseen_classes: list[int] = field(default_factory=list)
    recordings: list[Sample] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split and len(self.split) != len(self.samples):
            raise ValueError("split must have one entry per sample")
        bad = [s for s in self.samples if not -1 <= s.label < len(self.class_names)]
        if bad:
            raise DataError(self.root, f"sample '{bad[0].id}' has label {bad[0].label}, outside "
                                       f"0..{len(self.class_names) - 1} ({len(bad)} such samples)")

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):  # type: ignore[override]
        return self.samples[index]

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.label for s in self.samples], dtype=np.int64)

    def subset(self, indices: Sequence[int]) -> MultiModalDataset:
        """A dataset of the samples at ``indices`` (class list and knowledge unchanged)."""
        idx = list(indices)
        return replace(self, samples=[self.samples[i] for i in idx],
                       split=[self.split[i] for i in idx] if self.split else [])

    def part(self, name: str) -> MultiModalDataset:
        """The samples whose split is ``name`` (``"train"`` or ``"test"``)."""
        if not self.split:
            raise DataError(self.root, "dataset has no split; call fgmm.data.holdout_split first")
        return self.subset([i for i, s in enumerate(self.split) if s == name])

    def with_classes(self, class_ids: Sequence[int]) -> MultiModalDataset:
        """The samples whose label is in ``class_ids`` (labels keep their global meaning)."""
        wanted = set(class_ids)
        return self.subset([i for i, s in enumerate(self.samples) if s.label in wanted])

    def modality_counts(self) -> dict[str, int]:
        """How many samples carry each modality."""
        return {m: sum(s.has(m) for s in self.samples) for m in MODALITIES}

    def class_counts(self) -> Counter:
        return Counter(s.label for s in self.samples)
