"""Where and when: geo/time metadata, the ``"geo"`` encoder, a presence-only prior and range maps.

Modules: :mod:`~fgmm.geo.metadata` (EXIF, CSV and CUB readers with range checks, the ``[B, 4]`` geo
tensor), :mod:`~fgmm.geo.occurrences` (``occurrences.csv``), :mod:`~fgmm.geo.encoding` (spherical
harmonics, sin/cos, cyclic time), :mod:`~fgmm.geo.encoder` (``GeoTimeEncoder``, modality ``"geo"``),
:mod:`~fgmm.geo.prior` / :mod:`~fgmm.geo.fit` (the learned presence-only prior), :mod:`~fgmm.geo.kde`
(the kernel-density baseline), :mod:`~fgmm.geo.fusion` (product rule, learned fusion),
:mod:`~fgmm.geo.predict` (what ``fgmm predict`` calls), :mod:`~fgmm.geo.maps` (range maps) and
:mod:`~fgmm.geo.model_prior` (the prior as a class prior of :class:`fgmm.FGModel`, preset ``"image-geo"``).
Names are imported lazily, so ``import fgmm.geo`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GeoTime": "metadata", "geo_tensor": "metadata", "make_geo": "metadata", "read_exif": "metadata",
    "fill_from_exif": "metadata", "read_image_locations": "metadata",
    "Occurrences": "occurrences", "load_occurrences": "occurrences", "occurrences_from_samples": "occurrences",
    "GeoTimeEncoder": "encoder", "GeoPrior": "prior", "GeoPriorConfig": "prior", "fit_geo_prior": "fit",
    "KernelDensityPrior": "kde", "LearnedPriorFusion": "fusion", "product_rule": "fusion",
    "geo_query": "predict", "plot_range": "maps",
    "OccurrencePrior": "model_prior", "add_geo_prior": "model_prior",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fgmm.geo' has no attribute '{name}'")
    return getattr(importlib.import_module(f"fgmm.geo.{_EXPORTS[name]}"), name)
