"""What ``fgmm predict --lat/--lon/--date`` (or a photo's EXIF) calls: one query row and the fused scores."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import torch

from fgmm.geo.fusion import LearnedPriorFusion, product_rule
from fgmm.geo.metadata import geo_tensor, make_geo, read_exif
from fgmm.geo.prior import GeoPrior


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


def apply_geo_prior(image_logits: torch.Tensor, prior: GeoPrior, geo: torch.Tensor,
                    fusion: LearnedPriorFusion | None = None) -> torch.Tensor:
    """``[B, C]`` scores of images combined with the prior at their places/dates.

    ``fusion=None`` is the product rule (:func:`~fgmm.geo.fusion.product_rule`); rows without a place
    keep the image-only ranking.
    """
    log_prior = prior.predict(geo).to(image_logits.device)
    if fusion is None:
        return product_rule(image_logits, log_prior)
    return fusion(image_logits, log_prior, geo.to(image_logits.device))

