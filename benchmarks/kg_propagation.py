"""Time GNN propagation over class–attribute–taxon graphs of growing size.

Measures one forward pass (inference, no gradient) and one forward + backward pass (a training
step's graph part) of :class:`fgmm.gnn.ClassEmbeddingNetwork` for each GNN layer, and the
parameter-free :func:`fgmm.gnn.propagation_features` of the closed-form model (row ``descriptors``), on

* the CUB graph: with ``--root``, the real one from :func:`fgmm.kg.import_cub` (200 species, 170
  taxa, 312 attributes, 16 parts); else 200 × 312 random strengths of the same density plus genera;
* random graphs of about 10k and 100k nodes: 80% classes (each linked to 30 random attributes
  with random strengths, and to a genus node shared by 5 classes), the rest attributes.

Usage::

    python benchmarks/kg_propagation.py --out benchmarks/results/kg_propagation.json
    python benchmarks/kg_propagation.py --root ../shared/data/cub200 --sizes 512 10000 100000 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import HeteroData

from fgmm.gnn import GNN_LAYERS, ClassEmbeddingNetwork, ClassGraph, propagation_features
from fgmm.report import write_json_atomic

CUB_NODES = 512  # 200 classes + 312 attributes
CLASSES_PER_GENUS = 5
LINKS_PER_CLASS = 30
DESCRIPTORS = "descriptors"  # the row of fgmm.gnn.propagation_features (no parameters, no backward)


def _hetero(class_index: np.ndarray, attribute_index: np.ndarray, strength: np.ndarray, num_classes: int,
            num_attributes: int) -> HeteroData:
    """A graph in the ``KnowledgeGraph.to_pyg`` layout with a genus taxon above every 5 classes."""
    num_genera = -(-num_classes // CLASSES_PER_GENUS)
    data = HeteroData()
    total = num_classes + num_genera
    data["class"].num_nodes = total
    data["class"].names = [f"c{i}" for i in range(total)]
    data["class"].is_leaf = torch.arange(total) < num_classes
    data["class"].label_index = torch.where(torch.arange(total) < num_classes, torch.arange(total), -1)
    data["attribute"].num_nodes = num_attributes
    data["class", "has_attribute", "attribute"].edge_index = torch.as_tensor(
        np.stack([class_index, attribute_index])).long()
    data["class", "has_attribute", "attribute"].edge_weight = torch.as_tensor(strength).float()
    leaves = torch.arange(num_classes)
    genus = num_classes + leaves // CLASSES_PER_GENUS
    data["class", "subclass_of", "class"].edge_index = torch.stack([leaves, genus])
    return data


def cub_graph(root: Path | None, rng: np.random.Generator) -> tuple[ClassGraph, str]:
    """The CUB graph: :func:`fgmm.kg.import_cub` under ``root`` (attributes, parts, taxonomy), else random
    strengths of CUB's density with a genus above every 5 classes."""
    if root is not None:
        from fgmm.kg import import_cub

        return ClassGraph.from_hetero(import_cub(root).to_pyg()), "CUB knowledge graph (fgmm.kg.import_cub)"
    matrix = rng.random((200, 312)) * (rng.random((200, 312)) < 0.6)
    cls, att = np.nonzero(matrix)
    return ClassGraph.from_hetero(_hetero(cls, att, matrix[cls, att], *matrix.shape)), "random, 60% dense"


def random_graph(num_nodes: int, rng: np.random.Generator) -> ClassGraph:
    """A sparse random graph of about ``num_nodes`` class and attribute nodes (plus genus nodes)."""
    num_classes = int(num_nodes * 0.8)
    num_attributes = num_nodes - num_classes
    cls = np.repeat(np.arange(num_classes), LINKS_PER_CLASS)
    att = rng.integers(0, num_attributes, size=cls.size)
    keep = np.unique(cls * num_attributes + att, return_index=True)[1]
    data = _hetero(cls[keep], att[keep], rng.random(keep.size), num_classes, num_attributes)
    return ClassGraph.from_hetero(data)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def time_graph(graph: ClassGraph, layer: str, hidden: int, out_dim: int, repeats: int) -> dict[str, float]:
    """Median milliseconds of a forward pass and of a forward + backward pass."""
    net = ClassEmbeddingNetwork(graph, out_dim=out_dim, hidden=hidden, layer=layer)

    def forward() -> None:
        with torch.no_grad():
            net()

    def step() -> None:
        net.zero_grad(set_to_none=True)
        net().square().mean().backward()

    net.eval()
    forward_ms = _median_ms(forward, repeats)
    net.train()
    return {"forward_ms": forward_ms, "forward_backward_ms": _median_ms(step, repeats)}


def time_descriptors(graph: ClassGraph, repeats: int) -> dict[str, float]:
    """Median milliseconds of the parameter-free propagation of the closed-form model."""
    return {"forward_ms": _median_ms(lambda: propagation_features(graph), repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="CUB root for the real CUB strengths")
    parser.add_argument("--sizes", type=int, nargs="+", default=[CUB_NODES, 10_000, 100_000],
                        help=f"node counts; {CUB_NODES} stands for the CUB graph")
    parser.add_argument("--layers", nargs="+", default=GNN_LAYERS.names())
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--out-dim", type=int, default=1280, help="1280: the image-feature width the zsl_gnn task uses")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = []
    for size in args.sizes:
        if size == CUB_NODES:
            graph, source = cub_graph(args.root, rng)
        else:
            graph, source = random_graph(size, rng), "random"
        for layer in [*args.layers, DESCRIPTORS]:
            if layer == DESCRIPTORS:
                timing = time_descriptors(graph, args.repeats)
            else:
                timing = time_graph(graph, layer, args.hidden, args.out_dim, args.repeats)
            row = {"nodes": graph.num_nodes, "edges": int(graph.edge_index.size(1)), "layer": layer,
                   "graph": source, **timing}
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"hidden": args.hidden, "out_dim": args.out_dim, "threads": args.threads,
              "torch": torch.__version__, "rows": rows}
    if args.out is not None:
        write_json_atomic(args.out, result)


if __name__ == "__main__":
    main()
