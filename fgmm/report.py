"""Reports: the results table printed by ``fgmm demo`` / the benchmark, and their plots.

The table maps metric keys of the benchmark contract (DESIGN.md section 3) to readable rows, so
the demo and ``benchmarks/cub.py`` show the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fgmm.io import write_bytes_atomic

# (metric key, row label) in display order; keys absent from a result are not shown.
TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("image_top1_logreg", "image only, logistic-regression probe (baseline)"),
    ("image_top1", "image only (fgmm head)"),
    ("kg_top1", "+ knowledge graph (KG class prototypes)"),
    ("image_top1_50", "image only, captioned classes"),
    ("fused_top1_50", "+ text fusion, captioned classes"),
    ("audio_top1", "audio only: held-out recordings -> class"),
    ("geo_image_top1", "image only, geo protocol"),
    ("geo_fused_top1", "+ geo/time"),
    ("all_top1", "all modalities"),
    ("zsl_unseen50_top1", "zero-shot, unseen classes (mean per-class top-1)"),
    ("gzsl_seen", "generalised zero-shot: seen"),
    ("gzsl_unseen", "generalised zero-shot: unseen"),
    ("gzsl_h", "generalised zero-shot: harmonic mean"),
    ("i2t_R@1", "retrieval image→text R@1"),
    ("i2t_R@5", "retrieval image→text R@5"),
    ("t2i_R@1", "retrieval text→image R@1"),
    ("t2i_R@5", "retrieval text→image R@5"),
    ("i2t_mAP", "retrieval image→text mAP (class-level)"),
    ("t2i_mAP", "retrieval text→image mAP (class-level)"),
    ("i2t_mAP_caption", "retrieval image→caption mAP (each caption an item)"),
    ("t2i_mAP_caption", "retrieval caption→image mAP (each caption an item)"),
    ("i2a_mAP", "retrieval image→audio mAP"),
    ("a2i_mAP", "retrieval audio→image mAP"),
    ("audio_top1_dev_1shot_default", "audio, dev 1-shot, default encoder (log-mel Lite0)"),
    ("audio_top1_dev_1shot_birdnet_fused", "audio, dev 1-shot, BirdNET fused"),
    ("noisy_top1_nofilter", "noisy labels, no filter"),
    ("noisy_top1_filtered", "noisy labels, filtered"),
    ("noise_f1", "noisy-label detection F1"),
    ("cleanlab_f1", "noisy-label detection F1 (cleanlab)"),
)


def results_table(metrics: Mapping[str, Any], title: str = "fgmm results"):
    """A :class:`rich.table.Table` of the known metric keys present in ``metrics``."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("setting")
    table.add_column("key", style="dim")
    table.add_column("value", justify="right")
    for key, label in TABLE_ROWS:
        if key in metrics and metrics[key] is not None:
            table.add_row(label, key, f"{100 * float(metrics[key]):.1f}%")
    return table


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (never half-written)."""
    return write_bytes_atomic(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, ax, path: str | Path, title: str) -> Path:
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _figure().close(fig)
    return Path(path)


def plot_per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                            path: str | Path, title: str = "per-class top-1") -> Path:
    """Horizontal bar chart of per-class accuracy, worst classes first (test classes only)."""
    plt = _figure()
    classes = np.unique(y_true)
    acc = np.array([(y_pred[y_true == c] == c).mean() for c in classes])
    order = np.argsort(acc)
    height = max(3.0, 0.22 * len(classes))
    fig, ax = plt.subplots(figsize=(7, height))
    ax.barh(range(len(classes)), acc[order], color="#4c72b0")
    ax.set_yticks(range(len(classes)), [class_names[c] for c in classes[order]], fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("top-1")
    return _save(fig, ax, path, title)


def plot_confusion(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                   path: str | Path, title: str = "confusion matrix (row-normalised)") -> Path:
    """Row-normalised confusion matrix over the classes present in ``y_true``."""
    from sklearn.metrics import confusion_matrix

    plt = _figure()
    classes = np.unique(np.concatenate([y_true, y_pred]))
    cm = confusion_matrix(y_true, y_pred, labels=classes).astype(float)
    cm /= np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = min(14.0, max(4.0, 0.3 * len(classes)))
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(classes))
    ax.set_xticks(ticks, [class_names[c] for c in classes], rotation=90, fontsize=6)
    ax.set_yticks(ticks, [class_names[c] for c in classes], fontsize=6)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return _save(fig, ax, path, title)


def plot_training_curve(history: Sequence[Mapping[str, Any]], path: str | Path,
                        title: str = "training") -> Path:
    """Train loss and validation top-1 per epoch from a Trainer history."""
    plt = _figure()
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    loss = [h.get("train_loss") for h in history]
    ax.plot(epochs, loss, color="#c44e52", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    val = [h.get("val_top1") for h in history]
    if any(v is not None for v in val):
        ax2 = ax.twinx()
        ax2.plot(epochs, val, color="#4c72b0", label="val top-1")
        ax2.set_ylabel("val top-1")
        ax2.set_ylim(0, 1)
    fig.legend(loc="lower center", ncol=2, fontsize=8)
    return _save(fig, ax, path, title)
