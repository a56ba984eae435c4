"""``fgmm predict``: the top classes of photos, descriptions, recordings or places, from a saved model.

Mounted in :mod:`fgmm.cli.main` as ``app.command("predict", epilog=PREDICT_EXAMPLES)(predict)``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from fgmm.cli._common import CACHE_HELP, console, feature_cache, friendly_errors, print_json, quiet_transformers
from fgmm.errors import UsageError

PREDICT_EXAMPLES = """Examples:

  fgmm predict runs/cub/model bird.jpg other.jpg -k 3

  fgmm predict runs/cub bird.jpg --text "a small bird with a red crown and black wings"

  fgmm predict runs/cub --text "a large gull with a yellow bill and pink legs" --json

  fgmm predict runs/cub bird.jpg --lat 41.9 --lon -87.6 --date 2024-05-12
"""


def model_folder(path: Path) -> Path:
    """The model folder of ``path``: itself, or ``path/model`` for a run folder written by ``fgmm train``."""
    from fgmm.space.pretrained import is_model_folder

    if not is_model_folder(path) and is_model_folder(path / "model"):
        return path / "model"
    return path


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--date must be an ISO date like 2024-05-12 (or 2024-05-12T07:30), got '{value}'") from None


def _inputs(images: list[Path], texts: list[str], audio: Path | None, lat: float | None, lon: float | None,
            date: str | None) -> dict:
    """Per-sample input lists: one sample per image (every text describes each image), or per text when
    there is no image, or one sample of the recording / place alone."""
    if (lat is None) != (lon is None):
        raise UsageError("give --lat and --lon together")
    location = None if lat is None else (lat, lon)
    when = _date(date)
    n = len(images) or len(texts) or 1
    inputs: dict = {}
    if images:
        inputs["images"] = images
        if texts:
            inputs["texts"] = [texts] * n
    elif texts:
        inputs["texts"] = texts
    if audio is not None:
        inputs["audio"] = [audio] * n
    if location is not None:
        inputs["locations"] = [location] * n
    if when is not None:
        inputs["times"] = [when] * n
    if not inputs:
        raise UsageError("nothing to predict: give image files, --text, --audio or --lat/--lon")
    return inputs


@friendly_errors
def predict(
    model: Path = typer.Argument(..., help="model folder (FGModel.save_pretrained) or run folder of `fgmm train`"),
    images: list[Path] = typer.Argument(None, help="image files, one prediction each"),
    text: list[str] = typer.Option(None, "--text", "-t", help="a description (repeat for several); with images "
                                                               "it describes each of them"),
    audio: Path | None = typer.Option(None, "--audio", help="a recording of the bird"),
    lat: float | None = typer.Option(None, "--lat", help="latitude where the bird was seen (decimal degrees)"),
    lon: float | None = typer.Option(None, "--lon", help="longitude where the bird was seen (decimal degrees)"),
    date: str | None = typer.Option(None, "--date", help="when it was seen (ISO date)"),
    k: int = typer.Option(5, "-k", min=1, help="classes to show per input"),
    cache: Path | None = typer.Option(None, "--cache", help=CACHE_HELP),
    as_json: bool = typer.Option(False, "--json", help="print JSON to stdout instead of tables"),
) -> None:
    """Top-k classes with probabilities for each input, from a saved model (any modality it has). For
    descriptions alone and a model built with a knowledge graph, each class also lists the attributes the
    description names with that class's strength in the graph (the explanation)."""
    from fgmm.kgtext.predict import format_evidence
    from fgmm.space import FGModel

    quiet_transformers()
    fitted = FGModel.from_pretrained(model_folder(model))
    inputs = _inputs(list(images or []), list(text or []), audio, lat, lon, date)
    ranked = fitted.predict(k=k, cache=feature_cache(cache), **inputs)
    names = [str(p) for p in inputs["images"]] if "images" in inputs else (
        list(inputs["texts"]) if "texts" in inputs else ["input"])
    evidence = _evidence(fitted) if set(inputs) == {"texts"} else None
    if as_json:
        rows = [{"input": name, "top": [{"class": c, "probability": round(p, 6),
                                         **({} if evidence is None else {"attributes": [
                                             {"attribute": a, "words": w, "strength": round(s, 4)}
                                             for a, w, s in evidence(name, c)]})} for c, p in top]}
                for name, top in zip(names, ranked, strict=True)]
        print_json(rows)
        return
    for name, top in zip(names, ranked, strict=True):
        table = Table(title=name, title_justify="left")
        for column in ("rank", "class", "probability") + (() if evidence is None else ("matching attributes",)):
            table.add_column(column)
        for rank, (label, probability) in enumerate(top, 1):
            explained = () if evidence is None else (format_evidence(evidence(name, label)),)
            table.add_row(str(rank), label, f"{100 * probability:.1f}%", *explained)
        console.print(table)


def _evidence(model):
    """The explanation of a description's ranking (:class:`fgmm.kgtext.DescriptionEvidence`), or ``None``
    for a model without a knowledge graph."""
    from fgmm.kgtext.predict import DescriptionEvidence

    return DescriptionEvidence(model) if model.kg is not None and model.graph is not None else None
