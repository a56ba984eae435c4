"""A disk cache of frozen-encoder outputs.

Encoding the 5,994 CUB training images with EfficientNet-Lite2 takes minutes on a laptop CPU;
training heads, fusion and GNNs on top of the features takes seconds. :class:`FeatureCache` stores
each feature row once under a *namespace* (for images: the encoder's fingerprint, which changes with
architecture, weights and preprocessing) and a *key* (for images: resolved path, mtime and size,
so an edited file is encoded again).

Layout (one folder per namespace)::

    root/<namespace>/.fgmm.json                  ownership marker (fgmm.ownership): fgmm created this folder
    root/<namespace>/meta.json                   what produced the features (encoder name, preprocessing, ...)
    root/<namespace>/shard-<time>-<pid>-<id>.safetensors   rows + their keys (header metadata)

Only folders carrying the marker (or, for caches written before markers, a ``meta.json`` with the cache
format stamp) are namespaces: :meth:`FeatureCache.clear` deletes nothing else, and inside a namespace
only the files the cache writes. Writing into an existing folder that is not a namespace is refused.

Shards are append-only and self-describing: a shard's safetensors header holds the keys of its rows,
so the index of a namespace is the union of its shard headers and there is no second file to keep
consistent. Every file is written to a temporary name, flushed to disk and moved into place with
``os.replace``; a crash leaves at most an ignored ``.tmp`` file and loses at most the batch being
computed. Each batch is committed as its own shard as soon as it is computed; when a call ends the
shards it wrote are merged into one.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors
import safetensors.torch
import torch
from tqdm.auto import tqdm

from fgmm.data.images import image_loader
from fgmm.errors import ConfigError, DataError
from fgmm.io import write_bytes_atomic
from fgmm.ownership import claim_folder, is_owned, remove_owned_folder

if TYPE_CHECKING:  # the encoders import the cache (audio features), so only for annotations
    from fgmm.encoders.base import Encoder

_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_DTYPES = {"float32": torch.float32, "float16": torch.float16}
_SHARD_GLOB = "shard-*.safetensors"
_FORMAT = "fgmm-feature-cache/1"
NAMESPACE_KIND = "cache-namespace"
#: the files a namespace holds (besides its marker and the temporaries of interrupted writes)
NAMESPACE_FILES = (_SHARD_GLOB, "meta.json")


def _legacy_namespace(folder: Path) -> bool:
    """A namespace written before ownership markers: its meta.json carries the cache format stamp."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == _FORMAT and meta.get("namespace") == folder.name


def _check_batch_size(batch_size: int) -> None:
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ConfigError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def image_key(path: str | Path) -> str:
    """Cache key of an image file: resolved path, modification time (ns) and size in bytes."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from None
    return f"{path.resolve()}|{stat.st_mtime_ns}|{stat.st_size}"


class _Namespace:
    """The shards and metadata of one namespace folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.name = folder.name

    def corrupt(self, path: Path, problem: str) -> DataError:
        return DataError(
            path,
            f"corrupt feature cache file ({problem}); delete this namespace with "
            f"`fgmm cache clear --namespace {self.name}` (FeatureCache.clear('{self.name}')) and run again",
        )

    def shards(self) -> list[Path]:
        return sorted(self.folder.glob(_SHARD_GLOB))

    def meta(self) -> dict[str, Any]:
        path = self.folder / "meta.json"
        if not path.exists():
            return {}
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise self.corrupt(path, str(exc)) from None

    def write_meta(self, meta: Mapping[str, Any]) -> None:
        """Record what produced this namespace's features (first writer wins)."""
        path = self.folder / "meta.json"
        if not path.exists():
            created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            record = {"format": _FORMAT, "namespace": self.name, "created": created, **meta}
            write_bytes_atomic(path, json.dumps(record, indent=2, default=str).encode())

    def header(self, shard: Path) -> tuple[list[str], int]:
        """Keys and feature size of ``shard``, read from its header only."""
        try:
            with safetensors.safe_open(str(shard), framework="pt") as handle:
                keys = json.loads((handle.metadata() or {})["keys"])
                rows, dim = handle.get_slice("features").get_shape()
        except (safetensors.SafetensorError, OSError, ValueError, KeyError) as exc:
            raise self.corrupt(shard, f"{type(exc).__name__}: {exc}") from None
        if len(keys) != rows:
            raise self.corrupt(shard, f"{len(keys)} keys for {rows} rows")
        return keys, dim

    def index(self) -> dict[str, tuple[Path, int]]:
        """Key -> (shard, row) over all shards; a key stored twice (same value) keeps its first copy."""
        index: dict[str, tuple[Path, int]] = {}
        for shard in self.shards():
            for row, key in enumerate(self.header(shard)[0]):
                index.setdefault(key, (shard, row))
        return index

    def dim(self) -> int | None:
        """Feature size of the stored rows, or ``None`` when the namespace is empty."""
        shards = self.shards()
        return self.header(shards[0])[1] if shards else None

    def load(self, shard: Path) -> torch.Tensor:
        try:
            with safetensors.safe_open(str(shard), framework="pt") as handle:
                return handle.get_tensor("features")
        except (safetensors.SafetensorError, OSError) as exc:
            raise self.corrupt(shard, f"{type(exc).__name__}: {exc}") from None

    def gather(self, keys: Sequence[str]) -> torch.Tensor:
        """``[len(keys), d]`` float32 rows of ``keys`` (all must be stored), in order."""
        index = self.index()
        by_shard: dict[Path, list[tuple[int, int]]] = {}
        for position, key in enumerate(keys):
            shard, row = index[key]
            by_shard.setdefault(shard, []).append((position, row))
        out = torch.empty((len(keys), self.dim() or 0), dtype=torch.float32)
        for shard, pairs in by_shard.items():
            positions, rows = zip(*pairs, strict=True)
            out[list(positions)] = self.load(shard)[list(rows)].float()
        return out

    def write_shard(self, keys: Sequence[str], rows: torch.Tensor) -> Path:
        name = f"shard-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.safetensors"
        data = safetensors.torch.save(
            {"features": rows.contiguous()}, metadata={"format": _FORMAT, "keys": json.dumps(list(keys))}
        )
        path = self.folder / name
        write_bytes_atomic(path, data)
        return path

    def merge(self, shards: list[Path]) -> None:
        """Replace ``shards`` by one shard holding their rows (written before the parts are removed)."""
        keys = [key for shard in shards for key in self.header(shard)[0]]
        self.write_shard(keys, torch.cat([self.load(shard) for shard in shards]))
        for shard in shards:
            shard.unlink()


class _Writer:
    """Commits batches of rows of one namespace as shards; validates their shape."""

    def __init__(self, namespace: _Namespace, dtype: torch.dtype):
        self.namespace = namespace
        self.dtype = dtype
        self.dim = namespace.dim()
        self.written: list[Path] = []

    def add(self, keys: Sequence[str], rows: torch.Tensor) -> None:
        if not isinstance(rows, torch.Tensor) or rows.ndim != 2 or rows.shape[0] != len(keys):
            shape = tuple(rows.shape) if isinstance(rows, torch.Tensor) else type(rows).__name__
            raise ConfigError(f"feature cache: expected a [{len(keys)}, d] tensor of rows, got {shape}")
        if self.dim is not None and rows.shape[1] != self.dim:
            raise ConfigError(
                f"feature cache namespace '{self.namespace.name}' holds {self.dim}-d rows but "
                f"{rows.shape[1]}-d rows were computed; use another namespace or clear this one"
            )
        self.dim = rows.shape[1]
        self.written.append(self.namespace.write_shard(keys, rows.detach().to("cpu", self.dtype)))


@dataclass
class EncodedImages:
    """Result of :meth:`FeatureCache.encode_images`; nothing is dropped without being listed.

    Attributes:
        features: ``[len(kept), d]`` float32 features; row ``k`` belongs to ``paths[kept[k]]``.
        kept: indices into the input ``paths`` of the rows of ``features`` (all of them unless skipped).
        skipped: ``(path, problem)`` of every image that could not be read (only with ``skip_bad=True``).
        encoded: how many distinct files this call ran the encoder on (the others came from the cache).
    """

    features: torch.Tensor
    kept: list[int]
    skipped: list[tuple[Path, str]]
    encoded: int = 0


class FeatureCache:
    """Disk cache of feature rows, by namespace and key.

    Args:
        root: cache folder (created on first write).
        dtype: storage precision, ``"float32"`` (exact) or ``"float16"`` (half the disk); rows are always
            returned as float32.

    Example::

        cache = FeatureCache(".fgmm-cache")
        result = cache.encode_images(create_encoder("vision"), paths)    # slow once, then instant
        text = cache.lookup("minilm-captions", captions, lambda idx: model.encode([captions[i] for i in idx]))
    """

    def __init__(self, root: str | Path, dtype: str = "float32"):
        if dtype not in _DTYPES:
            raise ConfigError(f"feature cache dtype must be one of {sorted(_DTYPES)}, got '{dtype}'")
        self.root = Path(root)
        self.dtype = _DTYPES[dtype]

    def _namespace(self, name: str) -> _Namespace:
        if not _NAMESPACE.fullmatch(name):
            raise ConfigError(
                f"invalid feature cache namespace '{name}': use letters, digits, '.', '_' and '-' "
                "(not starting with '.', '_' or '-')"
            )
        return _Namespace(self.root / name)

    @contextmanager
    def _writer(self, namespace: _Namespace, meta: Mapping[str, Any] | None) -> Iterator[_Writer]:
        """Open ``namespace`` for writing; on success merge the shards written meanwhile into one.

        A namespace this call created is removed again when the call fails before storing a row.
        """
        created = not namespace.folder.exists()
        claim_folder(namespace.folder, NAMESPACE_KIND, legacy=_legacy_namespace, what="feature cache namespace")
        writer = _Writer(namespace, self.dtype)
        try:
            namespace.write_meta(meta or {})
            yield writer
        except BaseException:
            if created and not namespace.shards():
                remove_owned_folder(namespace.folder, NAMESPACE_KIND, NAMESPACE_FILES)
            raise
        if len(writer.written) > 1:
            namespace.merge(writer.written)

    def lookup(
        self,
        namespace: str,
        keys: Sequence[str],
        compute: Callable[[list[int]], torch.Tensor],
        batch_size: int = 64,
        progress: bool = True,
        meta: Mapping[str, Any] | None = None,
    ) -> torch.Tensor:
        """Rows of ``keys`` in order, computing and storing only the missing ones.

        Args:
            namespace: what produced the rows (e.g. an encoder fingerprint); a folder name.
            keys: one string per wanted row (duplicates allowed, computed once).
            compute: ``compute(indices)`` returns the ``[len(indices), d]`` rows of ``keys[i]`` for ``i`` in
                ``indices`` (indices into ``keys``); called only for keys not stored yet.
            batch_size: how many keys ``compute`` gets per call; each batch is committed to disk at once.
            progress: show a tqdm bar while computing.
            meta: JSON-able description of the producer, recorded in the namespace's ``meta.json``.

        Returns:
            ``[len(keys), d]`` float32 tensor (as stored: float16 storage rounds the first result too).
        """
        _check_batch_size(batch_size)
        store = self._namespace(namespace)
        index = store.index()
        first: dict[str, int] = {}
        for i, key in enumerate(keys):
            if key not in index:
                first.setdefault(key, i)
        missing = list(first.values())
        if missing:
            with self._writer(store, meta) as writer, tqdm(
                total=len(missing), desc=f"computing {namespace}", unit="row", disable=not progress
            ) as bar:
                for start in range(0, len(missing), batch_size):
                    batch = missing[start : start + batch_size]
                    writer.add([keys[i] for i in batch], compute(batch))
                    bar.update(len(batch))
        return store.gather(keys)

    def encode_images(
        self,
        encoder: Encoder,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        num_workers: int | None = None,
        progress: bool = True,
        skip_bad: bool = False,
    ) -> EncodedImages:
        """Features of image files from a frozen vision encoder, encoding only files not cached yet.

        The namespace is ``encoder.fingerprint()``; the key of a file is its resolved path, mtime and size.
        Files are decoded and transformed (``encoder.transform()``) in DataLoader worker processes.

        Args:
            encoder: a frozen encoder with ``transform()`` (e.g. :class:`~fgmm.encoders.TimmVisionEncoder`).
            paths: image files.
            batch_size: images per forward pass (and per committed shard).
            num_workers: decoding processes; default one per core but one (see ``default_num_workers``).
            progress: show a tqdm bar while encoding.
            skip_bad: if ``False``, the first unreadable image raises :class:`DataError` naming it (features
                of the batches before it stay cached); if ``True``, unreadable images are left out of the
                result, listed in ``skipped`` and counted in a warning.

        Returns:
            :class:`EncodedImages` with ``features``, ``kept`` indices and ``skipped`` files.
        """
        if not encoder.frozen:
            raise ConfigError(
                f"encoder '{encoder.name}' is not frozen: the features of a trainable encoder change while "
                "it trains and cannot be cached; create it with frozen=True"
            )
        _check_batch_size(batch_size)
        encoder.eval()
        store = self._namespace(encoder.fingerprint())
        keys: list[str | None] = []
        problems: dict[int, str] = {}  # index into paths -> why that image cannot be read
        for i, path in enumerate(paths):
            try:
                keys.append(image_key(path))
            except DataError as exc:
                if not skip_bad:
                    raise
                keys.append(None)
                problems[i] = exc.problem
        index = store.index()
        todo: dict[str, Path] = {}  # key -> file, each missing key once
        for key, path in zip(keys, paths, strict=True):
            if key is not None and key not in index:
                todo.setdefault(key, Path(path))
        bad: dict[str, str] = {}  # key -> problem
        if todo:
            todo_keys, todo_paths = list(todo), list(todo.values())
            meta = {"encoder": encoder.name, "modality": encoder.modality, "dim": encoder.dim,
                    "preprocessing": encoder.preprocessing(), "keys": "resolved path|mtime_ns|size"}
            loader = image_loader(todo_paths, encoder.transform(), batch_size, num_workers)
            with self._writer(store, meta) as writer, tqdm(
                total=len(todo), desc=f"encoding images ({encoder.name})", unit="img", disable=not progress
            ) as bar:
                for batch in loader:
                    for j, problem in batch.failures:
                        if not skip_bad:
                            raise DataError(todo_paths[j], problem)
                        bad[todo_keys[j]] = problem
                    if batch.images is not None:
                        writer.add([todo_keys[j] for j in batch.indices], encoder.encode(batch.images))
                    bar.update(len(batch.indices) + len(batch.failures))
        problems.update({i: bad[key] for i, key in enumerate(keys) if key in bad})
        kept = [i for i in range(len(keys)) if i not in problems]
        skipped = [(Path(paths[i]), problems[i]) for i in sorted(problems)]
        if skipped:
            path, problem = skipped[0]
            warnings.warn(
                f"skipped {len(skipped)} of {len(keys)} images that could not be read "
                f"(first: {path}: {problem}); see EncodedImages.skipped for all of them",
                stacklevel=2,
            )
        features = store.gather([keys[i] for i in kept]) if kept else torch.empty((0, encoder.dim))
        return EncodedImages(features=features, kept=kept, skipped=skipped, encoded=len(todo) - len(bad))

    def _namespaces(self) -> list[_Namespace]:
        if not self.root.is_dir():
            return []
        return [_Namespace(folder) for folder in sorted(self.root.iterdir())
                if _NAMESPACE.fullmatch(folder.name) and is_owned(folder, NAMESPACE_KIND, _legacy_namespace)]

    def info(self) -> list[dict[str, Any]]:
        """One dict per namespace: ``namespace``, ``encoder`` (or ``None``), ``modality``, ``dim``,
        ``entries`` (distinct keys), ``shards`` and ``bytes`` on disk."""
        rows = []
        for namespace in self._namespaces():
            meta = namespace.meta()
            rows.append({
                "namespace": namespace.name,
                "encoder": meta.get("encoder"),
                "modality": meta.get("modality"),
                "dim": namespace.dim(),
                "entries": len(namespace.index()),
                "shards": len(namespace.shards()),
                "bytes": sum(f.stat().st_size for f in namespace.folder.iterdir() if f.is_file()),
            })
        return rows

    def clear(self, namespace: str | None = None) -> list[str]:
        """Delete one namespace (or all of them); returns the namespaces deleted.

        Only folders fgmm marked as namespaces are touched, and in them only the files the cache writes;
        a namespace holding other files keeps them (and its folder), with a warning.

        Raises:
            OwnershipError: ``namespace`` names a folder that is not a feature-cache namespace.
        """
        if namespace is not None:
            target = self._namespace(namespace)
            targets = [target] if target.folder.exists() else []
        else:
            targets = self._namespaces()
        cleared = []
        for target in targets:
            left = remove_owned_folder(target.folder, NAMESPACE_KIND, NAMESPACE_FILES, _legacy_namespace)
            cleared.append(target.name)
            if left:
                warnings.warn(f"{target.folder}: kept {len(left)} entr{'y' if len(left) == 1 else 'ies'} that the "
                              f"cache did not create (e.g. {left[0].name})", stacklevel=2)
        return cleared
