"""Per-modality feature tables of a list of samples, and the torch dataset the model trains on.

A sample may carry several items of one modality (CUB: ten captions per image) or none. Features are
computed once per item, flat, and a :class:`ModalityTable` records which rows belong to which
sample. :class:`SampleFeatures` serves each sample's modality as the renormalised mean of some of
its rows: a random subset of at most ``max_items`` while training (a different one every epoch, so
each caption is seen with its image), all of them for evaluation. A sample without the modality
gets ``None``, which :func:`~fgmm.data.torch_dataset.collate_multimodal` turns into a zero row with
a false mask.

Featurizers (:data:`FEATURIZERS`, one per modality) compute a table from samples through the
feature cache with the modality's frozen encoder::

    table = featurize("image", encoder, samples, cache)      # ModalityTable, rows[i] = [i] or []
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fgmm.data.sample import Sample
from fgmm.encoders.base import Encoder
from fgmm.errors import DataError
from fgmm.registry import Registry


@dataclass
class ModalityTable:
    """Features of one modality for ``N`` samples.

    Attributes:
        features: ``[T, d]`` one row per item.
        rows: for each of the ``N`` samples, the positions of its items in ``features`` (may be empty).
        skipped: ``(sample position, problem)`` of items that could not be read (``skip_bad``).
    """

    features: torch.Tensor
    rows: list[list[int]]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if any(r >= len(self.features) or r < 0 for rows in self.rows for r in rows):
            raise ValueError("ModalityTable rows point outside its features")

    @classmethod
    def one_per_sample(cls, features: torch.Tensor, present: Sequence[bool] | torch.Tensor | None = None
                       ) -> ModalityTable:
        """A table of ``[N, d]`` features, row ``i`` for sample ``i`` (absent where ``present`` is false)."""
        present = [True] * len(features) if present is None else [bool(p) for p in present]
        return cls(features, [[i] if p else [] for i, p in enumerate(present)])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @property
    def present(self) -> torch.Tensor:
        """``[N]`` bool: which samples carry the modality."""
        return torch.tensor([bool(r) for r in self.rows], dtype=torch.bool)

    def pooled(self) -> torch.Tensor:
        """``[N, d]``: the renormalised mean of each sample's rows (zeros where absent)."""
        out = torch.zeros(len(self.rows), self.dim)
        for i, rows in enumerate(self.rows):
            if len(rows) == 1:
                out[i] = self.features[rows[0]]
            elif rows:
                out[i] = F.normalize(self.features[rows].mean(0), dim=0)
        return out

    def subset(self, indices: Sequence[int]) -> ModalityTable:
        """The table of the samples at ``indices`` (features are shared, not copied)."""
        return ModalityTable(self.features, [self.rows[i] for i in indices])

    def expand(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every item as its own row: ``[T', d]`` features of the samples' items and ``[T']`` owning sample."""
        owner = torch.tensor([i for i, rows in enumerate(self.rows) for _ in rows], dtype=torch.long)
        return self.features[[r for rows in self.rows for r in rows]], owner


Featurizer = Callable[..., ModalityTable]
"""``featurizer(encoder, samples, cache, progress=..., skip_bad=...) -> ModalityTable``."""

FEATURIZERS: Registry[ModalityTable] = Registry("modality")


@FEATURIZERS.register("image")
def featurize_images(encoder: Encoder, samples: Sequence[Sample], cache: Any = None, *, progress: bool = False,
                     skip_bad: bool = False, batch_size: int = 32) -> ModalityTable:
    """Frozen image features of the samples that have an image (through ``cache`` when given)."""
    from fgmm.cache import FeatureCache

    positions = [i for i, s in enumerate(samples) if s.image is not None]
    paths = [Path(samples[i].image) for i in positions]
    rows: list[list[int]] = [[] for _ in samples]
    if not paths:
        return ModalityTable(torch.empty(0, encoder.dim), rows)
    if cache is None:  # an in-memory pass through the same code path as the disk cache
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fgmm-features-") as tmp:
            result = FeatureCache(tmp).encode_images(encoder, paths, batch_size=batch_size, progress=progress,
                                                     skip_bad=skip_bad, num_workers=0)
    else:
        result = cache.encode_images(encoder, paths, batch_size=batch_size, progress=progress, skip_bad=skip_bad)
    for row, kept in enumerate(result.kept):
        rows[positions[kept]] = [row]
    skipped_paths = {str(path): problem for path, problem in result.skipped}
    skipped = [(i, skipped_paths[str(samples[i].image)]) for i in positions if str(samples[i].image) in skipped_paths]
    return ModalityTable(result.features, rows, skipped)


@FEATURIZERS.register("text")
def featurize_texts(encoder: Encoder, samples: Sequence[Sample], cache: Any = None, *, progress: bool = False,
                    skip_bad: bool = False) -> ModalityTable:
    """Frozen text features of every text of every sample (a sample may have 0..n texts)."""
    texts: list[str] = []
    rows: list[list[int]] = []
    for sample in samples:
        rows.append(list(range(len(texts), len(texts) + len(sample.texts))))
        texts.extend(sample.texts)
    if not texts:
        return ModalityTable(torch.empty(0, encoder.dim), rows)
    return ModalityTable(encoder.encode_cached(texts, cache, progress=progress).float().cpu(), rows)


@FEATURIZERS.register("audio")
def featurize_audio(encoder: Encoder, samples: Sequence[Sample], cache: Any = None, *, progress: bool = False,
                    skip_bad: bool = False) -> ModalityTable:
    """Frozen audio features: one row per recording, its selected windows pooled by the encoder's
    ``pooling`` (:func:`fgmm.audio.features.encode_recordings`, cached per file); samples without a
    recording, or whose file could not be read (``skip_bad``, listed in ``skipped``), get no row."""
    from fgmm.audio.features import encode_recordings

    positions = [i for i, s in enumerate(samples) if s.audio is not None]
    rows: list[list[int]] = [[] for _ in samples]
    if not positions:
        return ModalityTable(torch.empty(0, encoder.dim), rows)
    result = encode_recordings(encoder, [samples[i].audio for i in positions], cache, skip_bad=skip_bad,
                               progress=progress)
    for row, kept in enumerate(result.kept):
        rows[positions[kept]] = [row]
    kept = set(result.kept)
    unread = [positions[j] for j in range(len(positions)) if j not in kept]  # in input order, as skipped is
    skipped = [(i, problem) for i, (_, problem) in zip(unread, result.skipped, strict=True)]
    features = result.pooled(encoder.pooling) if result.kept else torch.empty(0, encoder.dim)
    return ModalityTable(features.float(), rows, skipped)


@FEATURIZERS.register("geo")
def featurize_geo(encoder: Encoder, samples: Sequence[Sample], cache: Any = None, *, progress: bool = False,
                  skip_bad: bool = False) -> ModalityTable:
    """Where and when: :class:`~fgmm.geo.encoder.GeoTimeEncoder` features of ``Sample.location`` /
    ``Sample.time`` (a missing date or hour is masked in the features, never imputed); samples without a
    place get no row. The features end with the raw place and date, which a geo class prior reads back.
    Only GeoCLIP's position network goes through ``cache`` (the closed-form encodings are cheaper to
    recompute than to read, and exact)."""
    from fgmm.geo.encoder import cached_geo_features

    positions = [i for i, s in enumerate(samples) if s.location is not None]
    rows: list[list[int]] = [[] for _ in samples]
    if not positions:
        return ModalityTable(torch.empty(0, encoder.dim), rows)
    features = cached_geo_features(encoder, [samples[i] for i in positions],
                                   cache if encoder.name == "geoclip" else None)
    for row, i in enumerate(positions):
        rows[i] = [row]
    return ModalityTable(features.float(), rows)


def featurize(modality: str, encoder: Encoder, samples: Sequence[Sample], cache: Any = None,
              **options: Any) -> ModalityTable:
    """The :class:`ModalityTable` of ``samples`` for ``modality`` (:data:`FEATURIZERS`)."""
    return FEATURIZERS.get(modality)(encoder, samples, cache, **options)


class SampleFeatures(Dataset):
    """Items ``{<modality>: features or None, "label": int, "index": i}`` for the :class:`~fgmm.train.Trainer`.

    Args:
        tables: ``{modality: ModalityTable}`` over the same ``N`` samples.
        labels: ``N`` class indices (``-1``: unknown).
        train: draw a random subset of a sample's items per access (see the module docstring);
            otherwise the mean of all of them.
        max_items: per modality, the largest subset drawn while training (default 1).
        raw: optional ``{modality: fn(i) -> tensor}`` serving raw inputs (e.g. transformed images) of
            modalities whose tower trains end to end; these replace the table of that modality.
    """

    def __init__(self, tables: Mapping[str, ModalityTable], labels: Sequence[int] | torch.Tensor,
                 train: bool = False, max_items: Mapping[str, int] | None = None,
                 raw: Mapping[str, Callable[[int], torch.Tensor | None]] | None = None):
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        for name, table in tables.items():
            if len(table.rows) != len(self.labels):
                raise DataError(None, f"{name} features describe {len(table.rows)} samples, labels {len(self.labels)}")
        self.tables = dict(tables)
        self.train = train
        self.max_items = dict(max_items or {})
        self.raw = dict(raw or {})
        self.pooled = {} if train else {m: t.pooled() for m, t in self.tables.items() if m not in self.raw}

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: Sequence[int], train: bool | None = None) -> SampleFeatures:
        """The samples at ``indices`` (``train``: draw subsets, default as this dataset)."""
        indices = [int(i) for i in indices]
        raw = {m: (lambda i, load=load: load(indices[i])) for m, load in self.raw.items()}
        return SampleFeatures({m: t.subset(indices) for m, t in self.tables.items()}, self.labels[indices],
                              train=self.train if train is None else train, max_items=self.max_items, raw=raw)

    def _item(self, modality: str, index: int) -> torch.Tensor | None:
        table = self.tables[modality]
        rows = table.rows[index]
        if not rows:
            return None
        if modality in self.pooled:
            return self.pooled[modality][index]
        limit = min(len(rows), self.max_items.get(modality, 1))
        # Python's RNG: seeded by the Trainer (and per DataLoader worker), and far cheaper per item
        chosen = rows if limit == len(rows) and len(rows) == 1 else random.sample(rows, random.randint(1, limit))
        vector = table.features[chosen].mean(0)
        return vector if len(chosen) == 1 else F.normalize(vector, dim=0)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {m: self._item(m, index) for m in self.tables if m not in self.raw}
        item.update({m: load(index) for m, load in self.raw.items()})
        item["label"] = int(self.labels[index])
        item["index"] = index
        return item
