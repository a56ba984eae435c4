r"""The class-disjoint image->image retrieval protocol (CUB: train on classes 1-100, search 101-200).

Every image of the evaluation classes is a query once, and the gallery is every *other* image of those
classes (the query itself is excluded). An item is relevant to a query when it has the query's class.

* Recall@K: the share of queries with at least one relevant item among the top K (the metric of
  Song et al., *Deep Metric Learning via Lifted Structured Feature Embedding*, CVPR 2016, used by every
  CUB retrieval paper; it is what :func:`fgmm.retrieval.metrics.first_relevant_rank` measures);
* mAP: mean over queries of average precision over the full ranking.

Rankings come from ``[Q, N]`` scores in which the query's own gallery position holds ``-inf``
(:mod:`fgmm.retrieval.rerank` produces them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from fgmm.errors import DataError
from fgmm.retrieval.metrics import average_precision, first_relevant_rank

RECALL_KS = (1, 2, 4, 8)
_CHUNK = 1024


def class_split(labels: Sequence[int] | np.ndarray, fraction: float = 0.5) -> tuple[list[int], list[int]]:
    """The first ``fraction`` of the classes present in ``labels`` (in label order) and the rest.

    CUB labels are its class ids minus one, so ``fraction=0.5`` gives classes 1-100 / 101-200.
    """
    classes = sorted({int(label) for label in np.asarray(labels) if int(label) >= 0})
    cut = int(round(len(classes) * fraction))
    if cut < 1 or cut >= len(classes):
        raise DataError(None, f"cannot split {len(classes)} classes into two non-empty class sets at {fraction}")
    return classes[:cut], classes[cut:]


def self_retrieval_metrics(scores: torch.Tensor, labels: torch.Tensor,
                           ks: Sequence[int] = RECALL_KS) -> dict[str, float]:
    """``{"R@K": ..., "mAP": ...}`` of a collection searched with each of its items.

    Args:
        scores: ``[N, N]``; row ``q`` ranks the collection for item ``q`` (its own column is ignored).
        labels: ``[N]`` class of each item.

    Raises:
        DataError: an item is the only one of its class (it has nothing to find).
    """
    labels = torch.as_tensor(labels).long()
    n = len(labels)
    if scores.shape != (n, n):
        raise ValueError(f"scores {tuple(scores.shape)} do not match {n} labels")
    counts = torch.bincount(labels - labels.min())[labels - labels.min()]
    if bool((counts < 2).any()):
        raise DataError(None, f"{int((counts < 2).sum())} item(s) are alone in their class: every query needs "
                              "another image of its class")
    ranks, precisions = [], []
    for start in range(0, n, _CHUNK):
        rows = torch.arange(start, min(start + _CHUNK, n))
        block = scores[rows].clone()
        block[torch.arange(len(rows)), rows] = float("-inf")
        relevant = labels[rows, None] == labels[None, :]
        relevant[torch.arange(len(rows)), rows] = False
        ranks.append(first_relevant_rank(block, relevant))
        precisions.append(average_precision(block, relevant))
    rank = torch.cat(ranks)
    metrics = {f"R@{k}": float((rank <= k).float().mean()) for k in ks}
    metrics["mAP"] = float(torch.cat(precisions).mean())
    return metrics
