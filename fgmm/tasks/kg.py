"""Knowledge-graph tasks: ``kg`` (all classes) and ``zsl`` (zero-shot, GZSL), plus learned-GNN variants.

All read the class graph from :func:`task_graph`: ``ctx.shared["kg"]`` when a task before them (or
the caller) put a :class:`fgmm.kg.KnowledgeGraph` or ``HeteroData`` there, else the dataset's own
knowledge graph (:data:`KG_BUILDERS`; CUB: :func:`fgmm.kg.import_cub`, attributes + taxonomy; the
procedural demo set: :func:`fgmm.kg.build_procedural_kg`), else a graph made from the dataset's
class × attribute matrix.

* ``kg``: :class:`fgmm.zeroshot.KGPrototypes` on the split of ``image``: each class' prototype blends
  its whitened image mean with the prototype regressed from the graph; the blend weight and the
  whitening shrinkage are chosen by top-1 averaged over three inner 80/20 splits of the training
  images. Keys ``kg_top1``, ``kg_top1_nokg`` (the ablation without the graph: whitened nearest
  class mean over the classes with training images), ``kg_mean_weight`` and ``kg_shrinkage``.
* ``zsl``: the same model trained on the seen classes only; every image of an unseen class is a
  test image. Keys ``zsl_unseen50_top1`` (mean per-class top-1 among the unseen classes),
  ``gzsl_seen``, ``gzsl_unseen``, ``gzsl_h`` (all classes compete, calibrated stacking with
  ``gamma`` chosen on seen classes only) and ``gzsl_gamma``.
* ``kg_gnn``, ``zsl_gnn``: the same protocols with the learned GNN (:class:`fgmm.zeroshot.GNNZeroShot`);
  keys ``kg_gnn_top1`` and ``zsl_gnn_unseen50_top1``, ``gzsl_gnn_seen``, ``gzsl_gnn_unseen``,
  ``gzsl_gnn_h``.

Classes with no training image (the demo's held-out classes) are scored in ``kg`` too (only the
graph lets a model name them), with calibrated stacking whose ``gamma`` (key ``kg_gamma``) is
chosen on the training classes (:func:`fgmm.zeroshot.calibrate_gamma`); on CUB every class has
training images and ``gamma`` is 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fgmm.data.sample import MultiModalDataset
from fgmm.data.splits import holdout_split
from fgmm.errors import DataError
from fgmm.gnn import ClassGraph
from fgmm.tasks import TASKS, TaskContext
from fgmm.zeroshot import (
    FeatureWhitening,
    FitConfig,
    GNNZeroShot,
    KGPrototypes,
    ZeroShotModel,
    calibrate_gamma,
    calibrated_stacking,
    evaluate_zero_shot,
    zero_shot_split,
)

#: blend weights of a class' image mean tried by the ``kg`` task (1: the graph is ignored)
MEAN_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: whitening shrinkages tried by the ``kg`` task
SHRINKAGES: tuple[float, ...] = (1.0, 3.0)
#: inner holdout splits of the training images the ``kg`` task averages its validation over
VALIDATION_FOLDS = 3


def _cub_kg(dataset: MultiModalDataset):
    from fgmm.kg import import_cub

    return import_cub(dataset.root)


def _procedural_kg(dataset: MultiModalDataset):
    from fgmm.kg import build_procedural_kg

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


def gnn_config(ctx: TaskContext) -> FitConfig:
    """The fixed training recipe of the learned-GNN variants (no tuning on test data)."""
    return FitConfig(epochs=15 if ctx.quick else 30, seed=ctx.seed)


def _train_test(ctx: TaskContext) -> tuple[np.ndarray, np.ndarray]:
    labels = ctx.dataset.labels
    train, test = ctx.indices("train"), ctx.indices("test")
    return train[labels[train] >= 0], test


def _top1(model: ZeroShotModel, ctx: TaskContext, test: np.ndarray, gamma: float = 0.0, **options) -> float:
    scores = model.scores(ctx.features["image"][test], **options)
    predictions = calibrated_stacking(scores, model.trained, gamma).argmax(1)
    return float((predictions == ctx.labels(test)).float().mean())


def _stacking_gamma(ctx: TaskContext, make_model: Callable[[], ZeroShotModel], train: np.ndarray) -> float:
    """``gamma`` for calibrated stacking when some classes have no training image (else 0)."""
    trained = ctx.labels(train).unique().tolist()
    if len(trained) == ctx.dataset.num_classes:
        return 0.0
    return calibrate_gamma(make_model, ctx.features["image"], ctx.labels(), train, trained, ctx.seed)


def _choose_blend(ctx: TaskContext, graph: ClassGraph, train: np.ndarray) -> tuple[float, float]:
    """The (whitening shrinkage, mean weight) with the best top-1 averaged over inner validation splits."""
    features, labels = ctx.features["image"], ctx.labels()
    accuracy: dict[tuple[float, float], list[float]] = {}
    for fold in range(VALIDATION_FOLDS):
        inner = np.asarray(holdout_split(labels[train].numpy(), 0.2, seed=ctx.seed + fold))
        fit, validation = train[inner == "train"], train[inner == "test"]
        for shrinkage in SHRINKAGES:
            probe = KGPrototypes(graph, whitening=FeatureWhitening(shrinkage=shrinkage))
            probe.fit(features[fit], labels[fit])
            for weight in MEAN_WEIGHTS:
                accuracy.setdefault((shrinkage, weight), []).append(
                    _top1(probe, ctx, validation, mean_weight=weight))
    # ties go to the larger mean weight: trust the images over the graph
    return max(accuracy, key=lambda key: (np.mean(accuracy[key]), key[1]))


@TASKS.register("kg")
def kg_task(ctx: TaskContext) -> dict[str, float]:
    graph = task_graph(ctx)
    features, labels = ctx.features["image"], ctx.labels()
    train, test = _train_test(ctx)
    shrinkage, weight = _choose_blend(ctx, graph, train)

    def make_model() -> KGPrototypes:
        return KGPrototypes(graph, mean_weight=weight, whitening=FeatureWhitening(shrinkage=shrinkage))

    gamma = _stacking_gamma(ctx, make_model, train)
    model = make_model().fit(features[train], labels[train])
    ctx.shared["kg_model"] = model
    # the ablation without the graph: whitened nearest class mean among the classes with images
    no_graph = model.scores(features[test], mean_weight=1.0)[:, model.trained].argmax(1)
    no_graph_top1 = float((torch.tensor(model.trained)[no_graph] == labels[test]).float().mean())
    return {"kg_top1": _top1(model, ctx, test, gamma), "kg_top1_nokg": no_graph_top1,
            "kg_mean_weight": weight, "kg_shrinkage": shrinkage, "kg_gamma": gamma}


@TASKS.register("kg_gnn")
def kg_gnn_task(ctx: TaskContext) -> dict[str, float]:
    graph = task_graph(ctx)
    train, test = _train_test(ctx)

    def make_model() -> GNNZeroShot:
        return GNNZeroShot(graph, free_weights=True, config=gnn_config(ctx), device=ctx.device)

    gamma = _stacking_gamma(ctx, make_model, train)
    model = make_model().fit(ctx.features["image"][train], ctx.labels(train))
    return {"kg_gnn_top1": _top1(model, ctx, test, gamma)}


def _zero_shot(ctx: TaskContext, make_model: Callable[[], ZeroShotModel], prefix: str) -> dict[str, float]:
    if not ctx.unseen_classes:
        raise DataError(ctx.dataset.root, "zero-shot tasks need unseen classes (ctx.unseen_classes is empty)")
    split = zero_shot_split(ctx.dataset.labels, ctx.dataset.split, ctx.unseen_classes, ctx.dataset.num_classes)
    report = evaluate_zero_shot(make_model, ctx.features["image"], ctx.labels(), split, seed=ctx.seed)
    return {f"zsl{prefix}_unseen50_top1": report.zsl, f"gzsl{prefix}_seen": report.gzsl.seen,
            f"gzsl{prefix}_unseen": report.gzsl.unseen, f"gzsl{prefix}_h": report.gzsl.h,
            f"gzsl{prefix}_gamma": report.gzsl.gamma}


@TASKS.register("zsl")
def zsl_task(ctx: TaskContext) -> dict[str, float]:
    graph = task_graph(ctx)
    return _zero_shot(ctx, lambda: KGPrototypes(graph), "")


@TASKS.register("zsl_gnn")
def zsl_gnn_task(ctx: TaskContext) -> dict[str, float]:
    graph = task_graph(ctx)
    return _zero_shot(ctx, lambda: GNNZeroShot(graph, config=gnn_config(ctx), device=ctx.device), "_gnn")
