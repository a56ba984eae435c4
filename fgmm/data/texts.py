"""The texts of samples as one flat list, and each sample's texts pooled into one vector.

A sample may carry several texts (CUB: ten captions per image) or none. Encoders run once over the
flat list (:func:`text_table`); :func:`pooled_texts` then gives each sample the renormalised mean of
the features of its texts (what :class:`fgmm.FGModel` does with a ``text`` modality at evaluation,
:meth:`fgmm.space.ModalityTable.pooled`)::

    texts, rows = text_table(samples)
    per_sample = pooled_texts(encoder.encode_cached(texts, cache), rows)     # [len(samples), d]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fgmm.data.sample import Sample


def text_table(samples: Sequence[Sample]) -> tuple[list[str], list[list[int]]]:
    """All texts of ``samples`` in one list, and for each sample the positions of its texts."""
    texts: list[str] = []
    rows: list[list[int]] = []
    for sample in samples:
        rows.append(list(range(len(texts), len(texts) + len(sample.texts))))
        texts.extend(sample.texts)
    return texts, rows


def pooled_texts(text_features: torch.Tensor, rows: Sequence[Sequence[int]]) -> torch.Tensor:
    r"""``[len(rows), d]``: the renormalised mean of the text features of each sample (zeros if none).

    .. math:: \mathbf{t}_i = \frac{\sum_{j \in R_i} \mathbf{f}_j}{\lVert \sum_{j \in R_i} \mathbf{f}_j \rVert}
    """
    out = torch.zeros(len(rows), text_features.shape[1])
    for i, positions in enumerate(rows):
        if positions:
            out[i] = F.normalize(text_features[list(positions)].mean(0), dim=0)
    return out
