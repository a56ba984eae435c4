"""Zero-shot on Xian et al.'s proposed split (PS) of CUB: task ``zsl_ps``.

The field's standard zero-shot protocol on CUB (Xian et al., TPAMI 2018, the xlsa17 release): the 150
``trainvalclasses`` are seen, the 50 ``testclasses`` unseen (:func:`fgmm.data.cub_ps.cub_ps_split`).
The protocol is the one of the ``zsl`` task (:func:`fgmm.tasks.kg._zero_shot`): the model is fitted on
the training images of the seen classes only; every image of an unseen class is a test image (the
developers' bundle holds only the official train split, so all of them); the seen classes' test images
are the dataset's held-out ones. Keys:

* ``zsl_ps_top1``: mean per-class top-1 when only the 50 unseen classes compete (Xian et al.'s T1);
* ``gzsl_ps_seen``, ``gzsl_ps_unseen``, ``gzsl_ps_h``: generalised zero-shot (all 200 classes compete),
  mean per-class accuracies and their harmonic mean, after calibrated stacking with ``gzsl_ps_gamma``,
  chosen by the model's fit on the seen classes' training images only
  (:func:`fgmm.space.fitting.calibrate_gamma`).

**The design is frozen** (:data:`FROZEN_DESIGN`): it is the ``zsl`` task's design as it stood before
this split was first run, pinned here value by value so that later changes to ``zsl`` or to the
presets do not move it. Nothing is chosen by looking at PS results.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from fgmm.data.cub_ps import cub_ps_split
from fgmm.errors import DataError
from fgmm.tasks import TASKS, TaskContext
from fgmm.tasks.kg import _table, _zero_shot, task_graph

#: the zero-shot design, frozen before the first PS run: preset ``image-kg`` (whitened image space, class
#: means blended with prototypes regressed from the class graph), the ``zsl`` task's values
FROZEN_DESIGN: dict[str, Any] = {"preset": "image-kg", "power": 0.5, "shrinkage": 3.0, "ridge": 0.3,
                                 "taxonomy_weight": 0.5, "mean_weight": 0.5}


def ps_model(ctx: TaskContext, design: dict[str, Any] = FROZEN_DESIGN):
    """The untrained :class:`fgmm.FGModel` of the PS protocol (calibrated stacking on)."""
    return ctx.model(design["preset"], kg=task_graph(ctx),
                     modalities={"image": {"projection_options": {"power": design["power"],
                                                                  "shrinkage": design["shrinkage"]}}},
                     class_embeddings={"options": {"ridge": design["ridge"],
                                                   "taxonomy_weight": design["taxonomy_weight"],
                                                   "mean_weight": design["mean_weight"]},
                                       "calibrate": True})


def ps_unseen_classes(ctx: TaskContext) -> list[int]:
    """0-based labels of the 50 PS unseen classes in ``ctx.dataset`` (matched by CUB class folder name)."""
    folders = ctx.dataset.meta.get("class_folders")
    if not folders:
        raise DataError(ctx.dataset.root, "the zsl_ps task needs a CUB-200-2011 dataset (class folders such as "
                                          "'001.Black_footed_Albatross'); this dataset has none")
    try:
        return cub_ps_split().labels(folders)[1]
    except DataError as exc:
        raise DataError(ctx.dataset.root, exc.problem) from None


@TASKS.register("zsl_ps")
def zsl_ps_task(ctx: TaskContext) -> dict[str, float]:
    ps = replace(ctx, unseen_classes=ps_unseen_classes(ctx))

    def fit(train: np.ndarray):
        model = ps_model(ps)
        model.fit_features(_table(ps, train), ps.labels(train))
        return model

    metrics = _zero_shot(ps, fit, "_ps")
    metrics["zsl_ps_top1"] = metrics.pop("zsl_ps_unseen50_top1")
    return metrics
