"""``fgmm geo``: fit a presence-only place/date prior, draw a class's range, read a photo's EXIF."""

from __future__ import annotations

from pathlib import Path

import typer

from fgmm.cli._common import console, friendly_errors

geo_app = typer.Typer(help="Where and when: presence-only geo/time priors, range maps, EXIF places and dates.",
                      no_args_is_help=True)

OCCURRENCES_HELP = "occurrence records CSV (class, latitude, longitude[, date, time, source, record_id])"


def _classes(dataset: Path | None) -> list[str] | None:
    if dataset is None:
        return None
    from fgmm.data import load_dataset
    from fgmm.tasks.geo import class_names_for_records

    return class_names_for_records(load_dataset(dataset))


def _fit(occurrences: Path, dataset: Path | None, epochs: int | None, encoder: str | None, seed: int):
    from fgmm.geo.fit import fit_geo_prior
    from fgmm.geo.occurrences import load_occurrences
    from fgmm.geo.prior import GeoPriorConfig

    records = load_occurrences(occurrences, _classes(dataset))
    config = GeoPriorConfig(seed=seed)
    if epochs is not None:
        config.epochs = epochs
    if encoder is not None:
        config.encoder = encoder
    return fit_geo_prior(records, config, progress=True), records


@geo_app.command("fit", epilog="Example: fgmm geo fit --occurrences occurrences.csv --dataset data/cub200 "
                               "--out cub-prior.safetensors")
@friendly_errors
def fit(
    occurrences: Path = typer.Option(..., help=OCCURRENCES_HELP),
    out: Path = typer.Option(..., "--out", "-o", help="prior file to write (.safetensors)"),
    dataset: Path | None = typer.Option(None, help="dataset whose classes (in label order) the prior scores; "
                                                   "default: the classes of the records, sorted"),
    epochs: int | None = typer.Option(None, help="training epochs (default 40)"),
    encoder: str | None = typer.Option(None, help="position encoding: sh16 (default), sh32, sphere6, wrap, geoclip"),
    seed: int = typer.Option(0, help="random seed"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """Fit a presence-only prior p(class | place, date) to occurrence records (CPU, minutes)."""
    from fgmm.ownership import check_new_file

    check_new_file(out, force, "prior file")
    prior, records = _fit(occurrences, dataset, epochs, encoder, seed)
    prior.save(out)
    console.print(f"fitted on {len(records)} records of {int((records.counts() > 0).sum())} classes in "
                  f"{prior.config.extra['fit_seconds']:.0f} s; wrote {out}")


SHOW_EXAMPLES = ("Examples:\n\n  fgmm geo show 'Cardinal' --prior cub-prior.safetensors --out cardinal.png\n\n"
                 "  fgmm geo show 'Yellow Warbler' --occurrences occurrences.csv --date 2024-07-01 --out yw.png")


@geo_app.command("show", epilog=SHOW_EXAMPLES)
@friendly_errors
def show(
    class_name: str = typer.Argument(..., metavar="CLASS", help="class name (exact, loose spelling or a unique part)"),
    out: Path = typer.Option(..., "--out", "-o", help="image file to write (.png, .pdf, .svg)"),
    prior: Path | None = typer.Option(None, help="prior written by `fgmm geo fit`"),
    occurrences: Path | None = typer.Option(None, help=OCCURRENCES_HELP + "; fits a prior when --prior is not "
                                                                          "given, and draws the class's records"),
    date: str | None = typer.Option(None, help="date for a seasonal map (YYYY-MM-DD); default: place only"),
    extent: str | None = typer.Option(None, help="lon_min,lon_max,lat_min,lat_max (default: zoom to the range)"),
    records: bool = typer.Option(True, "--records/--no-records", help="draw the class's records"),
    epochs: int | None = typer.Option(None, help="epochs when fitting from --occurrences"),
    force: bool = typer.Option(False, "--force", help="overwrite an existing output file"),
) -> None:
    """Draw the learned range of a class as a map (lat/lon grid, Natural Earth coastlines, nothing fetched)."""
    from fgmm.errors import ConfigError
    from fgmm.geo.maps import plot_range
    from fgmm.geo.metadata import parse_date
    from fgmm.geo.occurrences import load_occurrences
    from fgmm.geo.prior import GeoPrior
    from fgmm.ownership import check_new_file

    check_new_file(out, force, "map file")
    if prior is None and occurrences is None:
        raise ConfigError("give --prior (from `fgmm geo fit`) or --occurrences")
    box = None
    if extent is not None:
        try:
            box = tuple(float(v) for v in extent.split(","))
        except ValueError:
            box = ()
        if len(box) != 4:
            raise ConfigError(f"--extent must be four numbers lon_min,lon_max,lat_min,lat_max, got '{extent}'")
    when = parse_date(date)[0] if date else None
    if prior is not None:
        model = GeoPrior.load(prior)
        shown = load_occurrences(occurrences, model.class_names) if occurrences is not None and records else None
    else:
        model, shown = _fit(occurrences, None, epochs, None, 0)
    plot_range(model, class_name, out, when=when, extent=box, records=shown if records else None)
    console.print(f"wrote {out}")


@geo_app.command("exif", epilog="Example: fgmm geo exif photos/*.jpg")
@friendly_errors
def exif(photos: list[Path] = typer.Argument(..., help="image files")) -> None:
    """Print the GPS position and capture time stored in photos' EXIF."""
    from fgmm.geo.metadata import read_exif

    for photo in photos:
        found = read_exif(photo)
        where = f"{found.location[0]:.5f}, {found.location[1]:.5f}" if found.location else "no GPS position"
        when = found.time.isoformat(sep=" ") if found.time else "no capture time"
        console.print(f"{photo}: {where}; {when}")
