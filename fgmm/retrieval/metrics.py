r"""Retrieval metrics shared by the library, ``fgmm demo`` and the benchmarks.

All functions take a score matrix ``scores[q, n]`` (higher = more similar) of ``Q`` queries against
``N`` gallery items and a boolean relevance matrix or labels.

* **Instance level** (relevant = the query's own counterpart, e.g. the captions of the query
  image): :func:`first_relevant_rank`, :func:`recall_at_k` (Recall@K: share of queries with a
  relevant item among the top K) and :func:`median_rank`.
* **Class level** (relevant = same class, as in PKU FG-XMedia / FGCrossNet):
  :func:`mean_average_precision` over the full ranking,

  .. math::
      \mathrm{AP}_q = \frac{1}{R_q} \sum_{k=1}^{N} \mathrm{rel}_q(k)\, \frac{1}{k} \sum_{j \le k} \mathrm{rel}_q(j),
      \qquad \mathrm{mAP} = \frac{1}{|Q'|} \sum_{q \in Q'} \mathrm{AP}_q

  with :math:`R_q` the number of relevant items and :math:`Q'` the queries having at least one.

Ties: ranks count only items with a strictly higher score than the best relevant one (ties go the
query's way); AP ranks items by a stable descending sort, so tied items keep gallery order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from fgmm.errors import DataError

_CHUNK = 1024  # queries per block in mean_average_precision, bounds memory at _CHUNK * N


def _check(scores: torch.Tensor, relevant: torch.Tensor) -> None:
    if scores.ndim != 2 or scores.shape != relevant.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and relevance {tuple(relevant.shape)} must be "
                         "matching [queries, items] matrices")
    if scores.shape[1] == 0:
        raise DataError(None, "the gallery is empty: nothing to retrieve")


def first_relevant_rank(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """1-based rank of each query's best-ranked relevant item: ``1 + #{items scored above it}``.

    Raises:
        DataError: a query has no relevant item (its rank would be undefined).
    """
    _check(scores, relevant)
    relevant = relevant.bool()
    missing = ~relevant.any(dim=1)
    if bool(missing.any()):
        raise DataError(None, f"{int(missing.sum())} quer(ies) have no relevant item, e.g. query "
                              f"{int(missing.nonzero()[0])}: instance-level ranks need one")
    best = scores.masked_fill(~relevant, float("-inf")).max(dim=1, keepdim=True).values
    return 1 + (scores > best).sum(dim=1)


def recall_at_k(scores: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Recall@K for each K: the share of queries with at least one relevant item in the top K."""
    ranks = first_relevant_rank(scores, relevant)
    return {int(k): float((ranks <= k).float().mean()) for k in ks}


def median_rank(scores: torch.Tensor, relevant: torch.Tensor) -> float:
    """Median over queries of :func:`first_relevant_rank` (mean of the two middle values for even Q)."""
    return float(first_relevant_rank(scores, relevant).double().quantile(0.5))


def average_precision(scores: torch.Tensor, relevant: torch.Tensor) -> torch.Tensor:
    """AP of each query over the full ranking (``NaN`` for a query without relevant items)."""
    _check(scores, relevant)
    order = torch.sort(scores, dim=1, descending=True, stable=True).indices
    hits = torch.gather(relevant.bool(), 1, order).double()
    positions = torch.arange(1, scores.shape[1] + 1, dtype=torch.float64, device=scores.device)
    precision = hits.cumsum(dim=1) / positions
    count = hits.sum(dim=1)
    return (precision * hits).sum(dim=1) / count  # 0/0 = NaN for queries without relevant items


def mean_average_precision(scores: torch.Tensor, query_labels: torch.Tensor, item_labels: torch.Tensor) -> float:
    """Class-level mAP: an item is relevant to a query when their labels are equal.

    Queries whose class has no item in the gallery are left out of the mean.

    Raises:
        DataError: no query has a relevant item.
    """
    query_labels, item_labels = torch.as_tensor(query_labels), torch.as_tensor(item_labels)
    if scores.shape != (len(query_labels), len(item_labels)):
        raise ValueError(f"scores {tuple(scores.shape)} do not match {len(query_labels)} query and "
                         f"{len(item_labels)} item labels")
    parts = [average_precision(scores[i:i + _CHUNK], query_labels[i:i + _CHUNK, None] == item_labels[None, :])
             for i in range(0, scores.shape[0], _CHUNK)]
    ap = torch.cat(parts)
    valid = ~ap.isnan()
    if not bool(valid.any()):
        raise DataError(None, "no query has a relevant item in the gallery: mAP is undefined")
    return float(ap[valid].mean())


def retrieval_metrics(scores: torch.Tensor, instance_relevant: torch.Tensor, query_labels: torch.Tensor,
                      item_labels: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """``{"R@K": ..., "medR": ..., "mAP": ...}`` of one retrieval direction (instance and class level)."""
    ranks = first_relevant_rank(scores, instance_relevant)
    metrics = {f"R@{k}": float((ranks <= k).float().mean()) for k in ks}
    metrics["medR"] = float(ranks.double().quantile(0.5))
    metrics["mAP"] = mean_average_precision(scores, query_labels, item_labels)
    return metrics
