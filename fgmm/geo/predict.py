"""One query row of where and when for a prediction: explicit ``--lat/--lon/--date`` values, else a photo's EXIF
(the scores come from :class:`fgmm.FGModel` with the ``geo_occurrences`` prior, preset ``"image-geo"``)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

from fgmm.geo.metadata import geo_tensor, make_geo, read_exif


def geo_query(lat: float | None = None, lon: float | None = None, date: str | datetime | None = None,
              image: str | Path | None = None) -> torch.Tensor:
    """``[1, 4]`` geo row for one prediction: explicit ``lat``/``lon``/``date`` win, the missing ones come
    from ``image``'s EXIF (GPS, DateTimeOriginal) when an image is given; what is known by neither stays
    missing (``NaN``).

    Raises:
        DataError: a coordinate off the globe, an impossible date, one of lat/lon without the other, or
            impossible EXIF values (naming the photo).
    """
    row = make_geo(lat, lon, date)
    if image is None or not row[0].isnan().any():
        return row
    found = geo_tensor([read_exif(image)])
    return torch.where(row.isnan(), found, row)
