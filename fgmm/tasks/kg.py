"""Knowledge-graph tasks: ``kg`` (all classes, KG class embeddings) and ``zsl`` (zero-shot, GZSL).

Both read the class graph from :func:`task_graph`: ``ctx.shared["kg"]`` when a task before them (or
the caller) put a :class:`fgmm.kg.KnowledgeGraph` or ``HeteroData`` there, else the dataset's own
knowledge graph (:data:`KG_BUILDERS`; CUB: :func:`fgmm.kg.cub.import_cub`, attributes + taxonomy;
the procedural demo set: :func:`fgmm.kg.procedural.build_procedural_kg`), else a graph made
from the dataset's class × attribute matrix.

* ``kg``: a :class:`fgmm.zeroshot.KGClassifier` with free per-class weights on top of the GNN
  class embeddings, trained and tested on the same split as ``image``. Key ``kg_top1``.
* ``zsl``: the same model without free weights, trained on the seen classes only; every image of
  an unseen class is a test image. Keys ``zsl_unseen50_top1`` (mean per-class top-1 among the
  unseen classes), ``gzsl_seen``, ``gzsl_unseen``, ``gzsl_h`` (all classes compete, calibrated
  stacking with ``gamma`` chosen on seen classes only), plus ``gzsl_gamma``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from fgmm.data.sample import MultiModalDataset
from fgmm.errors import DataError
from fgmm.gnn import ClassGraph
from fgmm.tasks import TASKS, TaskContext
from fgmm.zeroshot import (
    FitConfig,
    KGClassifier,
    evaluate_zero_shot,
    fit_classifier,
    predict_scores,
    zero_shot_split,
)


def _cub_kg(dataset: MultiModalDataset):
    from fgmm.kg.cub import import_cub

    return import_cub(dataset.root)


def _procedural_kg(dataset: MultiModalDataset):
    from fgmm.kg.procedural import build_procedural_kg

    params = dataset.meta.get("params", {})
    return build_procedural_kg(**{k: params[k] for k in ("num_classes", "seed", "unseen_classes") if k in params})


#: dataset name → builder of that dataset's own knowledge graph
KG_BUILDERS: dict[str, Callable[[MultiModalDataset], object]] = {"cub200": _cub_kg, "procedural": _procedural_kg}


def task_graph(ctx: TaskContext) -> ClassGraph:
    """The :class:`ClassGraph` of ``ctx.dataset``'s classes, built once and kept in ``ctx.shared``."""
    if "kg_graph" in ctx.shared:
        return ctx.shared["kg_graph"]
    dataset = ctx.dataset
    source = ctx.shared.get("kg")
    if source is None and dataset.name in KG_BUILDERS:
        source = ctx.shared["kg"] = KG_BUILDERS[dataset.name](dataset)
    if source is None:
        if dataset.class_attributes is None:
            raise DataError(dataset.root, "the kg/zsl tasks need a knowledge graph or class attributes, and "
                                          "this dataset has neither")
        graph = ClassGraph.from_matrix(dataset.class_attributes, dataset.class_names)
    else:
        data = source if hasattr(source, "node_types") else source.to_pyg(
            class_order=dataset.meta.get("class_folders") or dataset.class_names)
        graph = ClassGraph.from_hetero(data)
    if graph.num_labels != dataset.num_classes:
        raise DataError(dataset.root, f"the knowledge graph has {graph.num_labels} dataset classes, the dataset "
                                      f"{dataset.num_classes}")
    ctx.shared["kg_graph"] = graph
    return graph


def fit_config(ctx: TaskContext) -> FitConfig:
    """The fixed training recipe of both tasks (no tuning on test data)."""
    return FitConfig(epochs=25 if ctx.quick else 50, seed=ctx.seed)


def _model(ctx: TaskContext, graph: ClassGraph, free_weights: bool) -> KGClassifier:
    torch.manual_seed(ctx.seed)
    return KGClassifier(ctx.features["image"].shape[1], graph, free_weights=free_weights).to(ctx.device)


@TASKS.register("kg")
def kg_task(ctx: TaskContext) -> dict[str, float]:
    graph = task_graph(ctx)
    features, labels = ctx.features["image"], ctx.labels()
    train, test = ctx.indices("train"), ctx.indices("test")
    train = train[labels[torch.as_tensor(train)].numpy() >= 0]
    trained_classes = labels[train].unique().tolist()  # classes without training images are not negatives
    model = fit_classifier(_model(ctx, graph, free_weights=True), features[train], labels[train],
                           trained_classes, fit_config(ctx))
    predictions = predict_scores(model, features[test]).argmax(1)
    ctx.shared["kg_model"] = model
    return {"kg_top1": float((predictions == labels[test]).float().mean())}


@TASKS.register("zsl")
def zsl_task(ctx: TaskContext) -> dict[str, float]:
    if not ctx.unseen_classes:
        raise DataError(ctx.dataset.root, "the zsl task needs unseen classes (ctx.unseen_classes is empty)")
    graph = task_graph(ctx)
    split = zero_shot_split(ctx.dataset.labels, ctx.dataset.split, ctx.unseen_classes, ctx.dataset.num_classes)
    report = evaluate_zero_shot(lambda: _model(ctx, graph, free_weights=False), ctx.features["image"],
                                ctx.labels(), split, fit_config(ctx))
    return {"zsl_unseen50_top1": report.zsl, "gzsl_seen": report.gzsl.seen, "gzsl_unseen": report.gzsl.unseen,
            "gzsl_h": report.gzsl.h, "gzsl_gamma": report.gzsl.gamma}
