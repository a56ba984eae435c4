"""Exact torch search vs faiss at 10k, 100k and 1M vectors (d=256, synthetic): latency and recall.

    python benchmarks/retrieval_scale.py [--sizes 10000,100000,1000000] [--out benchmarks/results/retrieval_scale.json]

Vectors are drawn from a mixture of 1,000 Gaussian clusters whose spread (``--spread``, relative
to the distance between centres) makes neighbourhoods cross cluster borders, then unit-normalised as
joint embeddings are; queries come from the same mixture. Every backend runs through
:class:`fgmm.retrieval.EmbeddingIndex` (the library's own code path) on ONE thread (torch and
faiss), so numbers compare backends rather than core counts. Recall@10 is the share of the exact
top-10 that a backend returns. Latency: a batch of ``--queries`` queries (ms per query) and single
queries (median of 20, ms).

Backends: ``torch`` (exact matmul + topk, the default), ``faiss Flat`` (exact), ``faiss HNSW32``
(efSearch 64; built only up to ``--hnsw-max`` vectors because its construction dominates the run
time on one core), ``faiss IVF`` (``sqrt(N)`` lists, nprobe 16, k-means on a sample of ``50 * lists``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path

import torch

from fgmm.retrieval import EmbeddingIndex, IndexInfo
from fgmm.train.checkpoint import atomic_write

DIM, K = 256, 10


def mixture(n: int, centres: torch.Tensor, spread: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` unit vectors around randomly chosen ``centres`` (noise of norm about ``spread``)."""
    which = torch.randint(0, len(centres), (n,), generator=generator)
    noise = spread * torch.randn(n, DIM, generator=generator) / DIM**0.5
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
    index = EmbeddingIndex(IndexInfo(dim=DIM, modality="synthetic", space="synthetic", **fields))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--hnsw-max", type=int, default=100_000)
    parser.add_argument("--spread", type=float, default=1.0, help="cluster noise norm (centres have norm ~1)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/retrieval_scale.json"))
    args = parser.parse_args()
    import faiss

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(1000, DIM, generator=generator) / DIM**0.5
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
            row = {"n": n, "backend": name, "build_s": round(build_s, 2), "batch_ms_per_query": round(batch_ms, 3),
                   "single_query_ms": round(single_ms, 3), "recall@10": round(recall, 4)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            del index
    payload = {"dim": DIM, "k": K, "queries": args.queries, "threads": 1,
               "data": f"1000-cluster Gaussian mixture, spread {args.spread}",
               "torch": torch.__version__, "faiss": faiss.__version__, "rows": rows}
    atomic_write(args.out, lambda handle: handle.write(json.dumps(payload, indent=2).encode()))
    print("\n| vectors | backend | build (s) | ms/query (batch) | ms (single query) | recall@10 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['n']:,} | {r['backend']} | {r['build_s']} | {r['batch_ms_per_query']} | "
              f"{r['single_query_ms']} | {r['recall@10']} |")


if __name__ == "__main__":
    main()
