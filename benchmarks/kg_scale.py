"""How ``KnowledgeGraph.to_pyg`` scales with graph size (1k, 10k, 100k nodes).

Builds synthetic fgmm graphs with :func:`synthetic_kg` (importable, so other benchmarks, e.g. GNN
propagation, can reuse the same graphs) and times the authoring API (``build``) and the heterogeneous
and homogeneous PyG conversions. The dense class × attribute matrix is left out: it is ``C × A``
floats, 6 GB at 100k nodes. Wall and CPU seconds are both recorded: on a shared machine CPU time is
the steadier number.

    python benchmarks/kg_scale.py --sizes 1000 10000 100000 --out benchmarks/results/kg_scale.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np

from fgmm.kg import KnowledgeGraph
from fgmm.report import write_json_atomic


def synthetic_kg(num_nodes: int, seed: int = 0, links_per_class: int = 5) -> KnowledgeGraph:
    """A random fgmm graph with about ``num_nodes`` PyG nodes (classes + attributes + parts).

    Mix: 10% attributes in groups of 10 (one part per 5 groups, at least 2 parts); the rest classes,
    of which 88% are leaves, 10% genera and 2% families (leaves under genera under families).
    Every leaf links to ``links_per_class`` distinct attributes with uniform strengths in (0, 1].
    """
    rng = np.random.default_rng(seed)
    num_attributes = max(num_nodes // 10, 10)
    num_groups = max(num_attributes // 10, 1)
    num_parts = max(num_groups // 5, 2)
    num_classes = max(num_nodes - num_attributes - num_parts, 3)
    num_families = max(num_classes // 50, 1)
    num_genera = max(num_classes // 10, 1)
    num_leaves = num_classes - num_genera - num_families
    kg = KnowledgeGraph(f"https://fgmm.dev/kg/synthetic-{num_nodes}/", title=f"synthetic graph, {num_nodes} nodes",
                        source=f"benchmarks/kg_scale.py synthetic_kg(num_nodes={num_nodes}, seed={seed})")
    for p in range(num_parts):
        kg.add_part(f"part{p}")
    for g in range(num_groups):
        kg.add_group(f"group{g}", part=f"part{g % num_parts}")
    for a in range(num_attributes):
        kg.add_attribute(f"attr{a}", group=f"group{a % num_groups}", index=a)
    for f in range(num_families):
        kg.add_class(f"family{f}", rank="family")
    for g in range(num_genera):
        kg.add_class(f"genus{g}", parent=f"family{g % num_families}", rank="genus")
    leaves = [kg.add_class(f"species{c}", parent=f"genus{c % num_genera}", rank="species", index=c)
              for c in range(num_leaves)]
    attributes = kg.nodes("attribute")
    per_class = min(links_per_class, num_attributes)
    picks = [rng.choice(num_attributes, size=per_class, replace=False) for _ in range(num_leaves)]
    strengths = 1.0 - rng.uniform(0.0, 1.0, size=(num_leaves, per_class))
    kg.link_many((leaf, attributes[j], float(s)) for leaf, row, values in zip(leaves, picks, strengths, strict=True)
                 for j, s in zip(row, values, strict=True))
    return kg


def _timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, round(time.perf_counter() - wall, 3), round(time.process_time() - cpu, 3)


def run(sizes: list[int], links_per_class: int) -> list[dict]:
    import torch
    import torch_geometric  # noqa: F401  (imported once, outside the timings)

    torch.set_num_threads(1)
    rows = []
    for size in sizes:
        kg, build_wall, build_cpu = _timed(lambda size=size: synthetic_kg(size, links_per_class=links_per_class))
        hetero, wall, cpu = _timed(kg.to_pyg)
        _, homo_wall, homo_cpu = _timed(lambda kg=kg: kg.to_pyg(hetero=False))
        row = {
            "nodes": int(sum(hetero[t].num_nodes for t in hetero.node_types)),
            "edges": int(sum(hetero[t].edge_index.shape[1] for t in hetero.edge_types)),
            "links": int(hetero["class", "has_attribute", "attribute"].edge_index.shape[1]),
            "triples": len(kg),
            "build_s": build_wall, "build_cpu_s": build_cpu,
            "to_pyg_s": wall, "to_pyg_cpu_s": cpu,
            "to_pyg_homogeneous_s": homo_wall, "to_pyg_homogeneous_cpu_s": homo_cpu,
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
        del kg, hetero
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--links-per-class", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/kg_scale.json"))
    args = parser.parse_args()
    rows = run(args.sizes, args.links_per_class)
    report = {"benchmark": "kg_to_pyg_scaling", "python": platform.python_version(), "machine": platform.machine(),
              "cpu_count_note": "timings are single-threaded (torch.set_num_threads(1))", "results": rows}
    write_json_atomic(args.out, report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
