"""Exact torch search vs faiss at 10k, 100k and 1M vectors (d=256, synthetic): latency and recall.

    python benchmarks/retrieval_scale.py [--sizes 10000,100000,1000000] [--out benchmarks/results/retrieval_scale.json]

Vectors are drawn from a mixture of 1,000 Gaussian clusters whose spread (``--spread``, relative
to the distance between centres) makes neighbourhoods cross cluster borders, then unit-normalised as
joint embeddings are; queries come from the same mixture. Every backend runs through
:class:`fgmm.retrieval.EmbeddingIndex` (the library's own code path) on ONE thread (torch and
faiss), so numbers compare backends rather than core counts. Recall@10 is the share of the exact
top-10 that a backend returns. Latency: a batch of ``--queries`` queries (ms per query) and single
queries (median of 20, ms), and the same as queries per second. Memory per vector: the backend's search
structure alone (``vectors.pt`` for torch, the serialized faiss index otherwise) and the whole
:class:`~fgmm.retrieval.EmbeddingIndex` in memory (its float32 vectors, which it keeps for every backend,
the faiss structure, labels and the Python id strings).

Backends: ``torch`` (exact matmul + topk, the default), ``faiss Flat`` (exact), ``faiss HNSW32``
(efSearch 64; built only up to ``--hnsw-max`` vectors because its construction dominates the run
time on one core), ``faiss IVF`` (``sqrt(N)`` lists, nprobe 16, k-means on a sample of ``50 * lists``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

from fgmm.retrieval import EmbeddingIndex, IndexInfo
from fgmm.train.checkpoint import atomic_write

K = 10


def mixture(n: int, centres: torch.Tensor, spread: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` unit vectors around randomly chosen ``centres`` (noise of norm about ``spread``)."""
    dim = centres.shape[1]
    which = torch.randint(0, len(centres), (n,), generator=generator)
    noise = spread * torch.randn(n, dim, generator=generator) / dim**0.5
    return torch.nn.functional.normalize(centres[which] + noise, dim=1)


def backends(n: int, hnsw_max: int) -> dict[str, dict]:
    """Backend name -> IndexInfo fields for an index of ``n`` vectors."""
    out = {"torch": {"backend": "torch"}, "faiss Flat": {"backend": "faiss", "backend_options": {"factory": "Flat"}}}
    if n <= hnsw_max:
        out["faiss HNSW32"] = {"backend": "faiss", "backend_options": {"factory": "HNSW32"}}
    lists = int(math.sqrt(n))
    out[f"faiss IVF{lists}"] = {"backend": "faiss", "backend_options": {"factory": f"IVF{lists},Flat", "nprobe": 16,
                                                                       "train_size": 50 * lists}}
    return out


def build(fields: dict, vectors: torch.Tensor) -> tuple[EmbeddingIndex, float]:
    index = EmbeddingIndex(IndexInfo(dim=vectors.shape[1], modality="synthetic", space="synthetic", **fields))
    start = time.perf_counter()
    index.add(vectors, [str(i) for i in range(len(vectors))])
    return index, time.perf_counter() - start


def measure(index: EmbeddingIndex, queries: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    start = time.perf_counter()
    result = index.search(queries, K)
    batch_ms = 1000 * (time.perf_counter() - start) / len(queries)
    single = []
    for query in queries[:20]:
        start = time.perf_counter()
        index.search(query[None], K)
        single.append(1000 * (time.perf_counter() - start))
    return result.indices, batch_ms, statistics.median(single)


def bytes_per_vector(index: EmbeddingIndex) -> tuple[float, float]:
    """(search structure, whole index in memory) bytes per stored vector."""
    serialized = index.backend.serialize()
    structure = index.vectors.nbytes if serialized is None else len(serialized)
    ids = sum(sys.getsizeof(i) for i in index.ids) + 8 * len(index.ids)  # strings + list pointers
    total = index.vectors.nbytes + (0 if serialized is None else len(serialized)) + index.labels.nbytes + ids
    return structure / len(index), total / len(index)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=1.0, help="cluster noise norm (centres have norm ~1)")
    parser.add_argument("--dim", type=int, default=256, help="vector dimension")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval_scale.json"))
    args = parser.parse_args()
    import faiss

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(1000, args.dim, generator=generator) / args.dim**0.5
    queries = mixture(args.queries, centres, args.spread, generator)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        vectors = mixture(n, centres, args.spread, generator)
        exact = None
        for name, fields in backends(n, args.hnsw_max).items():
            index, build_s = build(fields, vectors)
            found, batch_ms, single_ms = measure(index, queries)
            exact = found if exact is None else exact
            recall = float((found[:, :, None] == exact[:, None, :]).any(2).float().mean())
            structure, total = bytes_per_vector(index)
            row = {"n": n, "backend": name, "build_s": round(build_s, 2), "batch_ms_per_query": round(batch_ms, 3),
                   "single_query_ms": round(single_ms, 3), "queries_per_s_batch": round(1000 / batch_ms, 1),
                   "queries_per_s_single": round(1000 / single_ms, 1), "recall@10": round(recall, 4),
                   "structure_bytes_per_vector": round(structure, 1), "index_bytes_per_vector": round(total, 1)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            del index
    payload = {"dim": args.dim, "k": K, "queries": args.queries, "threads": 1,
               "data": f"1000-cluster Gaussian mixture, spread {args.spread}",
               "torch": torch.__version__, "faiss": faiss.__version__, "rows": rows}
    atomic_write(args.out, lambda handle: handle.write(json.dumps(payload, indent=2).encode()))
    print("\n| vectors | backend | build (s) | queries/s (batch) | queries/s (single) | recall@10 | "
          "bytes/vector (structure) | bytes/vector (index) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['backend']} | {r['build_s']} | {r['queries_per_s_batch']:,} | "
              f"{r['queries_per_s_single']:,} | {r['recall@10']} | {r['structure_bytes_per_vector']:,} | "
              f"{r['index_bytes_per_vector']:,} |")


if __name__ == "__main__":
    main()
