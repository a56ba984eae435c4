"""``fgmm cache``: build, inspect and clear the frozen-feature cache."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fgmm.cli._common import CACHE_HELP, DEFAULT_VISION, console, feature_cache, friendly_errors, print_json

cache_app = typer.Typer(help="Build, inspect and clear the feature cache.", no_args_is_help=True)

CACHE_OPTION = typer.Option(None, "--cache", help=CACHE_HELP)


@cache_app.command("build", epilog="Example: fgmm cache build data/cub200 --vision efficientnet_lite2")
@friendly_errors
def build(
    root: Path = typer.Argument(..., help="dataset root"),
    vision: str = typer.Option(DEFAULT_VISION, help="vision encoder (any timm name)"),
    image_size: int | None = typer.Option(None, min=1, help="input size (default: the model's)"),
    zoom: bool = typer.Option(False, "--zoom", help="object-zoom features (what `fgmm train --zoom` reads)"),
    batch_size: int = typer.Option(32, min=1, help="images per forward pass"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip unreadable images (listed) instead of failing"),
    cache: Path | None = CACHE_OPTION,
) -> None:
    """Encode every image of a dataset once, so later runs train in seconds."""
    from fgmm.data import load_dataset
    from fgmm.pipeline import encode_dataset_images

    dataset = load_dataset(root)
    _, features, stats = encode_dataset_images(dataset, feature_cache(cache), vision=vision, image_size=image_size,
                                               vision_options={"zoom": True} if zoom else None,
                                               batch_size=batch_size, skip_bad=skip_bad)
    rate = f", {stats['images_per_s']} images/s" if stats["images_per_s"] else " (all cached already)"
    console.print(f"{features.shape[0]} x {features.shape[1]} features for {stats['encoder']}: "
                  f"{stats['encoded']} encoded in {stats['seconds']:.1f} s{rate}")
    for item in stats["skipped"]:
        console.print(f"[yellow]skipped[/] {item['path']}: {item['problem']}")


@cache_app.command("info", epilog="Example: fgmm cache info --cache .fgmm-cache")
@friendly_errors
def info(cache: Path | None = CACHE_OPTION,
         as_json: bool = typer.Option(False, "--json", help="print JSON to stdout instead of a table")) -> None:
    """List cached namespaces (one per encoder + weights + preprocessing) and their sizes."""
    store = feature_cache(cache)
    if as_json:
        print_json({"cache": str(store.root), "namespaces": store.info()})
        return
    table = Table(title=f"feature cache {store.root}")
    for column in ("namespace", "encoder", "entries", "MB"):
        table.add_column(column)
    for row in store.info():
        table.add_row(row["namespace"], str(row.get("encoder") or "?"), str(row["entries"]),
                      f"{row['bytes'] / 2**20:.1f}")
    console.print(table)


@cache_app.command("clear", epilog="Example: fgmm cache clear --namespace 3f2a9c0d1e4b5a6c")
@friendly_errors
def clear(
    namespace: str | None = typer.Option(None, help="only this namespace (default: everything)"),
    cache: Path | None = CACHE_OPTION,
) -> None:
    """Delete cached features: only folders fgmm marked as cache namespaces, and in them only its own files."""
    removed = feature_cache(cache).clear(namespace)
    console.print(f"removed {len(removed)} namespace(s)")
