"""``GeoTimeEncoder``: the geo/time modality of the joint space (``create_encoder("geo")``).

Input: ``[B, 4]`` rows ``(latitude, longitude, day_of_year, hour)`` with ``NaN`` where missing
(:func:`fgmm.geo.metadata.geo_tensor`), or a sequence of samples/:class:`~fgmm.geo.metadata.GeoTime`.
Output: ``[B, dim]``::

    [ position(lat, lon) * m_loc | day/hour cyclic features * m_day, m_hour
      | lat/90, lon/180, day/366, hour/24 (0 where missing) | m_loc, m_day, m_hour ]

A missing value is never imputed: its features are zero and its presence flag ``m`` is 0, so a
downstream layer can tell "unknown" from any real place or date. The last seven columns carry the raw
values and flags, so a class prior that reads the encoder's features (``FGModel`` hands priors the
features of their modality) recovers the exact rows with :func:`geo_rows_from_features`.

Names (``create_encoder("geo", name)``): ``"sh<L>"`` real spherical harmonics of degree < L (default
``"sh16"``), ``"sphere<K>"`` multi-scale sin/cos of 3-D unit vectors with K scales, ``"wrap"`` SINR's
encoding, ``"geoclip"`` GeoCLIP's pretrained 512-d location embedding (Vivanco Cepeda et al., NeurIPS 2023;
``pip install "fgmm[geo]"``, weights ship in the PyPI wheel, MIT).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fgmm.encoders.base import Encoder
from fgmm.encoders.factory import ENCODERS, OFFLINE_MODELS, OfflineModel
from fgmm.errors import ConfigError
from fgmm.geo.encoding import POSITION_ENCODINGS, PositionEncoding, position_dim, time_features
from fgmm.geo.metadata import geo_tensor

DEFAULT_GEO_ENCODER = "sh16"
TIME_PARTS = ("day", "hour")
RAW_SCALE = (90.0, 180.0, 366.0, 24.0)
"""Divisors of the raw (lat, lon, day of year, hour) columns of the encoder's output."""
TAIL = 7
"""The raw columns and presence flags at the end of every geo feature row."""
_NAME = re.compile(r"^(?P<kind>[a-z]+?)(?P<size>\d+)?$")


def geo_rows_from_features(features: torch.Tensor) -> torch.Tensor:
    """The ``[B, 4]`` geo rows (``NaN`` where missing) inside ``[B, dim]`` :class:`GeoTimeEncoder` features."""
    raw, masks = features[:, -TAIL:-3].float(), features[:, -3:] > 0.5
    present = torch.cat((masks[:, :1], masks), dim=1)
    return torch.where(present, raw * torch.tensor(RAW_SCALE, device=raw.device), torch.nan)


def as_geo_tensor(batch: Any) -> torch.Tensor:
    """``batch`` as ``[B, 4]`` float32 geo rows: ``[B, 4]`` tensors pass through, wider tensors are read as
    :class:`GeoTimeEncoder` features (:func:`geo_rows_from_features`), samples are converted."""
    if isinstance(batch, torch.Tensor):
        if batch.ndim != 2 or batch.shape[1] < 4 or 4 < batch.shape[1] < TAIL + 1:
            raise ValueError(f"geo batch must be [B, 4] (lat, lon, day_of_year, hour) or GeoTimeEncoder features, "
                             f"got {tuple(batch.shape)}")
        return batch.float() if batch.shape[1] == 4 else geo_rows_from_features(batch)
    return geo_tensor(batch)


def _position(name: str) -> tuple[PositionEncoding | nn.Module, dict[str, Any]]:
    match = _NAME.match(name.lower())
    if match is None:
        raise ConfigError(f"unknown geo encoder '{name}'; use sh<L>, sphere<K>, wrap or geoclip")
    kind, size = match["kind"], match["size"]
    if kind == "geoclip":
        from fgmm.geo.geoclip import GeoClipPosition

        return GeoClipPosition(), {"position": "geoclip"}
    args: dict[str, Any] = {}
    if size is not None:
        args = {"sh": {"degree": int(size)}, "sphere": {"scales": int(size)}}.get(kind, {})
        if not args:
            raise ConfigError(f"geo encoder '{name}': '{kind}' takes no size")
    return POSITION_ENCODINGS.get(kind)(**args), {"position": kind, **args}


class GeoTimeEncoder(Encoder):
    """Fixed features of where and when, with presence masks (see the module docstring).

    Args:
        name: position encoding, ``"sh16"`` (default), ``"sh<L>"``, ``"sphere<K>"``, ``"wrap"`` or ``"geoclip"``.
        time: which time parts to encode, a subset of ``("day", "hour")``.
        day_harmonics: harmonics of the day-of-year features.

    Shapes:
        - input: ``[B, 4]`` (lat°, lon°, day of year, hour; ``NaN`` = missing) or ``B`` samples
        - output: ``[B, dim]``
    """

    modality = "geo"

    def __init__(self, name: str = DEFAULT_GEO_ENCODER, time: Sequence[str] = TIME_PARTS, day_harmonics: int = 2,
                 frozen: bool = True):
        unknown = set(time) - set(TIME_PARTS)
        if unknown:
            raise ConfigError(f"geo encoder time parts must be among {TIME_PARTS}, got {sorted(unknown)}")
        position, config = _position(name)
        parts = tuple(part for part in TIME_PARTS if part in time)
        pos_dim = position_dim(position)
        time_dim = 2 * day_harmonics * ("day" in parts) + 2 * ("hour" in parts)
        super().__init__(name=name.lower(), dim=pos_dim + time_dim + TAIL, frozen=frozen)
        self._config, self.time_parts, self.day_harmonics, self.position_dim = config, parts, day_harmonics, pos_dim
        self.position = position
        if frozen:
            self.freeze()

    def preprocessing(self) -> dict[str, Any]:
        return {**self._config, "time": list(self.time_parts), "day_harmonics": self.day_harmonics}

    def encode(self, batch: Any) -> torch.Tensor:
        geo = as_geo_tensor(batch)
        lat, lon, day, hour = geo.unbind(1)
        has_loc = ~(lat.isnan() | lon.isnan())
        features = torch.zeros(geo.shape[0], self.position_dim, dtype=torch.float32)
        if has_loc.any():
            features[has_loc] = self.position(lat[has_loc], lon[has_loc]).float()
        parts = [features]
        cyclic = time_features(day.nan_to_num(0.0), hour.nan_to_num(0.0), self.day_harmonics)
        day_cols, hour_cols = cyclic[:, :2 * self.day_harmonics], cyclic[:, 2 * self.day_harmonics:]
        for part, columns, value in (("day", day_cols, day), ("hour", hour_cols, hour)):
            if part in self.time_parts:
                parts.append(columns * ~value.isnan()[:, None])
        masks = torch.stack((has_loc, ~day.isnan(), ~hour.isnan()), dim=1)
        raw = torch.where(torch.cat((masks[:, :1], masks), dim=1), geo, 0.0) / torch.tensor(RAW_SCALE)
        return torch.cat([*parts, raw, masks.float()], dim=1)

    def forward(self, batch: Any) -> torch.Tensor:
        return self.encode(batch)


def cached_geo_features(encoder: GeoTimeEncoder, items: Any, cache: Any = None) -> torch.Tensor:
    """``[B, encoder.dim]`` features of samples / geo rows, through a :class:`~fgmm.cache.FeatureCache` when
    given (namespace: the encoder's fingerprint; key: the row's four values), so an expensive position
    encoding (GeoCLIP) runs once per distinct place and date."""
    geo = as_geo_tensor(items)
    if cache is None:
        return encoder.encode(geo)
    keys = [",".join(f"{v:.6f}" for v in row) for row in geo.tolist()]
    return cache.lookup(f"geo-{encoder.fingerprint()}", keys, lambda index: encoder.encode(geo[index]),
                        batch_size=4096, progress=False,
                        meta={"encoder": encoder.name, "modality": "geo", "preprocessing": encoder.preprocessing()})


OFFLINE_MODELS["geo"] = lambda: [
    OfflineModel("geo", DEFAULT_GEO_ENCODER, "no weights (spherical harmonics + cyclic day/hour)", "-"),
    OfflineModel("geo", "geoclip", "geoclip (GeoCLIP location encoder)", "MIT", extra="geo")]


@ENCODERS.register("geo")
def create_geo_encoder(name: str = DEFAULT_GEO_ENCODER, **kwargs: Any) -> GeoTimeEncoder:
    """Factory of the ``"geo"`` modality (``create_encoder("geo")`` -> spherical harmonics, degree < 16)."""
    return GeoTimeEncoder(name=name, **kwargs)
