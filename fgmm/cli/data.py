"""``fgmm data``: inspect and generate datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fgmm.cli._common import console, friendly_errors

data_app = typer.Typer(help="Inspect and generate datasets.", no_args_is_help=True)


@data_app.command("check", epilog="Example: fgmm data check data/cub200 --json report.json")
@friendly_errors
def check(
    root: Path = typer.Argument(..., help="dataset root (CUB-200-2011 layout or fgmm folder format)"),
    shallow: bool = typer.Option(False, "--shallow", help="skip decoding and hashing every image"),
    json_out: Path | None = typer.Option(None, "--json", help="also write the report as JSON here"),
) -> None:
    """Counts, classes, modalities present, corrupt files and duplicate images of a dataset.

    Exits with code 1 when something is broken (corrupt or missing files, no images).
    """
    from fgmm.data import check_dataset

    report = check_dataset(root, deep=not shallow)
    console.print(report.format(), highlight=False)
    if json_out:
        json_out.write_text(json.dumps(report.to_dict(), indent=2, default=str) + "\n")
    if not report.ok:
        raise typer.Exit(code=1)


@data_app.command("generate", epilog="Example: fgmm data generate demo-data --classes 30 --images 50")
@friendly_errors
def generate(
    out: Path = typer.Argument(..., help="folder to write the dataset to (fgmm folder format)"),
    classes: int = typer.Option(20, help="number of classes"),
    images: int = typer.Option(40, help="images per class"),
    unseen: int = typer.Option(5, help="classes held out for zero-shot (all their samples are test)"),
    noise: float = typer.Option(0.2, help="fraction of training labels made wrong, web-style"),
    seed: int = typer.Option(0, help="random seed (same seed, same bytes)"),
    audio: bool = typer.Option(True, help="synthesise a song per sample"),
) -> None:
    """Generate the procedural fine-grained dataset (images, captions, audio, locations, dates)."""
    from fgmm.data import generate_procedural

    dataset = generate_procedural(out, num_classes=classes, images_per_class=images, unseen_classes=unseen,
                                  noise_rate=noise, seed=seed, with_audio=audio)
    console.print(f"wrote {len(dataset)} samples of {dataset.num_classes} classes to {out}")
