r"""Test-time re-ranking for nearest-neighbour search: query expansion, database augmentation and
k-reciprocal re-ranking.

Every re-ranker of :data:`RERANKERS` has one interface::

    rerank = create_reranker("kreciprocal", k1=20, k2=6, lambda_=0.3)
    scores = rerank(queries, gallery, self_index=None)   # [Q, d], [N, d] unit vectors -> [Q, N] scores

Higher scores rank first. ``self_index[q]`` is the gallery position of query ``q`` when the query is
itself a gallery item (``-1`` otherwise): that item is left out of the query's own neighbourhood and
scored ``-inf``, which is the "query excluded" protocol of image->image retrieval benchmarks.
Vectors are L2-normalised here; similarities are cosines.

* ``"none"``: plain cosine similarity, :math:`s_{qj} = q^\top g_j`.
* ``"aqe"``: :math:`\alpha`-weighted query expansion (Radenović et al., TPAMI 2018):
  :math:`\tilde q = \mathrm{norm}\big(q + \sum_{i \in \mathcal N_k(q)} (q^\top g_i)_+^{\alpha}\, g_i\big)`.
* ``"dba"``: database-side augmentation with the same weights, each gallery vector replaced by
  :math:`\tilde g_j = \mathrm{norm}\big(g_j + \sum_{i \in \mathcal N_k(g_j)} (g_j^\top g_i)_+^{\alpha} g_i\big)`
  (Arandjelović & Zisserman, CVPR 2012; :math:`\alpha`-weighting as Radenović et al.); queries may be
  expanded too (``expand_queries``).
* ``"kreciprocal"``: k-reciprocal encoding with Jaccard distance (Zhong et al., CVPR 2017).

DBA and k-reciprocal re-ranking use the neighbourhood structure of the whole collection (queries and
gallery), as in their papers: with queries drawn from the collection they see the query's neighbours,
never any label.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.errors import ConfigError, DataError
from fgmm.registry import Registry

RERANKERS: Registry[Any] = Registry("re-ranker")

_BLOCK = 2048  # query rows per similarity block


def create_reranker(name: str, **options: Any) -> Any:
    """The re-ranker ``name`` of :data:`RERANKERS` with its options."""
    return RERANKERS.create(name, **options)


def _prepare(queries: torch.Tensor, gallery: torch.Tensor,
             self_index: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    queries = F.normalize(torch.as_tensor(queries).detach().float().cpu(), dim=1)
    gallery = F.normalize(torch.as_tensor(gallery).detach().float().cpu(), dim=1)
    if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
        raise DataError(None, f"queries {tuple(queries.shape)} and gallery {tuple(gallery.shape)} must be [Q, d] "
                              "and [N, d] with the same d")
    if len(gallery) == 0:
        raise DataError(None, "the gallery is empty: nothing to re-rank")
    if self_index is None:
        self_index = torch.full((len(queries),), -1, dtype=torch.long)
    self_index = torch.as_tensor(self_index).long()
    if self_index.shape != (len(queries),) or bool((self_index >= len(gallery)).any()):
        raise DataError(None, f"self_index must hold one gallery position (or -1) per query, got shape "
                              f"{tuple(self_index.shape)}")
    return queries, gallery, self_index


def _exclude_self(scores: torch.Tensor, self_index: torch.Tensor) -> torch.Tensor:
    rows = (self_index >= 0).nonzero().flatten()
    scores[rows, self_index[rows]] = float("-inf")
    return scores


def _similarities(queries: torch.Tensor, gallery: torch.Tensor, self_index: torch.Tensor) -> torch.Tensor:
    return _exclude_self(queries @ gallery.T, self_index)


def _expand(vectors: torch.Tensor, gallery: torch.Tensor, self_index: torch.Tensor, k: int, alpha: float,
            include_self_item: bool) -> torch.Tensor:
    r""":math:`\mathrm{norm}(v + \sum_{i \in \mathcal N_k(v)} (v^\top g_i)_+^{\alpha} g_i)` for each row ``v``.

    The neighbours exclude ``self_index`` unless ``include_self_item`` (then the row's own gallery copy
    is simply one more neighbour, which DBA's original formulation includes as the term :math:`g_j`)."""
    k = min(k, len(gallery) - (0 if include_self_item else 1))
    if k < 1:
        return vectors
    out = torch.empty_like(vectors)
    for start in range(0, len(vectors), _BLOCK):
        block = vectors[start:start + _BLOCK]
        sims = block @ gallery.T
        if not include_self_item:
            sims = _exclude_self(sims, self_index[start:start + _BLOCK])
        top = torch.topk(sims, k, dim=1)
        weights = top.values.clamp(min=0).pow(alpha)
        out[start:start + _BLOCK] = block + torch.einsum("qk,qkd->qd", weights, gallery[top.indices])
    return F.normalize(out, dim=1)


@RERANKERS.register("none")
class CosineRanking:
    """No re-ranking: cosine similarity."""

    def __call__(self, queries: torch.Tensor, gallery: torch.Tensor,
                 self_index: torch.Tensor | None = None) -> torch.Tensor:
        queries, gallery, self_index = _prepare(queries, gallery, self_index)
        return _similarities(queries, gallery, self_index)


@RERANKERS.register("aqe")
class AlphaQueryExpansion:
    r""":math:`\alpha`-QE: each query is replaced by the weighted sum of itself and its ``k`` nearest gallery items.

    Args:
        k: neighbours added to the query.
        alpha: weight exponent :math:`\alpha` (``0``: average query expansion).
    """

    def __init__(self, k: int = 2, alpha: float = 3.0):
        if k < 0 or alpha < 0:
            raise ConfigError(f"aqe: k and alpha must be non-negative, got k={k}, alpha={alpha}")
        self.k, self.alpha = k, alpha

    def __call__(self, queries: torch.Tensor, gallery: torch.Tensor,
                 self_index: torch.Tensor | None = None) -> torch.Tensor:
        queries, gallery, self_index = _prepare(queries, gallery, self_index)
        expanded = _expand(queries, gallery, self_index, self.k, self.alpha, include_self_item=False)
        return _similarities(expanded, gallery, self_index)


@RERANKERS.register("dba")
class DatabaseAugmentation:
    r"""DBA: every gallery item is replaced by the weighted sum of itself and its ``k`` nearest gallery items.

    Args:
        k: neighbours of each gallery item (besides itself).
        alpha: weight exponent :math:`\alpha`.
        expand_queries: also expand each query with its ``k`` nearest augmented gallery items
            (DBA + :math:`\alpha`-QE).
    """

    def __init__(self, k: int = 2, alpha: float = 3.0, expand_queries: bool = False):
        if k < 0 or alpha < 0:
            raise ConfigError(f"dba: k and alpha must be non-negative, got k={k}, alpha={alpha}")
        self.k, self.alpha, self.expand_queries = k, alpha, expand_queries

    def __call__(self, queries: torch.Tensor, gallery: torch.Tensor,
                 self_index: torch.Tensor | None = None) -> torch.Tensor:
        queries, gallery, self_index = _prepare(queries, gallery, self_index)
        own = torch.arange(len(gallery))
        # gallery item j: itself (weight 1) + its k nearest other items
        augmented = _expand(gallery, gallery, own, self.k, self.alpha, include_self_item=False)
        in_gallery = self_index >= 0
        queries = queries.clone()
        queries[in_gallery] = augmented[self_index[in_gallery]]  # a collection item is searched as itself
        if self.expand_queries:
            queries = _expand(queries, augmented, self_index, self.k, self.alpha, include_self_item=False)
        return _similarities(queries, augmented, self_index)


@RERANKERS.register("kreciprocal")
class KReciprocalReranking:
    r"""k-reciprocal re-ranking (Zhong et al., *Re-ranking Person Re-identification with k-reciprocal
    Encoding*, CVPR 2017).

    Over the collection :math:`C` (queries not in the gallery, plus the gallery), with distances
    :math:`d(p, g) = 2 - 2\cos(p, g)`, the k-reciprocal set
    :math:`\mathcal R(p, k) = \{g \in \mathcal N(p, k) : p \in \mathcal N(g, k)\}` is extended by the
    :math:`\tfrac{k}{2}`-reciprocal sets of its members that overlap it by more than two thirds, giving
    :math:`\mathcal R^*(p, k_1)`. Each item is encoded as :math:`V_p \in \mathbb R^{|C|}`,
    :math:`V_{p,g} = e^{-d(p,g)} / \sum_{g' \in \mathcal R^*} e^{-d(p,g')}` on :math:`\mathcal R^*`
    and 0 elsewhere, averaged over its :math:`k_2` nearest neighbours (local query expansion). Then

    .. math::
        d_J(p, g) = 1 - \frac{\sum_j \min(V_{p,j}, V_{g,j})}{\sum_j \max(V_{p,j}, V_{g,j})}, \qquad
        d^*(p, g) = (1 - \lambda)\, d_J(p, g) + \lambda\, d(p, g)

    and the scores are :math:`-d^*`. The encoding is :math:`O(|C|^2)` in memory, so collections are
    limited to ``max_items``.

    Args:
        k1, k2, lambda_: :math:`k_1`, :math:`k_2` and :math:`\lambda`.
        max_items: largest collection accepted.
    """

    def __init__(self, k1: int = 20, k2: int = 6, lambda_: float = 0.3, max_items: int = 20_000):
        if k1 < 1 or k2 < 1 or not 0.0 <= lambda_ <= 1.0:
            raise ConfigError(f"kreciprocal: need k1, k2 >= 1 and 0 <= lambda <= 1, got {k1}, {k2}, {lambda_}")
        self.k1, self.k2, self.lambda_, self.max_items = k1, k2, lambda_, max_items

    def __call__(self, queries: torch.Tensor, gallery: torch.Tensor,
                 self_index: torch.Tensor | None = None) -> torch.Tensor:
        queries, gallery, self_index = _prepare(queries, gallery, self_index)
        outside = (self_index < 0).nonzero().flatten()
        collection = torch.cat([queries[outside], gallery])
        if len(collection) > self.max_items:
            raise ConfigError(f"kreciprocal re-ranking is limited to {self.max_items} items (quadratic memory), "
                              f"the collection has {len(collection)}; use 'aqe' or 'dba' for large indexes")
        row = self_index + len(outside)  # each query's row in the collection
        row[outside] = torch.arange(len(outside))
        distance = self.rerank_distances(collection)
        result = -distance[row.numpy()][:, len(outside):]
        return _exclude_self(torch.from_numpy(result).float(), self_index)

    def rerank_distances(self, vectors: torch.Tensor) -> np.ndarray:
        """``[M, M]`` re-ranked distances :math:`d^*` among the unit ``vectors`` of a collection."""
        m = len(vectors)
        original = (2.0 - 2.0 * (vectors @ vectors.T)).clamp(min=0).double().numpy()
        k1 = min(self.k1, m - 1)
        k2 = min(self.k2, m)
        rank = np.argsort(original, axis=1, kind="stable")
        neighbours = rank[:, :k1 + 1]  # includes the item itself at distance 0
        half = rank[:, :int(round(k1 / 2)) + 1]
        encoding = np.zeros((m, m))
        for p in range(m):
            reciprocal = _k_reciprocal(neighbours, p)
            expanded = reciprocal
            for candidate in reciprocal:
                extra = _k_reciprocal(half, candidate)
                if len(np.intersect1d(extra, reciprocal)) > 2.0 / 3.0 * len(extra):
                    expanded = np.append(expanded, extra)
            expanded = np.unique(expanded)
            weights = np.exp(-original[p, expanded])
            encoding[p, expanded] = weights / weights.sum()
        if k2 > 1:
            encoding = encoding[rank[:, :k2]].mean(axis=1)
        jaccard = _jaccard_distance(encoding)
        return (1.0 - self.lambda_) * jaccard + self.lambda_ * original


def _k_reciprocal(neighbours: np.ndarray, p: int) -> np.ndarray:
    """Items ``g`` among ``p``'s neighbours whose own neighbour list contains ``p``."""
    forward = neighbours[p]
    return forward[(neighbours[forward] == p).any(axis=1)]


def _jaccard_distance(encoding: np.ndarray) -> np.ndarray:
    r"""``1 - sum min / sum max`` between rows of a non-negative ``[M, M]`` matrix with rows summing to one,
    using :math:`\sum \max = 2 - \sum \min` and the sparsity of the rows (inverted lists per column)."""
    m = len(encoding)
    columns = [np.nonzero(encoding[:, j])[0] for j in range(m)]
    overlap = np.zeros((m, m))
    for p in range(m):
        for j in np.nonzero(encoding[p])[0]:
            rows = columns[j]
            overlap[p, rows] += np.minimum(encoding[p, j], encoding[rows, j])
    return 1.0 - overlap / (2.0 - overlap)


def rerank_search(index: Any, queries: torch.Tensor, k: int, reranker: Any) -> Any:
    """Top-``k`` items of an :class:`~fgmm.retrieval.index.EmbeddingIndex` for ``[Q, d]`` queries (not
    items of the index) under ``reranker`` (a name in :data:`RERANKERS` or an instance).

    Re-ranking scores every stored vector (exact, whatever the index's backend), so it suits indexes that
    fit in memory; ``"kreciprocal"`` is further limited by its ``max_items``.

    Returns:
        a :class:`~fgmm.retrieval.index.SearchResult` whose scores are the re-ranker's.
    """
    from fgmm.retrieval.index import SearchResult

    if len(index) == 0:
        raise DataError(index.info.extra.get("path"), "the index is empty: add items before searching")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    reranker = create_reranker(reranker) if isinstance(reranker, str) else reranker
    queries = torch.as_tensor(queries).float()
    scores = reranker(queries[None] if queries.ndim == 1 else queries, index.vectors)
    top = torch.topk(scores, min(k, len(index)), dim=1)
    rows = top.indices.tolist()
    return SearchResult(indices=top.indices, scores=top.values, ids=[[index.ids[i] for i in row] for row in rows],
                        labels=index.labels[top.indices], paths=[[index.paths[i] for i in row] for row in rows],
                        texts=[[index.texts[i] for i in row] for row in rows],
                        class_names=list(index.info.class_names))
