"""Knowledge-graph tasks on the one model: ``kg`` (all classes) and ``zsl`` (zero-shot, GZSL), plus GNN variants.

All read the class graph from :func:`task_graph`: ``ctx.shared["kg"]`` when a task before them (or
the caller) put a :class:`fgmm.kg.KnowledgeGraph` or ``HeteroData`` there, else the dataset's own
knowledge graph (:func:`fgmm.kg.dataset_kg`; CUB: :func:`fgmm.kg.import_cub`, attributes + taxonomy; the
procedural demo set: :func:`fgmm.kg.build_procedural_kg`), else a graph made from the dataset's
class × attribute matrix. Every model is an :class:`fgmm.FGModel` on the frozen image features.

* ``kg``: preset ``"image-kg"`` (whitened image space, class means blended with prototypes regressed
  from the graph). The whitening shrinkage, the ridge and the blend weight are chosen by top-1
  averaged over three inner 80/20 splits of the training images (one in ``quick`` mode, the demo's).
  Keys (overall top-1):

  - ``kg_top1``, and ``kg_top1_nokg`` — the ablation without the graph: the same space with nearest
    class means (preset ``"image"``), its shrinkage chosen by the same inner validation on its own;
  - ``kg_top1_random`` — the same model and selection over a random graph with the same degree
    sequence (:meth:`fgmm.gnn.ClassGraph.rewired`): does the *knowledge* matter, or any graph?
  - ``kg_top1_5shot``, ``kg_top1_5shot_nokg`` — the same three with 5 training images per class (a
    seeded draw, the selection on those 5 images only), same test images;
  - ``kg_mean_weight``, ``kg_shrinkage``, ``kg_ridge``, ``kg_nokg_shrinkage``, ``kg_gamma`` (and
    ``_5shot`` variants): what was chosen;
  - ``kg_top1_preset`` — the ``"image-kg"`` preset exactly as ``fgmm.create_model`` ships it (no
    selection; its settings were fixed beforehand on zero-shot validation over seen classes only), to
    compare with ``image_top1`` (the ``"image"`` preset as shipped, the same whitening).
* ``zsl``: preset ``"image-kg"`` trained on the seen classes only; every image of an unseen class is a
  test image. Keys ``zsl_unseen50_top1`` (mean per-class top-1 among the unseen classes),
  ``gzsl_seen``, ``gzsl_unseen``, ``gzsl_h`` (all classes compete, calibrated stacking with ``gamma``
  chosen on seen classes only, by the model's fit) and ``gzsl_gamma``.
* ``kg_gnn``, ``zsl_gnn``: the same protocols with a learned GNN giving the class embeddings (preset
  ``"image-gnn"`` with a GCN); keys ``kg_gnn_top1`` and ``zsl_gnn_unseen50_top1``, ``gzsl_gnn_seen``,
  ``gzsl_gnn_unseen``, ``gzsl_gnn_h``.

Classes with no training image (the demo's held-out classes) are scored in ``kg`` too (only the
graph lets a model name them), with the calibrated stacking the model chose on its training classes;
on CUB every class has training images and ``gamma`` is 0.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fgmm.data.splits import holdout_split
from fgmm.errors import DataError
from fgmm.gnn import ClassGraph
from fgmm.space import ModalityTable, class_graph
from fgmm.tasks import TASKS, TaskContext
from fgmm.tasks.image import top1
from fgmm.zeroshot import gzsl_accuracy, zero_shot_split, zsl_accuracy

#: blend weights of a class' image mean tried by the ``kg`` task (1: the graph is ignored for trained classes)
MEAN_WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
#: whitening shrinkages tried by the ``kg`` task
SHRINKAGES: tuple[float, ...] = (0.3, 1.0, 3.0)
#: kernel-ridge regularisations of the graph prototypes tried by the ``kg`` task
RIDGES: tuple[float, ...] = (0.1, 0.3, 1.0)
#: training images per class of the few-shot keys
SHOTS = 5
#: inner holdout splits of the training images the ``kg`` task averages its validation over
VALIDATION_FOLDS = 3


def task_graph(ctx: TaskContext) -> ClassGraph:
    """The :class:`ClassGraph` of ``ctx.dataset``'s classes, built once and kept in ``ctx.shared``."""
    if "kg_graph" in ctx.shared:
        return ctx.shared["kg_graph"]
    from fgmm.kg import dataset_kg

    dataset = ctx.dataset
    source = ctx.shared.get("kg")
    if source is None:
        source = dataset_kg(dataset)
        if source is not None:
            ctx.shared["kg"] = source
    if source is None:
        if dataset.class_attributes is None:
            raise DataError(dataset.root, "the kg/zsl tasks need a knowledge graph or class attributes, and "
                                          "this dataset has neither")
        source = dataset.class_attributes
    graph = class_graph(source, dataset.class_names, dataset.meta.get("class_folders"))
    ctx.shared["kg_graph"] = graph
    return graph


def _train_test(ctx: TaskContext) -> tuple[np.ndarray, np.ndarray]:
    labels = ctx.dataset.labels
    train, test = ctx.indices("train"), ctx.indices("test")
    return train[labels[train] >= 0], test


def _table(ctx: TaskContext, indices: np.ndarray) -> dict[str, ModalityTable]:
    return {"image": ModalityTable.one_per_sample(ctx.features["image"][torch.as_tensor(indices)])}


def _kg_model(ctx: TaskContext, shrinkage: float, mean_weight: float = 0.5, ridge: float = 0.3,
              calibrate: bool = True, graph: ClassGraph | None = None):
    return ctx.model("image-kg", kg=graph if graph is not None else task_graph(ctx),
                     modalities={"image": {"projection_options": {"shrinkage": shrinkage}}},
                     class_embeddings={"options": {"mean_weight": mean_weight, "ridge": ridge},
                                       "calibrate": calibrate})


def _validation(ctx: TaskContext, train: np.ndarray, graph: ClassGraph
                ) -> dict[tuple[float, float, float], float]:
    """Top-1 averaged over inner 80/20 splits of ``train`` for every (shrinkage, ridge, mean weight)."""
    features, labels = ctx.features["image"], ctx.labels()
    accuracy: dict[tuple[float, float, float], list[float]] = {}
    for fold in range(1 if ctx.quick else VALIDATION_FOLDS):
        inner = np.asarray(holdout_split(labels[train].numpy(), 0.2, seed=ctx.seed + fold))
        fit, validation = train[inner == "train"], train[inner == "test"]
        for shrinkage in SHRINKAGES:
            probe = _kg_model(ctx, shrinkage, calibrate=False, graph=graph)
            probe.fit_features(_table(ctx, fit), labels[fit])
            embedded = probe.embed("image", features[fit])  # the space does not depend on the ridge
            for ridge in RIDGES:
                probe.class_source.ridge = ridge
                probe.class_source.fit(embedded, labels[fit])
                for weight in MEAN_WEIGHTS:
                    probe.class_source.mean_weight = weight
                    accuracy.setdefault((shrinkage, ridge, weight), []).append(
                        top1(probe, {"image": features[validation]}, labels[validation]))
    return {key: float(np.mean(values)) for key, values in accuracy.items()}


def _kg_protocol(ctx: TaskContext, train: np.ndarray, test: np.ndarray, suffix: str = "",
                 random_graph: bool = True) -> dict[str, float]:
    """``kg_top1``, ``kg_top1_nokg`` (and ``kg_top1_random``) of models fitted on ``train`` (keys + ``suffix``)."""
    features, labels = ctx.features["image"], ctx.labels()
    evaluate = {"image": features[test]}
    graphs = {"": task_graph(ctx)}
    if random_graph:
        graphs["_random"] = graphs[""].rewired(seed=ctx.seed)
    metrics: dict[str, float] = {}
    for name, graph in graphs.items():
        validation = _validation(ctx, train, graph)
        # ties go to the larger mean weight: trust the images over the graph
        shrinkage, ridge, weight = max(validation, key=lambda key: (validation[key], key[2], key[1]))
        model = _kg_model(ctx, shrinkage, weight, ridge, graph=graph)
        model.fit_features(_table(ctx, train), labels[train])
        metrics[f"kg_top1{name}{suffix}"] = top1(model, evaluate, labels[test])
        if not name:
            ctx.shared[f"kg_model{suffix}"] = model
            metrics.update({f"kg_mean_weight{suffix}": weight, f"kg_shrinkage{suffix}": shrinkage,
                            f"kg_ridge{suffix}": ridge, f"kg_gamma{suffix}": float(model.gamma)})
            # the ablation without the graph: nearest class mean, its own shrinkage chosen the same way
            nokg = max(SHRINKAGES, key=lambda s: (max(v for k, v in validation.items() if k[0] == s and k[2] == 1.0),
                                                  s))
            no_graph = ctx.model("image", modalities={"image": {"projection_options": {"shrinkage": nokg}}})
            no_graph.fit_features(_table(ctx, train), labels[train])
            metrics[f"kg_top1{suffix}_nokg"] = top1(no_graph, evaluate, labels[test])
            metrics[f"kg_nokg_shrinkage{suffix}"] = nokg
    return metrics


def few_shot(labels: np.ndarray, indices: np.ndarray, shots: int, seed: int) -> np.ndarray:
    """A seeded draw of ``shots`` of ``indices`` per class (all of a class that has fewer), sorted."""
    rng = np.random.default_rng([seed, shots])
    chosen = [rng.choice(members, size=min(shots, len(members)), replace=False)
              for members in (indices[labels[indices] == c] for c in np.unique(labels[indices]))]
    return np.sort(np.concatenate(chosen))


@TASKS.register("kg")
def kg_task(ctx: TaskContext) -> dict[str, float]:
    train, test = _train_test(ctx)
    metrics = _kg_protocol(ctx, train, test)
    shipped = ctx.model("image-kg", kg=task_graph(ctx))
    shipped.fit_features(_table(ctx, train), ctx.labels(train))
    metrics["kg_top1_preset"] = top1(shipped, {"image": ctx.features["image"][test]}, ctx.labels(test))
    metrics.update(_kg_protocol(ctx, few_shot(ctx.dataset.labels, train, SHOTS, ctx.seed), test,
                                suffix=f"_{SHOTS}shot", random_graph=False))
    return metrics


def _gnn_model(ctx: TaskContext, free_weights: bool):
    return ctx.model("image-gnn", kg=task_graph(ctx),
                     class_embeddings={"options": {"layer": "gcn", "hidden": 256, "num_layers": 2,
                                          "free_weights": free_weights}},
                     objective={"label_smoothing": 0.1})


def _gnn_recipe(ctx: TaskContext, n_train: int):
    """The fixed training recipe of the learned-GNN variants (no tuning on test data)."""
    return ctx.train_config("gnn", n_train, epochs=15 if ctx.quick else 30, lr=2e-3, weight_decay=1e-4,
                            warmup_steps=0)


@TASKS.register("kg_gnn")
def kg_gnn_task(ctx: TaskContext) -> dict[str, float]:
    train, test = _train_test(ctx)
    model = _gnn_model(ctx, free_weights=True)
    with _gnn_recipe(ctx, len(train)) as recipe:
        model.fit_features(_table(ctx, train), ctx.labels(train), train=recipe)
    return {"kg_gnn_top1": top1(model, {"image": ctx.features["image"][test]}, ctx.labels(test))}


def _zero_shot(ctx: TaskContext, fit: Callable, prefix: str) -> dict[str, float]:
    if not ctx.unseen_classes:
        raise DataError(ctx.dataset.root, "zero-shot tasks need unseen classes (ctx.unseen_classes is empty)")
    split = zero_shot_split(ctx.dataset.labels, ctx.dataset.split, ctx.unseen_classes, ctx.dataset.num_classes)
    model = fit(split.train)
    test = np.concatenate([split.test_seen, split.test_unseen])
    logits = model.logits({"image": ctx.features["image"][torch.as_tensor(test)]})
    labels = ctx.labels(test)
    unseen_part = logits[len(split.test_seen):]
    gzsl = gzsl_accuracy(logits, labels, split.seen, 0.0)  # the model's logits carry its calibration
    return {f"zsl{prefix}_unseen50_top1": zsl_accuracy(unseen_part, labels[len(split.test_seen):], split.unseen),
            f"gzsl{prefix}_seen": gzsl.seen, f"gzsl{prefix}_unseen": gzsl.unseen, f"gzsl{prefix}_h": gzsl.h,
            f"gzsl{prefix}_gamma": float(model.gamma)}


@TASKS.register("zsl")
def zsl_task(ctx: TaskContext) -> dict[str, float]:
    def fit(train: np.ndarray):
        model = _kg_model(ctx, shrinkage=3.0)
        model.fit_features(_table(ctx, train), ctx.labels(train))
        return model

    return _zero_shot(ctx, fit, "")


@TASKS.register("zsl_gnn")
def zsl_gnn_task(ctx: TaskContext) -> dict[str, float]:
    def fit(train: np.ndarray):
        model = _gnn_model(ctx, free_weights=False)
        with _gnn_recipe(ctx, len(train)) as recipe:
            model.fit_features(_table(ctx, train), ctx.labels(train), train=recipe)
        return model

    return _zero_shot(ctx, fit, "_gnn")
