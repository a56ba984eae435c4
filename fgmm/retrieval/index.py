"""Nearest-neighbour indexes over embeddings, saved to and loaded from a folder.

An :class:`EmbeddingIndex` holds L2-normalised vectors of one modality, their ids, labels and
source paths, and answers top-k cosine-similarity queries with a search backend from
:data:`SEARCH_BACKENDS`: ``"torch"`` (exact matrix product, the default) or ``"faiss"`` (any faiss
index factory string: ``"Flat"`` exact, ``"HNSW32"``, ``"IVF1024,Flat"``; ``pip install fgmm[faiss]``).

Every index records the *embedding space* its vectors live in: a fingerprint of the joint model (or
of the encoder, without one), its human-readable name and the dimension. A query from another space
is refused with a message saying which space each side comes from, instead of silently returning
neighbours that mean nothing.

Folder layout written by :meth:`EmbeddingIndex.save`::

    .fgmm.json     ownership marker (fgmm.ownership): fgmm wrote this index folder
    index.json     format, space, dim, modality, backend, count, class names (written last)
    vectors.pt     the [N, d] float32 vectors (torch.save, loaded with weights_only=True)
    items.json     ids, labels, paths (relative to the index folder), texts
    faiss.index    the serialized faiss index (faiss backend only; avoids retraining IVF/HNSW)
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import fgmm
from fgmm.errors import ConfigError, DataError, require
from fgmm.ownership import claim_folder
from fgmm.registry import Registry
from fgmm.train.checkpoint import atomic_write

INDEX_FORMAT = "fgmm-index-1"
INDEX_FILE, VECTORS_FILE, ITEMS_FILE, FAISS_FILE = "index.json", "vectors.pt", "items.json", "faiss.index"
INDEX_FILES = (INDEX_FILE, VECTORS_FILE, ITEMS_FILE, FAISS_FILE)
INDEX_KIND = "index"

SEARCH_BACKENDS: Registry[Any] = Registry("search backend")


@SEARCH_BACKENDS.register("torch")
class TorchSearch:
    """Exact search: ``queries @ vectors.T`` and ``topk``, in blocks of queries to bound memory.

    Backends share one protocol: ``add(new, all_vectors)`` after the index appended ``new`` to its
    ``all_vectors`` (this backend searches that tensor itself, so nothing is copied), ``search``,
    ``serialize`` (bytes to save, or ``None``) and ``restore(vectors, serialized)``.
    """

    block = 1024

    def __init__(self, dim: int, **_: Any):
        self.vectors = torch.empty(0, dim)

    def add(self, new: torch.Tensor, all_vectors: torch.Tensor) -> None:
        self.vectors = all_vectors

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, indices = [], []
        for start in range(0, len(queries), self.block):
            top = torch.topk(queries[start:start + self.block] @ self.vectors.T, k, dim=1)
            scores.append(top.values)
            indices.append(top.indices)
        return torch.cat(scores), torch.cat(indices)

    def serialize(self) -> bytes | None:
        return None  # rebuilt from vectors.pt

    def restore(self, vectors: torch.Tensor, data: bytes | None) -> None:
        self.vectors = vectors


@SEARCH_BACKENDS.register("faiss")
class FaissSearch:
    """faiss inner-product index built with ``faiss.index_factory(dim, factory)``.

    Args:
        dim: vector dimension.
        factory: faiss factory string (``"Flat"`` exact; ``"HNSW32"``; ``"IVF<n>,Flat"``).
        nprobe: inverted lists visited per query (IVF indexes).
        ef_search: candidate list size per query (HNSW indexes).
        train_size: indexes that need training (IVF, PQ) are trained on a seeded random sample of at
            most this many of the first vectors added (IVF needs at least ``39 * n`` of them).
    """

    def __init__(self, dim: int, factory: str = "Flat", nprobe: int = 16, ef_search: int = 64,
                 train_size: int = 100_000, **_: Any):
        self.faiss = require("faiss", "faiss")
        try:
            self.index = self.faiss.index_factory(dim, factory, self.faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ConfigError(f"invalid faiss factory string '{factory}': {str(exc).splitlines()[-1]}") from None
        self.search_parameters = {"nprobe": nprobe, "efSearch": ef_search}
        self.train_size = train_size
        self._apply_search_parameters()

    def _apply_search_parameters(self) -> None:
        space = self.faiss.ParameterSpace()
        for name, value in self.search_parameters.items():
            with contextlib.suppress(RuntimeError):  # the parameter does not apply to this index type
                space.set_index_parameter(self.index, name, value)

    def add(self, new: torch.Tensor, all_vectors: torch.Tensor | None = None) -> None:
        """Add ``new`` (``all_vectors`` is not needed: faiss keeps its own copy)."""
        array = np.ascontiguousarray(new.numpy(), dtype=np.float32)
        if not self.index.is_trained:
            sample = np.random.default_rng(0).permutation(len(array))[: self.train_size]
            self.index.train(array[np.sort(sample)])
        self.index.add(array)

    def search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        scores, indices = self.index.search(np.ascontiguousarray(queries.numpy(), dtype=np.float32), k)
        return torch.from_numpy(scores), torch.from_numpy(indices).long()

    def serialize(self) -> bytes:
        return self.faiss.serialize_index(self.index).tobytes()

    def restore(self, vectors: torch.Tensor, data: bytes | None) -> None:
        """Reload the serialized index, or rebuild it from ``vectors`` when there is none."""
        if data is None:
            self.add(vectors)
            return
        self.index = self.faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        self._apply_search_parameters()
        if self.index.ntotal != len(vectors):
            raise DataError(None, f"the faiss index holds {self.index.ntotal} vectors, vectors.pt {len(vectors)}")


@dataclass
class IndexInfo:
    """What an index is: its embedding space and how it searches.

    Attributes:
        dim: vector dimension.
        modality: modality of the stored items (``"image"``, ``"text"``, ...).
        space: fingerprint of the embedding space (joint model or encoder); queries must match it.
        space_name: human-readable description of the space, used in error messages.
        backend: a name in :data:`SEARCH_BACKENDS`.
        backend_options: keyword arguments of the backend (``factory``, ``nprobe`` for faiss).
        class_names: names of the labels stored with the items (may be empty).
        extra: free-form provenance (encoders, source folder, ...).
    """

    dim: int
    modality: str
    space: str
    space_name: str = ""
    backend: str = "torch"
    backend_options: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class SearchResult:
    """Top-k neighbours of a batch of queries (row ``q`` answers query ``q``, best first).

    An approximate index may find fewer than ``k`` items; the missing places hold index ``-1``,
    score ``-inf`` and ``None`` ids, and :meth:`rows` leaves them out.

    Attributes:
        indices: ``[Q, k]`` positions in the index.
        scores: ``[Q, k]`` cosine similarities.
        ids: item ids per query.
        labels: ``[Q, k]`` item labels (``-1`` unknown).
        paths: source path (or ``None``) of each item per query.
        texts: text (or ``None``) of each item per query, for text items.
        class_names: the index's class names, to name ``labels``.
    """

    indices: torch.Tensor
    scores: torch.Tensor
    ids: list[list[str | None]]
    labels: torch.Tensor
    paths: list[list[str | None]]
    texts: list[list[str | None]]
    class_names: list[str] = field(default_factory=list)

    def label_name(self, label: int) -> str:
        if label < 0:
            return ""
        return self.class_names[label] if label < len(self.class_names) else str(label)

    def rows(self, query: int) -> list[dict[str, Any]]:
        """The neighbours of one query as dicts (rank, id, score, label, class, path, text)."""
        return [{"rank": r + 1, "id": self.ids[query][r], "score": float(self.scores[query, r]),
                 "label": int(self.labels[query, r]), "class": self.label_name(int(self.labels[query, r])),
                 "path": self.paths[query][r], "text": self.texts[query][r]}
                for r in range(len(self.ids[query])) if int(self.indices[query, r]) >= 0]


class EmbeddingIndex:
    """Vectors of one modality in one embedding space, searchable by cosine similarity.

    Args:
        info: the :class:`IndexInfo` (dimension, modality, space, backend).

    Example::

        index = EmbeddingIndex(IndexInfo(dim=256, modality="image", space=model.fingerprint()))
        index.add(image_embeddings, ids=[...], labels=[...], paths=[...])
        hits = index.search(text_embeddings, k=5, space=model.fingerprint())
        index.save("runs/index"); index = EmbeddingIndex.load("runs/index")
    """

    def __init__(self, info: IndexInfo):
        if info.dim < 1:
            raise ConfigError(f"index dimension must be positive, got {info.dim}")
        self.info = info
        self.backend = SEARCH_BACKENDS.create(info.backend, dim=info.dim, **info.backend_options)
        self.vectors = torch.empty(0, info.dim)
        self.ids: list[str] = []
        self.labels = torch.empty(0, dtype=torch.long)
        self.paths: list[str | None] = []
        self.texts: list[str | None] = []

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, vectors: torch.Tensor, ids: Sequence[str], labels: Sequence[int] | None = None,
            paths: Sequence[str | Path | None] | None = None, texts: Sequence[str | None] | None = None) -> None:
        """Add ``[N, dim]`` vectors (normalised here) with unique string ids and optional labels, source
        paths (image items) and texts (text items).

        Raises:
            DataError: shapes disagree, a vector is not finite, or an id is already present.
        """
        vectors = torch.as_tensor(vectors).detach().float().cpu()
        self._check_dim(vectors, "items")
        n = len(vectors)
        ids = [str(i) for i in ids]
        labels = [-1] * n if labels is None else [int(v) for v in labels]
        paths = [None] * n if paths is None else [None if p is None else str(p) for p in paths]
        texts = [None] * n if texts is None else list(texts)
        if not len(ids) == len(labels) == len(paths) == len(texts) == n:
            raise DataError(None, f"{n} vectors but {len(ids)} ids, {len(labels)} labels, {len(paths)} paths, "
                                  f"{len(texts)} texts")
        if not bool(torch.isfinite(vectors).all()):
            raise DataError(None, "item vectors contain NaN or infinite values")
        seen = set(self.ids)
        for item_id in ids:
            if item_id in seen:
                raise DataError(None, f"item id '{item_id}' is already in the index (ids must be unique)")
            seen.add(item_id)
        vectors = F.normalize(vectors, dim=1)
        self.vectors = torch.cat([self.vectors, vectors])
        self.backend.add(vectors, self.vectors)
        self.ids += ids
        self.labels = torch.cat([self.labels, torch.tensor(labels, dtype=torch.long)])
        self.paths += paths
        self.texts += texts

    def check_space(self, space: str, space_name: str = "") -> None:
        """Raise a :class:`DataError` unless queries from ``space`` may search this index."""
        if space != self.info.space:
            raise DataError(self.info.extra.get("path"),
                            f"embedding space mismatch: the index holds {self.info.modality} vectors of "
                            f"{self.info.space_name or 'space'} [{self.info.space}], the query comes from "
                            f"{space_name or 'space'} [{space}]; encode queries with the index's encoders "
                            "and joint model, or rebuild the index")

    def search(self, queries: torch.Tensor, k: int = 10, space: str | None = None,
               space_name: str = "") -> SearchResult:
        """Top-``k`` items for each of the ``[Q, dim]`` queries (normalised here).

        Args:
            queries: query embeddings in this index's space.
            k: neighbours per query (capped at the index size).
            space: the queries' space fingerprint; checked against the index when given.
            space_name: readable name of the queries' space, for the error message.

        Raises:
            DataError: empty index, wrong dimension or another embedding space.
        """
        if space is not None:
            self.check_space(space, space_name)
        if not self.ids:
            raise DataError(self.info.extra.get("path"), "the index is empty: add items before searching")
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        queries = torch.as_tensor(queries).detach().float().cpu()
        if queries.ndim == 1:
            queries = queries[None]
        self._check_dim(queries, "queries")
        scores, indices = self.backend.search(F.normalize(queries, dim=1), min(k, len(self.ids)))
        found = indices >= 0
        labels = torch.where(found, self.labels[indices.clamp(min=0)], -1)
        scores = scores.masked_fill(~found, float("-inf"))
        rows = indices.tolist()

        def pick(values: list) -> list[list]:
            return [[values[i] if i >= 0 else None for i in row] for row in rows]

        return SearchResult(indices=indices, scores=scores, ids=pick(self.ids), labels=labels, paths=pick(self.paths),
                            texts=pick(self.texts), class_names=list(self.info.class_names))

    def _check_dim(self, vectors: torch.Tensor, what: str) -> None:
        if vectors.ndim != 2 or vectors.shape[1] != self.info.dim:
            raise DataError(self.info.extra.get("path"),
                            f"dimension mismatch: {what} have shape {tuple(vectors.shape)}, the index holds "
                            f"{self.info.dim}-d vectors of {self.info.space_name or self.info.space}")

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path, force: bool = False) -> Path:
        """Write the index to ``folder`` (each file atomically, ``index.json`` last).

        Item paths are stored relative to ``folder`` (absolute when that is impossible, e.g. on another
        drive), so the index works from any working directory and when moved together with its files.
        ``folder`` must be absent, empty or an fgmm index (see :func:`claim_index_folder`).
        """
        folder = Path(folder)
        claim_index_folder(folder, force)
        atomic_write(folder / VECTORS_FILE, lambda handle: torch.save({"vectors": self.vectors}, handle))
        paths = [None if p is None else _relative_to(folder, p) for p in self.paths]
        items = {"ids": self.ids, "labels": self.labels.tolist(), "paths": paths, "texts": self.texts}
        atomic_write(folder / ITEMS_FILE, lambda handle: handle.write(json.dumps(items).encode()))
        serialized = self.backend.serialize()
        if serialized is None:
            (folder / FAISS_FILE).unlink(missing_ok=True)
        else:
            atomic_write(folder / FAISS_FILE, lambda handle: handle.write(serialized))
        info = asdict(self.info)
        info["extra"] = {k: v for k, v in info["extra"].items() if k != "path"}
        header = {"format": INDEX_FORMAT, "fgmm_version": fgmm.__version__, "count": len(self),
                  "paths_relative_to": "index", **info}
        atomic_write(folder / INDEX_FILE, lambda handle: handle.write(json.dumps(header, indent=2).encode()))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddingIndex:
        """Read an index written by :meth:`save`.

        Raises:
            DataError: naming the file when the folder is not an index, a file is missing or corrupt,
                or the files disagree with each other.
        """
        folder = Path(folder)
        header = read_json_object(folder / INDEX_FILE, "not an fgmm index folder (no index.json)")
        if header.get("format") != INDEX_FORMAT:
            raise DataError(folder / INDEX_FILE, f"unknown index format {header.get('format')!r} "
                                                 f"(this fgmm reads {INDEX_FORMAT})")
        fields = {k: header[k] for k in IndexInfo.__dataclass_fields__ if k in header}
        try:
            info = IndexInfo(**fields)
        except TypeError as exc:
            raise DataError(folder / INDEX_FILE, f"incomplete index header: {exc}") from None
        info.extra["path"] = str(folder)
        index = cls(info)
        vectors = _read_vectors(folder / VECTORS_FILE)
        items = read_json_object(folder / ITEMS_FILE, "items file is missing")
        count = header.get("count")
        sizes = {len(vectors), *(len(items.get(key, [])) for key in ("ids", "labels", "paths", "texts"))}
        if sizes != {count}:
            raise DataError(folder, f"index files disagree: index.json says {count} items, vectors.pt and "
                                    f"items.json hold {sorted(sizes)}")
        if vectors.ndim != 2 or vectors.shape[1] != info.dim:
            raise DataError(folder / VECTORS_FILE, f"vectors have shape {tuple(vectors.shape)}, "
                                                   f"index.json says dim {info.dim}")
        serialized = (folder / FAISS_FILE).read_bytes() if (folder / FAISS_FILE).is_file() else None
        try:
            index.backend.restore(vectors, serialized)
        except RuntimeError as exc:
            raise DataError(folder / FAISS_FILE, f"corrupt faiss index: {str(exc).splitlines()[-1]}") from None
        index.vectors = vectors
        index.ids, index.labels = list(items["ids"]), torch.tensor(items["labels"], dtype=torch.long)
        paths = list(items["paths"])
        if header.get("paths_relative_to") == "index":  # indexes written before kept paths as given
            paths = [None if p is None else os.path.normpath(folder.absolute() / p) for p in paths]
        index.paths, index.texts = paths, list(items["texts"])
        return index


def _relative_to(folder: Path, path: str) -> str:
    """``path`` relative to ``folder`` (both made absolute), or absolute when no relative path exists."""
    try:
        return Path(os.path.relpath(Path(path).absolute(), folder.absolute())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(Path(path).absolute())


def _legacy_index(folder: Path) -> bool:
    """An index folder written before ownership markers."""
    try:
        return json.loads((folder / INDEX_FILE).read_text()).get("format") == INDEX_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def claim_index_folder(folder: str | Path, force: bool = False, reserved: tuple[str, ...] = (),
                       write: bool = True) -> dict[str, Any]:
    """Make ``folder`` an fgmm index folder: absent, empty or an index already (rebuilt in place); another
    folder only with ``force``, and then none of the index's files (nor ``reserved``) may exist there.
    ``write=False`` only checks.

    Raises:
        OwnershipError: naming the folder or the file that stands in the way.
    """
    return claim_folder(folder, INDEX_KIND, force=force, reserved=(*INDEX_FILES, *reserved), legacy=_legacy_index,
                        what="index folder (--out)", write=write)


def read_json_object(path: Path, missing: str) -> dict[str, Any]:
    """The JSON object in ``path``; :class:`DataError` with ``missing`` when absent, or when corrupt."""
    if not path.is_file():
        raise DataError(path, missing)
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(path, f"corrupt JSON: {exc}") from None
    if not isinstance(value, dict):
        raise DataError(path, "expected a JSON object")
    return value


def _read_vectors(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise DataError(path, "vectors file is missing")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise DataError(path, f"cannot read vectors ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("vectors"), torch.Tensor):
        raise DataError(path, "expected a dict with a 'vectors' tensor")
    return payload["vectors"].float()
