"""Cross-media retrieval end to end: raw queries -> encoders -> joint space -> index.

A :class:`Retriever` bundles an :class:`~fgmm.retrieval.index.EmbeddingIndex` with the encoders
(and, for cross-modal search, the :class:`fgmm.FGModel` whose joint space it searches) that define its
embedding space, so that it can take a sentence, an image file or a recording as a query. Without a model the
space is that of the index's own encoder, and only queries of the same modality make sense
(image -> image, text -> text, audio -> audio); with one, any modality the model projects can query
(a recording against photos, a photo against recordings: the model's joint space aligns them by class).

Saved folder = the index files plus::

    retriever.json   encoders (modality, name, options, fingerprint) and whether a model is used
    model/           the model (FGModel.save_pretrained), when there is one
    descriptor.pt    the image descriptor (views, whitening, metric head; ImageDescriptor.save) of an
                     image->image index, when there is one

Loading re-creates the encoders by name and checks their fingerprints, so an index is never queried
through an encoder other than the one it was built with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from fgmm.encoders.base import Encoder
from fgmm.errors import ConfigError, DataError
from fgmm.registry import Registry
from fgmm.retrieval.descriptor import ImageDescriptor
from fgmm.retrieval.index import EmbeddingIndex, IndexInfo, SearchResult, claim_index_folder, read_json_object
from fgmm.train.checkpoint import atomic_write

RETRIEVER_FORMAT = "fgmm-retriever-1"
RETRIEVER_FILE, MODEL_DIR, DESCRIPTOR_FILE = "retriever.json", "model", "descriptor.pt"
RETRIEVER_FILES = (RETRIEVER_FILE, MODEL_DIR, DESCRIPTOR_FILE)

FEATURE_EXTRACTORS: Registry[torch.Tensor] = Registry("query modality")
"""``modality -> fn(encoder, inputs, cache, progress=False) -> [N, d_m]`` raw encoder features of that
modality's inputs (``progress``: a tqdm bar while encoding many of them, e.g. ``fgmm index build``)."""

UNREADABLE: Registry[list[tuple[int, str]]] = Registry("modality with files")
"""``modality -> fn(inputs) -> [(position, problem), ...]``: the input files of that modality that cannot be
decoded (``Retriever.build(..., skip_bad=True)`` leaves them out and lists them)."""

#: texts encoded per progress-bar update when texts are encoded without a cache
TEXT_CHUNK = 256


@FEATURE_EXTRACTORS.register("image")
def image_features(encoder: Encoder, paths: Sequence[str | Path], cache: Any = None,
                   progress: bool = False) -> torch.Tensor:
    """Features of image files (through the feature cache when one is given)."""
    from tqdm.auto import tqdm

    from fgmm.data.images import image_loader

    if cache is not None:
        return cache.encode_images(encoder, list(paths), progress=progress).features
    parts = []
    with tqdm(total=len(paths), desc=f"encoding images ({encoder.name})", unit="img", disable=not progress) as bar:
        for batch in image_loader(list(paths), encoder.transform(), batch_size=32, num_workers=0):
            if batch.failures:
                index, problem = batch.failures[0]
                raise DataError(paths[index], problem)
            parts.append(encoder.encode(batch.images).cpu())
            bar.update(len(batch.images))
    return torch.cat(parts)


@FEATURE_EXTRACTORS.register("text")
def text_features(encoder: Encoder, texts: Sequence[str], cache: Any = None, progress: bool = False) -> torch.Tensor:
    """Features of texts (through the feature cache when one is given)."""
    from tqdm.auto import tqdm

    texts = list(texts)
    if not progress:  # encoders of other kinds may take no progress argument
        return encoder.encode_cached(texts, cache).cpu()
    if cache is not None or len(texts) <= TEXT_CHUNK:
        return encoder.encode_cached(texts, cache, progress=progress).cpu()
    with tqdm(total=len(texts), desc=f"encoding texts ({encoder.name})", unit="text") as bar:
        parts = []
        for start in range(0, len(texts), TEXT_CHUNK):
            parts.append(encoder.encode_cached(texts[start:start + TEXT_CHUNK]).cpu())
            bar.update(len(parts[-1]))
    return torch.cat(parts)


@FEATURE_EXTRACTORS.register("audio")
def audio_features(encoder: Encoder, paths: Sequence[str | Path], cache: Any = None,
                   progress: bool = False) -> torch.Tensor:
    """Features of recordings: the encoder's selected windows pooled per recording, exactly as the
    model's ``audio`` featurizer computes them (through the feature cache when one is given)."""
    from fgmm.audio.features import encode_recordings

    result = encode_recordings(encoder, list(paths), cache, progress=progress)
    return result.pooled(encoder.pooling).float()


@UNREADABLE.register("image")
def unreadable_images(paths: Sequence[str | Path]) -> list[tuple[int, str]]:
    """Image files that cannot be decoded (missing, corrupt, too large)."""
    from fgmm.data.images import load_image

    problems = []
    for i, path in enumerate(paths):
        try:
            load_image(path)
        except DataError as exc:
            problems.append((i, exc.problem))
    return problems


@UNREADABLE.register("audio")
def unreadable_audio(paths: Sequence[str | Path]) -> list[tuple[int, str]]:
    """Recordings that cannot be decoded (corrupt, empty, silent, absurd sample rate):
    :func:`fgmm.audio.io.scan_audio`."""
    from fgmm.audio.io import scan_audio

    return [(i, scan.problem) for i, scan in enumerate(scan_audio(paths)) if scan.problem is not None]


class ClassAwareMatch:
    """The model's class-aware scores (:meth:`fgmm.FGModel.match_scores`) of ``query_modality`` embeddings
    against the ``item_modality`` vectors of an index, with the re-ranker interface
    ``(queries [Q, d], items [N, d]) -> [Q, N]`` of :mod:`fgmm.retrieval.rerank`."""

    def __init__(self, model: Any, query_modality: str, item_modality: str):
        self.model, self.query_modality, self.item_modality = model, query_modality, item_modality

    def __call__(self, queries: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.model.match_scores(self.model.keys_from_embeddings(self.query_modality, queries),
                                       self.model.keys_from_embeddings(self.item_modality, items))


class Retriever:
    """An index plus the encoders (and model) that put queries into its space.

    Args:
        index: the index; its ``info.space`` must be this retriever's space.
        encoders: encoder per modality (``"image"``, ``"text"``, ...) able to read raw inputs.
        model: the :class:`fgmm.FGModel` projecting encoder features into its joint space, or ``None``.
        encoder_options: keyword arguments each encoder was created with (saved, so that
            :meth:`load` can re-create it with ``create_encoder(encoder.modality, name, **options)``);
            default for a modality of ``model``: the options of the model's config.
        cache: optional :class:`fgmm.cache.FeatureCache` for encoder features.
        descriptor: for an image index without a model, an :class:`~fgmm.retrieval.descriptor.ImageDescriptor`
            (test-time views, whitening, metric head) applied to the image encoder's features.

    Example::

        retriever = Retriever.build("image", image_paths, ids, encoders={"image": vision, "text": text},
                                    model=model, labels=labels)
        retriever.search("text", ["a small bird with a red crown"], k=5).rows(0)
        retriever.save("runs/bird-index"); Retriever.load("runs/bird-index")
    """

    def __init__(self, index: EmbeddingIndex, encoders: Mapping[str, Encoder], model: Any = None,
                 encoder_options: Mapping[str, Mapping[str, Any]] | None = None, cache: Any = None,
                 descriptor: ImageDescriptor | None = None):
        if descriptor is not None and (model is not None or index.info.modality != "image"):
            raise ConfigError("an image descriptor applies to image indexes without a model")
        self.descriptor = descriptor
        self.index = index
        self.encoders = dict(encoders)
        self.model = model.eval() if model is not None else None
        self.encoder_options = {m: dict(o) for m, o in (encoder_options or {}).items()}
        for m in self.encoders.keys() - self.encoder_options.keys():  # a model's encoders: as its config makes them
            if self.model is not None and m in self.model.config.modalities:
                self.encoder_options[m] = dict(self.model.config.modalities[m].encoder_options)
        self.cache = cache
        self.skipped: list[tuple[str, str]] = []
        """``(input, problem)`` of the inputs :meth:`build` left out (``skip_bad=True``)."""
        self._check_model()
        self._space = space_of(self.encoders, self.model, index.info.modality, descriptor)
        index.check_space(*self._space)

    def _check_model(self) -> None:
        if self.model is None:
            return
        for m, encoder in self.encoders.items():
            if m not in self.model.config.modalities:
                raise ConfigError(f"the model has no '{m}' modality (it has {self.model.modalities})")
            expected = self.model.config.modalities[m].input_dim
            if expected != encoder.dim:
                raise ConfigError(f"the model expects {expected}-d {m} features, encoder "
                                  f"'{encoder.name}' gives {encoder.dim}-d")
            trained_on = self.model.encoder_info.get(m, {}).get("fingerprint")
            if trained_on is not None and trained_on != encoder.fingerprint():
                raise ConfigError(f"the model's {m} side was fitted on features of encoder [{trained_on}], "
                                  f"not of '{encoder.name}' [{encoder.fingerprint()}]")

    @classmethod
    def build(cls, modality: str, inputs: Sequence[Any], ids: Sequence[str], *, encoders: Mapping[str, Encoder],
              model: Any = None, labels: Sequence[int] | None = None,
              paths: Sequence[str | Path | None] | None = None, texts: Sequence[str | None] | None = None,
              class_names: Sequence[str] = (),
              backend: str = "torch", backend_options: Mapping[str, Any] | None = None,
              encoder_options: Mapping[str, Mapping[str, Any]] | None = None, cache: Any = None,
              extra: Mapping[str, Any] | None = None, descriptor: ImageDescriptor | None = None,
              progress: bool = False, skip_bad: bool = False) -> Retriever:
        """Encode ``inputs`` of ``modality`` (image paths, texts or audio paths) and index them.

        ``paths`` defaults to ``inputs`` for images and recordings and ``texts`` to ``inputs`` for texts,
        so that results can be shown. ``progress`` shows a bar while the inputs are encoded. With
        ``skip_bad``, files that cannot be decoded (:data:`UNREADABLE`) are left out of the index and listed
        in the retriever's ``skipped``; otherwise the first one raises a one-line :class:`DataError`.
        """
        if model is not None and modality not in model.config.modalities:
            raise ConfigError(f"the model has no '{modality}' modality (it has {model.modalities}), so it cannot "
                              f"index {modality} items; use a model with one (e.g. preset 'image-audio' for "
                              "recordings)")
        if modality not in encoders:
            raise ConfigError(f"no encoder for modality '{modality}' (encoders: {sorted(encoders)})")
        space, space_name = space_of(encoders, model, modality, descriptor)
        dim = model.dim if model is not None else descriptor.dim if descriptor else encoders[modality].dim
        info = IndexInfo(dim=dim, modality=modality, space=space, space_name=space_name, backend=backend,
                         backend_options=dict(backend_options or {}), class_names=list(class_names),
                         extra=dict(extra or {}))
        index = EmbeddingIndex(info)
        retriever = cls(index, encoders, model, encoder_options, cache, descriptor)
        if paths is None and modality in UNREADABLE:
            paths = [str(p) for p in inputs]
        if texts is None and modality == "text":
            texts = list(inputs)
        columns = [list(inputs), list(ids), None if labels is None else [int(y) for y in labels], paths, texts]
        if skip_bad and modality in UNREADABLE:
            bad = dict(UNREADABLE.get(modality)(columns[0]))
            retriever.skipped = [(str(columns[0][i]), problem) for i, problem in sorted(bad.items())]
            columns = [c if c is None else [x for i, x in enumerate(c) if i not in bad] for c in columns]
            if not columns[0]:
                raise DataError(None, f"none of the {len(inputs)} {modality} inputs could be read (first: "
                                      f"{retriever.skipped[0][0]}: {retriever.skipped[0][1]})")
        inputs, ids, labels, paths, texts = columns
        index.add(retriever.embed(modality, inputs, progress=progress), ids, labels, paths, texts)
        return retriever

    @torch.no_grad()
    def embed(self, modality: str, inputs: Sequence[Any], progress: bool = False) -> torch.Tensor:
        """``[N, dim]`` vectors of raw ``inputs`` of ``modality`` in this retriever's space (``progress``:
        a bar while encoding)."""
        own = self.index.info.modality
        if self.model is None and modality != own:
            raise ConfigError(
                f"this index holds {own} features of '{self.encoders[own].name}' without a model, so it can "
                f"only be queried with {own}; build it with a model (fgmm index build --model MODEL_DIR) for "
                "cross-modal queries")
        if self.model is not None and modality not in self.model.config.modalities:
            raise ConfigError(f"this index's model has no '{modality}' modality (it has {self.model.modalities}), "
                              f"so it cannot be queried with {modality}; build the index with a model that has one")
        if modality not in self.encoders:
            raise ConfigError(f"this index cannot be queried with {modality}: it has encoders for "
                              f"{sorted(self.encoders)}")
        if not len(inputs):
            raise DataError(None, f"no {modality} query given")
        if self.descriptor is not None:
            encoder = self.descriptor.encoder(self.encoders[modality])
            return self.descriptor(FEATURE_EXTRACTORS.get(modality)(encoder, inputs, self.cache, progress=progress))
        features = FEATURE_EXTRACTORS.get(modality)(self.encoders[modality], inputs, self.cache, progress=progress)
        return features if self.model is None else self.model.embed(modality, features.to(self.model.gamma.device))

    def search(self, modality: str, inputs: Sequence[Any], k: int = 10, rerank: Any = None,
               match: str | None = None) -> SearchResult:
        """Top-``k`` items for each query (image paths, texts or audio paths).

        Args:
            rerank: re-rank by a name or instance of :data:`fgmm.retrieval.rerank.RERANKERS`.
            match: ``"cosine"`` (nearest neighbours of the embedding) or ``"class"`` (the model's class-aware
                match, :meth:`fgmm.FGModel.match_scores`: the probability that query and item show the same
                class, with the cosine; exact over the whole index). Default: ``"class"`` for an index built
                with a fitted model and no ``rerank``, else ``"cosine"``.
        """
        if match not in (None, "cosine", "class"):
            raise ConfigError(f"match must be 'cosine' or 'class', got {match!r}")
        names_classes = self.model is not None and bool(self.model.available_classes().any())
        if match == "class" and (not names_classes or rerank is not None):
            raise ConfigError("class-aware matching needs an index built with a fitted model (fgmm index build "
                              "--model) and no re-ranker")
        queries = self.embed(modality, inputs)
        if rerank is None and (match or ("class" if names_classes else "cosine")) == "cosine":
            return self.index.search(queries, k, *self._space)
        from fgmm.retrieval.rerank import rerank_search

        return rerank_search(self.index, queries, k, rerank if rerank is not None
                             else ClassAwareMatch(self.model, modality, self.index.info.modality))

    def save(self, folder: str | Path, force: bool = False) -> Path:
        """Write index, encoder specs and model to ``folder`` (absent, empty or an fgmm index; another
        folder only with ``force``, and nothing there is overwritten: see :func:`claim_index_folder`)."""
        folder = Path(folder)
        claim_index_folder(folder, force, reserved=RETRIEVER_FILES)
        self.index.save(folder)
        if self.model is not None:
            self.model.save_pretrained(folder / MODEL_DIR, overwrite=True)
        elif (folder / MODEL_DIR).is_dir():
            from fgmm.ownership import remove_path

            remove_path(folder / MODEL_DIR)  # the index's own previous model, replaced by none
        if self.descriptor is not None:
            self.descriptor.save(folder / DESCRIPTOR_FILE)
        spec = {"format": RETRIEVER_FORMAT, "model": self.model is not None,
                "descriptor": self.descriptor is not None, "encoders": {
            m: {"modality": e.modality, "name": e.name, "options": self.encoder_options.get(m, {}),
                "fingerprint": e.fingerprint()} for m, e in self.encoders.items()}}
        atomic_write(folder / RETRIEVER_FILE, lambda handle: handle.write(json.dumps(spec, indent=2).encode()))
        return folder

    @classmethod
    def load(cls, folder: str | Path, cache: Any = None, modalities: Sequence[str] | None = None) -> Retriever:
        """Re-create a saved retriever; only the encoders of ``modalities`` (default: all) are loaded
        (plus, without a model, the index's own encoder, which defines its space).

        Raises:
            DataError: the folder is not a retriever, or a re-created encoder's weights differ from
                those the index was built with.
        """
        from fgmm.encoders import create_encoder

        folder = Path(folder)
        spec = read_json_object(folder / RETRIEVER_FILE, "not a retriever folder (no retriever.json; build one with "
                                                   "`fgmm index build`)")
        if spec.get("format") != RETRIEVER_FORMAT:
            raise DataError(folder / RETRIEVER_FILE, f"unknown retriever format {spec.get('format')!r}")
        index = EmbeddingIndex.load(folder)
        wanted = set(spec["encoders"] if modalities is None else modalities)
        if not spec.get("model"):
            wanted.add(index.info.modality)  # the index's own encoder defines its space
        encoders, options = {}, {}
        for m, entry in spec["encoders"].items():
            if m not in wanted:
                continue
            encoder = create_encoder(entry["modality"], entry["name"], **entry["options"])
            if encoder.fingerprint() != entry["fingerprint"]:
                raise DataError(folder / RETRIEVER_FILE,
                                f"the {m} encoder '{entry['name']}' now has fingerprint {encoder.fingerprint()}, the "
                                f"index was built with {entry['fingerprint']} (other weights or preprocessing); "
                                "rebuild the index")
            encoders[m], options[m] = encoder, entry["options"]
        model = None
        if spec.get("model"):
            from fgmm.space import FGModel

            model = FGModel.from_pretrained(folder / MODEL_DIR)
        descriptor = ImageDescriptor.load(folder / DESCRIPTOR_FILE) if spec.get("descriptor") else None
        return cls(index, encoders, model, options, cache, descriptor)


def space_of(encoders: Mapping[str, Encoder], model: Any, modality: str,
             descriptor: ImageDescriptor | None = None) -> tuple[str, str]:
    """``(fingerprint, readable name)`` of the space that ``modality``'s vectors live in."""
    if model is not None:
        from fgmm.space.pretrained import model_fingerprint

        fingerprint = model_fingerprint(model)
        return fingerprint, f"joint model {fingerprint} ({' + '.join(model.modalities)})"
    if modality not in encoders:
        raise ConfigError(f"no encoder for modality '{modality}'")
    encoder = encoders[modality]
    if descriptor is not None:
        own = descriptor.fingerprint()
        fingerprint = hashlib.sha256(f"{encoder.fingerprint()}|{own}".encode()).hexdigest()[:16]
        return fingerprint, f"image descriptor {own} over {encoder.modality} encoder '{encoder.name}'"
    return encoder.fingerprint(), f"{encoder.modality} encoder '{encoder.name}'"
