"""Cross-media retrieval: embedding indexes (exact torch or faiss), a retriever that takes raw
queries, the shared retrieval metrics (Recall@K, median rank, class-level mAP) and result grids."""

from fgmm.retrieval.grid import result_grid
from fgmm.retrieval.index import SEARCH_BACKENDS, EmbeddingIndex, IndexInfo, SearchResult
from fgmm.retrieval.metrics import (
    average_precision,
    first_relevant_rank,
    mean_average_precision,
    median_rank,
    recall_at_k,
    retrieval_metrics,
)
from fgmm.retrieval.retriever import FEATURE_EXTRACTORS, Retriever

__all__ = [
    "FEATURE_EXTRACTORS", "SEARCH_BACKENDS", "EmbeddingIndex", "IndexInfo", "Retriever", "SearchResult",
    "average_precision", "first_relevant_rank", "mean_average_precision", "median_rank", "recall_at_k",
    "result_grid", "retrieval_metrics",
]
