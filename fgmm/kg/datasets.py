"""The knowledge graph that comes with a dataset: CUB's attributes + taxonomy, the procedural set's spec.

:data:`DATASET_KGS` maps a dataset name (``MultiModalDataset.name``) to a builder; datasets without
one (e.g. the folder format) may still carry a class × attribute matrix, which
:func:`fgmm.space.class_graph` turns into a graph.
"""

from __future__ import annotations

from collections.abc import Callable

from fgmm.data.sample import MultiModalDataset
from fgmm.kg.cub import import_cub
from fgmm.kg.graph import KnowledgeGraph
from fgmm.kg.procedural import build_procedural_kg


def _procedural_kg(dataset: MultiModalDataset) -> KnowledgeGraph:
    params = dataset.meta.get("params", {})
    return build_procedural_kg(**{k: params[k] for k in ("num_classes", "seed", "unseen_classes") if k in params})


#: dataset name → builder of that dataset's own knowledge graph
DATASET_KGS: dict[str, Callable[[MultiModalDataset], KnowledgeGraph]] = {
    "cub200": lambda dataset: import_cub(dataset.root),
    "procedural": _procedural_kg,
}


def dataset_kg(dataset: MultiModalDataset) -> KnowledgeGraph | None:
    """The dataset's own knowledge graph, or ``None`` when its format ships none."""
    builder = DATASET_KGS.get(dataset.name)
    return builder(dataset) if builder is not None else None
