"""Presence-only occurrence records (``occurrences.csv``): where and when each class was seen.

Columns (DESIGN.md section 2): ``class``, ``latitude``, ``longitude`` (required), ``date``
(``YYYY-MM-DD``, may be empty), ``time`` (``HH:MM`` or ``HH:MM AM``, may be empty), ``source``,
``record_id`` (the pair names a record; CUB's ``image_locations.csv`` names it ``"<source> <record_id>"``)
and any others (ignored).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fgmm.errors import DataError
from fgmm.geo.metadata import GeoTime, geo_tensor, parse_date, parse_location, read_csv_rows

logger = logging.getLogger(__name__)

OCCURRENCE_COLUMNS = ("class", "latitude", "longitude")


def class_key(name: str) -> str:
    """A spelling-tolerant key of a class name: ``"010.Red_winged_Blackbird"`` and
    ``"Red-winged blackbird"`` both give ``"red winged blackbird"``."""
    return " ".join(re.sub(r"^\d+\.", "", name.strip()).replace("_", " ").replace("-", " ").lower().split())


@dataclass
class Occurrences:
    """Occurrence records of classes, aligned by row.

    Attributes:
        geo: ``[N, 4]`` float32 :func:`~fgmm.geo.metadata.geo_tensor` rows (latitude, longitude,
            day of year, hour; ``NaN`` where missing).
        labels: ``[N]`` int64 class indices into ``class_names``.
        records: ``"<source> <record_id>"`` per row (``""`` when the file has no such columns).
        class_names: the classes labels index.
        path: the file read, when read from one.
        dropped: rows whose class is not in ``class_names``, by class name (left out).
    """

    geo: torch.Tensor
    labels: torch.Tensor
    records: list[str]
    class_names: list[str]
    path: Path | None = None
    dropped: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, keep: np.ndarray | Sequence[int] | torch.Tensor) -> Occurrences:
        """The rows at ``keep`` (indices or a boolean mask)."""
        index = torch.as_tensor(np.asarray(keep))
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        rows = index.tolist()
        return replace(self, geo=self.geo[index], labels=self.labels[index],
                       records=[self.records[i] for i in rows])

    def without(self, pairs: set[tuple[int, str]]) -> Occurrences:
        """The records except those ``(label, record)`` pairs (e.g. the records evaluation images'
        places were drawn from; a record with an empty name is never removed)."""
        keep = [i for i, (label, record) in enumerate(zip(self.labels.tolist(), self.records, strict=True))
                if not (record and (label, record) in pairs)]
        return self.subset(keep)

    def counts(self) -> np.ndarray:
        """Records per class, ``[C]``."""
        return np.bincount(self.labels.numpy(), minlength=self.num_classes)


def load_occurrences(path: str | Path, class_names: Sequence[str] | None = None) -> Occurrences:
    """Read ``occurrences.csv``.

    Args:
        path: the CSV file.
        class_names: the classes to keep, in label order (CUB: ``dataset.meta["class_folders"]`` or
            the readable names; matched exactly first, then by :func:`class_key`). Rows of other classes
            are left out, counted in ``dropped`` and logged. ``None``: every class in the file, sorted.

    Raises:
        DataError: naming the file and line: a missing column, a coordinate off the globe or not a
            number, an impossible date or time, an empty class name, or no usable row at all.
    """
    path = Path(path)
    header, rows = read_csv_rows(path, OCCURRENCE_COLUMNS)
    for line, row in rows:
        if not row["class"]:
            raise DataError(path, "empty class name", line)
    if class_names is None:
        class_names = sorted({row["class"] for _, row in rows})
    exact = {name: index for index, name in enumerate(class_names)}
    loose = {class_key(name): index for index, name in enumerate(class_names)}
    items, labels, records, dropped = [], [], [], {}
    with_record = "record_id" in header
    for line, row in rows:
        label = exact.get(row["class"], loose.get(class_key(row["class"])))
        location = parse_location(row["latitude"], row["longitude"], path, line)
        if location is None:
            raise DataError(path, "empty latitude/longitude (an occurrence needs a place)", line)
        when, has_hour = parse_date(row.get("date", ""), path, line, row.get("time", ""))
        if label is None:
            dropped[row["class"]] = dropped.get(row["class"], 0) + 1
            continue
        items.append(GeoTime(location, when, has_hour))
        labels.append(label)
        records.append(f"{row.get('source', '')} {row['record_id']}".strip() if with_record else "")
    if not labels:
        raise DataError(path, "no occurrence of any of the given classes")
    if dropped:
        logger.warning("%s: %d row(s) of %d class(es) not in the dataset were left out (e.g. '%s')",
                       path, sum(dropped.values()), len(dropped), next(iter(dropped)))
    return Occurrences(geo=geo_tensor(items), labels=torch.tensor(labels, dtype=torch.int64), records=records,
                       class_names=list(class_names), path=path, dropped=dropped)


def occurrences_from_samples(samples: Sequence, class_names: Sequence[str]) -> Occurrences:
    """Occurrences made of labelled samples that carry a location (e.g. a training split of the
    folder format or the procedural demo set); ``records`` are the sample ids."""
    chosen = [s for s in samples if s.location is not None and s.label >= 0]
    if not chosen:
        raise DataError(None, "no labelled sample carries a location")
    return Occurrences(geo=geo_tensor(chosen), labels=torch.tensor([s.label for s in chosen], dtype=torch.int64),
                       records=[str(s.id) for s in chosen], class_names=list(class_names))
