"""``fgmm data``: inspect and generate datasets."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from fgmm.cli._common import EXIT_PROBLEMS, console, friendly_errors, one_path, print_json

data_app = typer.Typer(help="Inspect and generate datasets.", no_args_is_help=True)


@data_app.command("check", epilog="Examples:\n\n  fgmm data check data/cub200\n\n"
                                  "  fgmm data check data/cub200 --json > report.json\n\n"
                                  "  fgmm data check data/cub200 --out report.json")
@friendly_errors
def check(
    root: Path = typer.Argument(..., help="dataset root (CUB-200-2011 layout or fgmm folder format)"),
    shallow: bool = typer.Option(False, "--shallow", help="skip decoding and hashing every image"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON to stdout (instead of text)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="also write the report as JSON to this file"),
    allow_subset: bool = typer.Option(False, "--allow-subset", help="the root holds only part of the files its "
                                                                    "metadata lists: absent ones are warnings"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing --out file"),
) -> None:
    """Counts, classes, modalities present, corrupt files and duplicate images of a dataset.

    Exit codes: 0 the data is fine (warnings aside); 1 problems were found (the data does not load or is
    inconsistent, files are corrupt, or files the metadata names are absent, unless --allow-subset);
    2 usage error; 3 the command itself failed (e.g. --out names a folder or an existing file without --force).
    """
    from fgmm.data import check_dataset
    from fgmm.io import write_bytes_atomic
    from fgmm.ownership import check_new_file

    if out is not None:
        check_new_file(out, force, what="JSON report (--out)")
    report = check_dataset(root, deep=not shallow, allow_subset=allow_subset, progress=True)
    data = report.to_dict()
    if as_json:
        print_json(data)
    else:
        console.print(report.format(), highlight=False)
    if out is not None:
        write_bytes_atomic(out, json.dumps(data, indent=2, default=str) + "\n")
    if not report.ok:
        raise typer.Exit(code=EXIT_PROBLEMS)


@data_app.command("generate", epilog="Example: fgmm data generate --out demo-data --classes 30 --images 50")
@friendly_errors
def generate(
    out_argument: Path | None = typer.Argument(None, metavar="[OUT]", show_default=False,
                                               help="same as --out (the older form)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="folder to write the dataset to (fgmm folder format)"),
    classes: int = typer.Option(20, help="number of classes"),
    images: int = typer.Option(40, help="images per class"),
    unseen: int = typer.Option(5, help="classes held out for zero-shot (all their samples are test)"),
    noise: float = typer.Option(0.2, help="fraction of training labels made wrong, web-style"),
    seed: int = typer.Option(0, help="random seed (same seed, same bytes)"),
    audio: bool = typer.Option(True, help="synthesise a song per sample"),
    force: bool = typer.Option(False, "--force", help="write into a non-empty folder fgmm did not create "
                                                      "(nothing already there is overwritten)"),
) -> None:
    """Generate the procedural fine-grained dataset (images, captions, audio, locations, dates).

    OUT must be new, empty or a dataset folder fgmm generated (regenerated in place).
    """
    from fgmm.data import generate_procedural

    out = one_path(out, out_argument, "dataset folder", "with --out/-o DIR")
    dataset = generate_procedural(out, num_classes=classes, images_per_class=images, unseen_classes=unseen,
                                  noise_rate=noise, seed=seed, with_audio=audio, force=force, progress=True)
    console.print(f"wrote {len(dataset)} samples of {dataset.num_classes} classes to {out}")
