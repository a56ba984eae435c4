"""Range maps: a class's learned presence probability on a latitude/longitude grid (matplotlib only).

An equirectangular grid coloured by :math:`p(y_c = 1 \\mid \\text{place}[, \\text{date}])`, Natural Earth's
1:110m coastlines (public domain, shipped as 20 KB of package data; nothing is fetched) and, optionally,
the class's records as dots. The map zooms to where the class is likely unless an extent is given.
"""

from __future__ import annotations

import io
import math
from datetime import datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from fgmm.errors import ConfigError
from fgmm.geo.metadata import day_of_year
from fgmm.geo.occurrences import Occurrences
from fgmm.geo.prior import GeoPrior
from fgmm.io import write_bytes_atomic

Extent = tuple[float, float, float, float]
"""``(lon_min, lon_max, lat_min, lat_max)`` in degrees."""
WORLD: Extent = (-180.0, 180.0, -90.0, 90.0)


@lru_cache(maxsize=1)
def coastlines() -> list[np.ndarray]:
    """Natural Earth 1:110m coastlines as a list of ``[n, 2]`` (lon, lat) arrays in degrees."""
    with resources.files("fgmm.geo").joinpath("data/coastline_110m.npz").open("rb") as handle:
        data = np.load(handle, allow_pickle=False)
        points, starts = data["lonlat_centideg"].astype(np.float64) / 100.0, data["starts"]
    bounds = [*starts.tolist(), len(points)]
    return [points[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def presence_grid(prior: GeoPrior, class_index: int, extent: Extent = WORLD, resolution: float = 0.5,
                  when: datetime | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Presence probabilities of one class on a grid.

    Returns:
        ``(lons [W], lats [H], probabilities [H, W])`` (cell centres; rows from south to north).
    """
    lon_min, lon_max, lat_min, lat_max = extent
    lons = np.arange(lon_min + resolution / 2, lon_max, resolution)
    lats = np.arange(lat_min + resolution / 2, lat_max, resolution)
    grid_lat, grid_lon = np.meshgrid(lats, lons, indexing="ij")
    day = day_of_year(when) if when is not None else math.nan
    geo = torch.tensor(np.stack([grid_lat.ravel(), grid_lon.ravel(), np.full(grid_lat.size, day),
                                 np.full(grid_lat.size, math.nan)], axis=1), dtype=torch.float32)
    log_p = prior.predict(geo)[:, class_index]
    return lons, lats, log_p.exp().numpy().reshape(grid_lat.shape)


def likely_extent(prior: GeoPrior, class_index: int, when: datetime | None = None, share: float = 0.1,
                  margin: float = 8.0, min_span: float = 30.0) -> Extent:
    """The box around where the class's presence is at least ``share`` of its maximum (2° world grid),
    padded by ``margin`` degrees and at least ``min_span`` degrees wide and high."""
    lons, lats, p = presence_grid(prior, class_index, WORLD, 2.0, when)
    rows, cols = np.nonzero(p >= share * p.max())
    lo_lon, hi_lon = lons[cols].min() - margin, lons[cols].max() + margin
    lo_lat, hi_lat = lats[rows].min() - margin, lats[rows].max() + margin
    lon_pad, lat_pad = max(0.0, min_span - (hi_lon - lo_lon)) / 2, max(0.0, min_span - (hi_lat - lo_lat)) / 2
    return (max(-180.0, lo_lon - lon_pad), min(180.0, hi_lon + lon_pad),
            max(-90.0, lo_lat - lat_pad), min(90.0, hi_lat + lat_pad))


def plot_range(prior: GeoPrior, class_name: str, out: str | Path, *, when: datetime | None = None,
               extent: Extent | None = None, resolution: float | None = None,
               records: Occurrences | None = None, dpi: int = 150) -> Path:
    """Draw the learned range of ``class_name`` to ``out`` (PNG, PDF or SVG by suffix; written atomically).

    Args:
        prior: a fitted :class:`GeoPrior`.
        class_name: a class of the prior (exact, spelling-tolerant or a unique substring).
        out: the image file.
        when: a date for seasonal priors (``None``: the location-only prior).
        extent: ``(lon_min, lon_max, lat_min, lat_max)``; ``None`` zooms to the likely range.
        resolution: grid step in degrees (default: 1/200 of the extent's width, at least 0.1°).
        records: occurrence records to overlay as dots (only those of this class are drawn).
    """
    from matplotlib.figure import Figure

    index = prior.class_index(class_name)
    extent = extent or likely_extent(prior, index, when)
    if not (extent[0] < extent[1] and extent[2] < extent[3]):
        raise ConfigError(f"map extent {extent} must be (lon_min < lon_max, lat_min < lat_max)")
    resolution = resolution or max(0.1, (extent[1] - extent[0]) / 200)
    lons, lats, p = presence_grid(prior, index, extent, resolution, when)
    figure = Figure(figsize=(8, 8 * (extent[3] - extent[2]) / (extent[1] - extent[0]) * 0.9 + 1.2))
    axes = figure.add_subplot()
    image = axes.imshow(p, origin="lower", extent=extent, cmap="YlGnBu", vmin=0.0, vmax=1.0,
                        interpolation="nearest", aspect="auto")
    for line in coastlines():
        axes.plot(line[:, 0], line[:, 1], color="0.25", linewidth=0.6)
    if records is not None:
        mine = records.geo[records.labels == index]
        axes.scatter(mine[:, 1], mine[:, 0], s=6, c="#d7301f", edgecolors="none", alpha=0.7,
                     label=f"{len(mine)} records")
        axes.legend(loc="lower left", fontsize=8)
    axes.set_xlim(extent[0], extent[1])
    axes.set_ylim(extent[2], extent[3])
    axes.set_xlabel("longitude (°)")
    axes.set_ylabel("latitude (°)")
    season = f", {when:%d %B}" if when is not None else ""
    axes.set_title(f"{prior.class_names[index]}: learned presence{season}")
    figure.colorbar(image, ax=axes, shrink=0.8, label="p(present | place)")
    figure.tight_layout()
    buffer = io.BytesIO()
    out = Path(out)
    figure.savefig(buffer, format=(out.suffix.lstrip(".") or "png").lower(), dpi=dpi)
    return write_bytes_atomic(out, buffer.getvalue())
