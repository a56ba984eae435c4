"""``fgmm index`` (build and inspect retrieval indexes) and ``fgmm retrieve`` (query one).

Mounted in :mod:`fgmm.cli.main` as::

    app.add_typer(index_app, name="index")
    app.command("retrieve", epilog=RETRIEVE_EXAMPLES)(retrieve)
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fgmm.cli._common import (
    CACHE_HELP,
    DEFAULT_TEXT,
    DEFAULT_VISION,
    console,
    err_console,
    feature_cache,
    friendly_errors,
    names_of,
    one_path,
    print_json,
    quiet_transformers,
)
from fgmm.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

BUILD_EXAMPLES = """Examples:

  fgmm index build --images photos/ --out photo-index                  (image -> image search)

  fgmm index build --images photos/ --model runs/birds --out photo-index (text <-> image search in the
                                        joint space of a trained model: fgmm train --model image-text)

  fgmm index build --texts captions.txt --out caption-index            (one text per line)

  fgmm index build --audio recordings/ --model bird-model --out song-index --skip-bad
                                        (recordings, subfolders = classes, in the joint space of a model
                                         with an audio modality, e.g. preset image-audio: then
                                         fgmm retrieve song-index --audio clip.mp3 or --image photo.jpg)

  fgmm index build --images photos/ --out big-index --backend faiss --faiss-factory HNSW32

  fgmm index build --images photos/ --views identity,hflip --whiten-on labelled/ --out photo-index
                                        (image -> image: flip-averaged descriptors whitened on the
                                         classes of labelled/, one subfolder per class)

  fgmm index build --images photos/ --descriptor descriptor.pt --out photo-index
                                        (a saved ImageDescriptor, e.g. with a metric head)
"""

RETRIEVE_EXAMPLES = """Examples:

  fgmm retrieve photo-index --text "a small bird with a red crown" -k 5

  fgmm retrieve photo-index --image query.jpg -k 10 --grid results.png

  fgmm retrieve photo-index --image query.jpg --rerank kreciprocal

  fgmm retrieve caption-index --text "yellow breast" --json

  fgmm retrieve song-index --audio clip.mp3 --grid spectrograms.png   (recordings like this one)

  fgmm retrieve photo-index --audio clip.mp3                    (photos of the bird singing; the index
                                        must be built with --model of a model with an audio modality)
"""

index_app = typer.Typer(help="Build and inspect retrieval indexes (see also `fgmm retrieve`).", no_args_is_help=True)


def find_images(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """Image files under ``folder`` (recursive, sorted) and their labels: the first-level subfolder
    names are the classes (``-1`` for images directly in ``folder``).

    Raises:
        DataError: ``folder`` is not a folder or holds no image.
    """
    if not folder.is_dir():
        raise DataError(folder, "not a folder")
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(folder, f"no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return _labelled(folder, paths)


def find_recordings(folder: Path) -> tuple[list[Path], list[int], list[str]]:
    """Audio files under ``folder`` (:data:`fgmm.audio.io.AUDIO_SUFFIXES`, recursive, sorted) and their
    labels, as :func:`find_images`.

    Raises:
        DataError: ``folder`` is not a folder or holds no audio file.
    """
    from fgmm.audio.io import find_audio

    return _labelled(folder, find_audio(folder))


def _labelled(folder: Path, paths: list[Path]) -> tuple[list[Path], list[int], list[str]]:
    """``paths`` under ``folder`` with labels from their first-level subfolder (``-1`` directly in ``folder``)."""
    groups = [p.relative_to(folder).parts[0] if len(p.relative_to(folder).parts) > 1 else None for p in paths]
    class_names = sorted({g for g in groups if g is not None})
    label_of = {name: i for i, name in enumerate(class_names)}
    return paths, [label_of[g] if g is not None else -1 for g in groups], class_names


def _backends() -> list[str]:
    from fgmm.retrieval.index import SEARCH_BACKENDS

    return SEARCH_BACKENDS.names()


def _rerankers() -> list[str]:
    from fgmm.retrieval.rerank import RERANKERS

    return RERANKERS.names()


@index_app.command("build", epilog=BUILD_EXAMPLES)
@friendly_errors
def build(
    out: Path = typer.Option(..., "--out", "-o", help="index folder to write"),
    images: Path | None = typer.Option(None, "--images", help="folder of images (recursive; subfolders = classes)"),
    texts: Path | None = typer.Option(None, "--texts", help="UTF-8 text file, one item per line"),
    audio: Path | None = typer.Option(None, "--audio", help="folder of recordings (.wav/.flac/.ogg/.mp3, recursive; "
                                                            "subfolders = classes)"),
    model: Path | None = typer.Option(None, "--model", help="a trained model (FGModel folder or `fgmm train` run "
                                                            "folder) whose joint space the index uses, for "
                                                            "cross-modal queries"),
    vision: str = typer.Option(DEFAULT_VISION, help="vision encoder (any timm name)"),
    image_size: int | None = typer.Option(None, min=1, help="vision encoder input size (default: the model's)"),
    zoom: bool = typer.Option(False, "--zoom", help="image->image: append object-zoom features (the bird found by "
                                                    "the backbone, encoded again; 3x encoding)"),
    text_model: str = typer.Option(DEFAULT_TEXT, help="text encoder (sentence-transformers / HF name)"),
    backend: str = typer.Option("torch", help="search backend: torch (exact) or faiss",
                                callback=names_of("search backend", _backends)),
    faiss_factory: str = typer.Option("Flat", help="faiss index factory string (Flat, HNSW32, IVF1024,Flat)"),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    views: str | None = typer.Option(None, "--views", help="image->image: test-time views averaged, comma-separated "
                                                           "(identity, hflip)"),
    whiten_on: Path | None = typer.Option(None, "--whiten-on", help="image->image: labelled image folder "
                                                                    "(subfolders = classes) to learn whitening on"),
    descriptor: Path | None = typer.Option(None, "--descriptor", help="image->image: a saved ImageDescriptor file"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty folder that is not an fgmm index "
                                                      "(nothing already there is overwritten)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="leave out (and list) image or audio files that cannot "
                                                            "be decoded instead of failing"),
) -> None:
    """Encode a folder of images or recordings, or a file of texts, and write a searchable index.

    OUT must be new, empty or an fgmm index (rebuilt in place). Item paths are stored relative to OUT, so
    the index works from any directory and when moved together with the images.
    """
    from fgmm.audio.encoders import DEFAULT_AUDIO_MODEL
    from fgmm.cli.predict import model_folder
    from fgmm.data.folder import read_text_lines
    from fgmm.encoders import create_encoder
    from fgmm.errors import UsageError
    from fgmm.retrieval import Retriever
    from fgmm.retrieval.index import claim_index_folder
    from fgmm.retrieval.retriever import RETRIEVER_FILES
    from fgmm.space import FGModel
    from fgmm.space.inputs import model_encoder

    if sum(x is not None for x in (images, texts, audio)) != 1:
        raise UsageError("give exactly one of --images DIR, --audio DIR or --texts FILE")
    claim_index_folder(out, force, reserved=RETRIEVER_FILES, write=False)  # refused before anything is encoded
    if images is not None or audio is not None:  # read the inputs first: bad input fails before any model loads
        modality, source, find = ("image", images, find_images) if images is not None else (
            "audio", audio, find_recordings)
        inputs, labels, class_names = find(source)
        ids = [str(p.relative_to(source)) for p in inputs]
    else:
        modality, source = "text", texts
        inputs, labels, class_names = read_text_lines(texts), None, []
        ids = [f"{texts.name}:{i + 1}" for i in range(len(inputs))]
    labelled = _labelled_images(whiten_on) if whiten_on is not None else None
    fitted = FGModel.from_pretrained(model_folder(model)) if model is not None else None
    quiet_transformers()
    vision_options = {**({} if image_size is None else {"image_size": image_size}), **({"zoom": True} if zoom else {})}
    specs = {"image": ("vision", vision, vision_options),
             "text": ("text", text_model, {}), "audio": ("audio", DEFAULT_AUDIO_MODEL, {})}
    if fitted is not None:  # the model's own encoders, checked against the ones it was fitted with
        if modality not in fitted.modalities:
            raise UsageError(f"the model {model} has no '{modality}' modality (it has {fitted.modalities}): give a "
                             f"model with one (e.g. preset 'image-audio'), or no --model for {modality} -> {modality}")
        wanted = sorted(set(fitted.modalities) & set(specs))
        encoders = {m: model_encoder(fitted, m) for m in wanted}
        specs.update({m: (specs[m][0], fitted.config.modalities[m].encoder or encoders[m].name,
                          fitted.config.modalities[m].encoder_options) for m in wanted})
    else:
        wanted = [modality]
        encoders = {modality: create_encoder(specs[modality][0], specs[modality][1], **specs[modality][2])}
    features = feature_cache(cache)
    image_descriptor = None
    if descriptor is not None or whiten_on is not None or views is not None:
        if modality != "image" or fitted is not None:
            raise UsageError("--views, --whiten-on and --descriptor are for image indexes without --model")
        image_descriptor = _image_descriptor(descriptor, labelled, views, encoders["image"], features)
    retriever = Retriever.build(modality, inputs, ids, encoders=encoders, model=fitted, labels=labels,
                                class_names=class_names, backend=backend,
                                encoder_options={m: specs[m][2] for m in wanted},
                                backend_options={"factory": faiss_factory} if backend == "faiss" else {},
                                cache=features, descriptor=image_descriptor,
                                extra={"source": str(source.resolve())}, progress=True, skip_bad=skip_bad)
    retriever.save(out, force)
    info = retriever.index.info
    console.print(f"indexed {len(retriever.index)} {info.modality} items ({info.dim}-d, {info.space_name}, "
                  f"{info.backend}) into {out}")
    for path, problem in retriever.skipped:
        err_console.print(f"skipped {path}: {problem}")
    if retriever.skipped:
        err_console.print(f"skipped {len(retriever.skipped)} unreadable {modality} file(s) (--skip-bad)")


def _labelled_images(folder: Path) -> tuple[list[Path], list[int]]:
    """Images and labels of a folder with one subfolder per class (``--whiten-on``)."""
    paths, labels, _ = find_images(folder)
    if min(labels) < 0:
        raise DataError(folder, "images directly in this folder have no class: put them in one subfolder per class")
    return paths, labels


def _image_descriptor(path: Path | None, labelled: tuple[list[Path], list[int]] | None, views: str | None,
                      encoder, cache):
    """The ImageDescriptor of ``index build``: loaded from ``path``, or built from ``views`` and, given
    ``labelled`` training images, whitened on their classes."""
    import torch

    from fgmm.errors import UsageError
    from fgmm.retrieval.descriptor import DescriptorConfig, ImageDescriptor
    from fgmm.retrieval.retriever import image_features

    if path is not None:
        if labelled is not None or views is not None:
            raise UsageError("--descriptor already fixes views and whitening: drop --views / --whiten-on")
        return ImageDescriptor.load(path)
    names = [v.strip() for v in (views or "identity").split(",") if v.strip()]
    descriptor = ImageDescriptor(DescriptorConfig(views=names, whitening=labelled is not None))
    if labelled is None:
        return descriptor.fit(torch.empty(0, descriptor.encoder(encoder).dim))
    paths, labels = labelled
    return descriptor.fit(image_features(descriptor.encoder(encoder), paths, cache), torch.tensor(labels))


@index_app.command("info", epilog="Example: fgmm index info photo-index")
@friendly_errors
def info(index: Path = typer.Argument(..., help="index folder"),
         as_json: bool = typer.Option(False, "--json", help="print JSON to stdout instead of a table")) -> None:
    """Show what an index holds and which encoders and model define its space."""
    from fgmm.retrieval import EmbeddingIndex
    from fgmm.retrieval.index import read_json_object
    from fgmm.retrieval.retriever import RETRIEVER_FILE

    loaded = EmbeddingIndex.load(index)
    meta = loaded.info
    summary = {"index": str(index), "items": len(loaded), "modality": meta.modality, "dim": meta.dim,
               "space": meta.space, "space_name": meta.space_name, "backend": meta.backend,
               "backend_options": meta.backend_options, "classes": len(meta.class_names),
               "source": meta.extra.get("source", "")}
    if (index / RETRIEVER_FILE).is_file():
        spec = read_json_object(index / RETRIEVER_FILE, "")
        summary["encoders"] = {m: {"name": e["name"], "fingerprint": e["fingerprint"]}
                               for m, e in spec["encoders"].items()}
        summary["joint_model"], summary["image_descriptor"] = bool(spec.get("model")), bool(spec.get("descriptor"))
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"index {index}", show_header=False)
    for key in ("items", "modality", "dim", "classes", "source"):
        table.add_row(key, str(summary[key]))
    table.add_row("space", f"{meta.space_name} [{meta.space}]")
    table.add_row("backend", f"{meta.backend} {meta.backend_options}")
    for m, entry in summary.get("encoders", {}).items():
        table.add_row(f"encoder {m}", f"{entry['name']} [{entry['fingerprint']}]")
    if "joint_model" in summary:
        table.add_row("joint model", "yes" if summary["joint_model"] else "no")
        table.add_row("image descriptor", "yes" if summary["image_descriptor"] else "no")
    console.print(table)


@friendly_errors
def retrieve(
    index: Path | None = typer.Argument(None, metavar="INDEX", show_default=False,
                                        help="index folder written by `fgmm index build`"),
    index_option: Path | None = typer.Option(None, "--index", help="same as INDEX (the older form)"),
    text: str | None = typer.Option(None, "--text", help="query sentence"),
    image: Path | None = typer.Option(None, "--image", help="query image file"),
    audio: Path | None = typer.Option(None, "--audio", help="query recording (.wav/.flac/.ogg/.mp3); the index "
                                                            "needs a model with an audio modality unless it "
                                                            "holds recordings"),
    k: int = typer.Option(5, "-k", "--k", min=1, help="number of results"),
    grid: Path | None = typer.Option(None, "--grid", help="also save the results as a picture (PNG)"),
    as_json: bool = typer.Option(False, "--json", help="print the results as JSON to stdout"),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    rerank: str | None = typer.Option(None, "--rerank", help="re-rank the results: aqe, dba or kreciprocal "
                                                             "(exact over the whole index)",
                                      callback=names_of("re-ranker", _rerankers)),
    match: str | None = typer.Option(None, "--match", help="'class': rank by the model's class-aware match "
                                                            "(the probability that query and item show the same "
                                                            "class, plus the cosine; the default for an index "
                                                            "built with --model); 'cosine': the embedding alone"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --grid picture"),
) -> None:
    """Query an index with a sentence, an image or a recording; print ids, scores and classes (optionally a
    picture: thumbnails, or spectrograms for an audio query against recordings)."""
    from fgmm.errors import UsageError
    from fgmm.ownership import check_new_file
    from fgmm.retrieval import Retriever

    index = one_path(index, index_option, "index", "as the first argument: fgmm retrieve INDEX ...")
    if sum(x is not None for x in (text, image, audio)) != 1:
        raise UsageError("give exactly one of --text SENTENCE, --image FILE or --audio FILE")
    if match not in (None, "class", "cosine"):
        raise UsageError(f"--match must be 'class' or 'cosine', got '{match}'")
    if grid is not None:
        check_new_file(grid, force, what="picture (--grid)")
    if rerank is not None:
        from fgmm.retrieval.rerank import RERANKERS

        RERANKERS.get(rerank)  # an unknown name fails before any model loads
    modality, query = ("text", text) if text is not None else ("image", image) if image is not None else (
        "audio", audio)
    if modality != "text" and not query.is_file():
        raise DataError(query, f"query {modality} not found")
    quiet_transformers()
    retriever = Retriever.load(index, cache=feature_cache(cache), modalities=[modality])
    result = retriever.search(modality, [query], k, rerank=rerank, match=match)
    rows = result.rows(0)
    if as_json:
        print_json({"query": {modality: str(query)}, "results": rows})
    else:
        table = Table(title=f"{modality} query: {query}")
        for column in ("rank", "score", "class", "item"):
            table.add_column(column)
        for row in rows:
            item = row["text"] or row["id"]
            table.add_row(str(row["rank"]), f"{row['score']:.3f}", row["class"], item)
        console.print(table)
    if grid is not None:
        _picture(result, modality, query, retriever.index.info.modality, grid)
        (err_console if as_json else console).print(f"picture of the results: {grid}")


def _picture(result, modality: str, query, items: str, out: Path) -> None:
    """``--grid``: spectrograms of an audio query and its recordings (:func:`fgmm.audio.plot.spectrogram_figure`),
    else thumbnails / texts (:func:`fgmm.retrieval.result_grid`; a recording shows as its name)."""
    from fgmm.retrieval import result_grid

    if items == "audio" and modality == "audio":
        from fgmm.audio.plot import Panel, spectrogram_figure

        hits = [Panel(row["path"], f"#{row['rank']}  {row['score']:.3f}  {row['class'] or row['id']}")
                for row in result.rows(0)]
        spectrogram_figure(Panel(query, f"query: {Path(query).name}"), hits, out)
        return
    captions = {"text": str(query), "audio": f"recording: {Path(query).name}"}
    result_grid(result, query_text=captions.get(modality), query_image=query if modality == "image" else None,
                out=out)
