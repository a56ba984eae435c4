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
    ("finetune_top1", "image only, backbone fine-tuned end to end (overall top-1)"),
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
    ("zsl_ps_top1", "zero-shot, Xian PS split, 50 unseen classes (mean per-class top-1)"),
    ("gzsl_ps_seen", "generalised zero-shot, PS: seen (mean per-class)"),
    ("gzsl_ps_unseen", "generalised zero-shot, PS: unseen (mean per-class)"),
    ("gzsl_ps_h", "generalised zero-shot, PS: harmonic mean"),
    ("i2t_R@1", "retrieval image→text R@1"),
    ("i2t_R@5", "retrieval image→text R@5"),
    ("t2i_R@1", "retrieval text→image R@1"),
    ("t2i_R@5", "retrieval text→image R@5"),
    ("i2t_mAP", "retrieval image→text mAP (class-level)"),
    ("t2i_mAP", "retrieval text→image mAP (class-level)"),
    ("i2t_mAP_caption", "retrieval image→caption mAP (each caption an item)"),
    ("t2i_mAP_caption", "retrieval caption→image mAP (each caption an item)"),
    ("i2t_mAP_caption_tuned", "retrieval image→caption mAP, text tower fine-tuned"),
    ("t2i_mAP_caption_tuned", "retrieval caption→image mAP, text tower fine-tuned"),
    ("img_knn_R@1", "image→image R@1, unseen classes, frozen kNN (baseline)"),
    ("img_R@1", "image→image R@1, unseen classes"),
    ("img_mAP", "image→image mAP, unseen classes"),
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


def summarize_seeds(per_seed: Mapping[Any, Mapping[str, Any]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and sample standard deviation over the seeds of every number that every seed reports
    (``seed`` itself and booleans left out; sd 0 for a single seed)."""
    runs = list(per_seed.values())
    numeric = [k for k, v in runs[0].items() if isinstance(v, int | float) and not isinstance(v, bool)
               and k != "seed" and all(isinstance(r.get(k), int | float) for r in runs)]
    values = {k: np.array([float(r[k]) for r in runs]) for k in numeric}
    return ({k: float(v.mean()) for k, v in values.items()},
            {k: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()})


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
    return _write_figure(fig, path)


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
                   path: str | Path, title: str = "confusion matrix (row-normalised)", *,
                   max_labelled: int = 30, top_pairs: int = 20) -> Path:
    """Write :func:`confusion_figure` to ``path`` (PNG or SVG)."""
    return _write_figure(confusion_figure(y_true, y_pred, class_names, title, max_labelled=max_labelled,
                                          top_pairs=top_pairs), path)


def confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                     title: str = "confusion matrix (row-normalised)", *, max_labelled: int = 30,
                     top_pairs: int = 20):
    """Row-normalised confusion matrix over the classes that have test samples, with a colour bar.

    Rows are true classes, columns predicted ones, each row divided by the class's test count (so a
    prediction of a class without test samples lowers the row sum instead of adding an empty row).
    Up to ``max_labelled`` classes every row and column is named and small matrices print their
    values. Beyond that (e.g. 200 CUB classes) the classes are reordered so that classes confused
    with each other sit together (hierarchical clustering with optimal leaf ordering: confusions
    show as blocks along the diagonal) and the ``top_pairs`` most confused pairs are listed in a
    table next to the matrix.
    """
    from matplotlib.colors import PowerNorm
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _figure()
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    rates = _confusion_rates(y_true, y_pred, classes)
    names = [str(class_names[c]) for c in classes]
    large = len(classes) > max_labelled
    if large:
        order = _block_order(rates)
        rates, names = rates[np.ix_(order, order)], [names[i] for i in order]
        fig, (ax, side) = plt.subplots(1, 2, figsize=(17, 10), width_ratios=(1.25, 1), layout="constrained")
    else:
        size = max(4.5, 0.32 * len(classes) + 2.5)
        fig, ax = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    # many classes: a square-root colour scale, so that the off-diagonal confusions stay visible
    scale = {"norm": PowerNorm(0.5, vmin=0.0, vmax=1.0)} if large else {"vmin": 0.0, "vmax": 1.0}
    display = ConfusionMatrixDisplay(rates, display_labels=names)
    display.plot(ax=ax, cmap="Blues", colorbar=True, include_values=len(classes) <= 12, values_format=".2f",
                 xticks_rotation="vertical", im_kw=scale)
    display.im_.colorbar.set_label("fraction of the true class's test samples" + (" (square-root scale)" * large))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if large:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(f"predicted class ({len(classes)} classes, ordered so that confused classes are adjacent)")
        ax.set_ylabel("true class (same order)")
        _pairs_table(side, confused_pairs(y_true, y_pred, class_names, top_pairs))
    else:
        ax.tick_params(labelsize=7 if len(classes) > 12 else 9)
    ax.set_title(title)
    return fig


def _confusion_rates(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """``[K, K]``: fraction of the test samples of ``classes[i]`` predicted as ``classes[j]``."""
    from sklearn.metrics import confusion_matrix

    counts = confusion_matrix(y_true, y_pred, labels=classes).astype(float)
    support = np.array([(y_true == c).sum() for c in classes], dtype=float)
    return counts / support[:, None]


def _block_order(rates: np.ndarray) -> np.ndarray:
    """Order classes so that mutually confused ones are adjacent: average-linkage clustering on
    :math:`1 - s_{ij}` with :math:`s = (R + R^\top)/2` (diagonal ignored), optimal leaf ordering."""
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    similarity = (rates + rates.T) / 2.0
    np.fill_diagonal(similarity, 0.0)
    distance = 1.0 - similarity / max(float(similarity.max()), 1e-12)
    np.fill_diagonal(distance, 0.0)
    condensed = squareform(distance, checks=False)
    tree = optimal_leaf_ordering(linkage(condensed, method="average"), condensed)
    return leaves_list(tree)


def confused_pairs(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str],
                   k: int = 20) -> list[dict[str, Any]]:
    """The ``k`` most confused (true, predicted) class pairs, by the fraction of the true class's test
    samples (ties: more samples first): ``[{"true", "predicted", "rate", "count", "support"}, ...]``."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    pairs: dict[tuple[int, int], int] = {}
    for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        if t != p:
            pairs[(t, p)] = pairs.get((t, p), 0) + 1
    support = {int(c): int(n) for c, n in zip(*np.unique(y_true, return_counts=True), strict=True)}
    rows = [{"true": str(class_names[t]), "predicted": str(class_names[p]), "rate": n / support[t], "count": n,
             "support": support[t]} for (t, p), n in pairs.items()]
    rows.sort(key=lambda r: (-r["rate"], -r["count"], r["true"], r["predicted"]))
    return rows[:k]


def _pairs_table(ax, rows: list[dict[str, Any]]) -> None:
    """The most confused pairs as a table filling ``ax``."""
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        return
    cells = [[_short(r["true"]), _short(r["predicted"]), f"{100 * r['rate']:.0f}% ({r['count']}/{r['support']})"]
             for r in rows]
    table = ax.table(cellText=cells, colLabels=["true class", "predicted as", "of its test samples"],
                     loc="upper center", cellLoc="left", colLoc="left", colWidths=[0.42, 0.42, 0.22])
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.4)
    ax.set_title(f"most confused pairs (top {len(rows)})", fontsize=10)


def _short(name: str, width: int = 34) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def plot_training_curve(history: Sequence[Mapping[str, Any]], path: str | Path,
                        title: str = "training") -> Path:
    """Write :func:`training_curve_figure` to ``path`` (PNG or SVG)."""
    return _write_figure(training_curve_figure(history, title), path)


def training_curve_figure(history: Sequence[Mapping[str, Any]], title: str = "training"):
    """Train loss (left axis) and validation top-1 (right axis) per epoch from a Trainer history.

    Epochs are numbered from 1 on integer ticks (the history's ``epoch`` is 0-based); the legend sits
    below the axes, outside the data.
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    plt = _figure()
    epochs = [int(h.get("epoch", i)) + 1 for i, h in enumerate(history)]
    fig, ax = plt.subplots(figsize=(6.4, 4.0), layout="constrained")
    marker = "o" if len(epochs) <= 30 else None
    loss = [h.get("train_loss") for h in history]
    handles = ax.plot(epochs, loss, color="#c44e52", marker=marker, markersize=3, label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(epochs) == 1:
        ax.set_xlim(0.5, 1.5)
    val = [h.get("val_top1") for h in history]
    if any(v is not None for v in val):
        ax2 = ax.twinx()
        handles += ax2.plot(epochs, [np.nan if v is None else v for v in val], color="#4c72b0", marker=marker,
                            markersize=3, label="validation top-1")
        ax2.set_ylabel("validation top-1")
        ax2.set_ylim(0, 1)
        ax2.yaxis.set_major_formatter(PercentFormatter(1.0))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    ax.set_title(title)
    return fig


def _write_figure(fig, path: str | Path) -> Path:
    """Save ``fig`` (PNG or SVG, by suffix) atomically and close it."""
    import io

    buffer = io.BytesIO()
    suffix = Path(path).suffix.lower().lstrip(".") or "png"
    fig.savefig(buffer, format=suffix, dpi=110)
    _figure().close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)
