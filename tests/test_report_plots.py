"""Plots people read: training curves with the legend outside the data and integer epochs; confusion
matrices through sklearn's display with a colour bar, only the classes that have test samples, and at
200 classes a block ordering plus a table of the most confused pairs."""

from __future__ import annotations

import numpy as np
import pytest

from fgmm.report import (
    _block_order,
    confused_pairs,
    confusion_figure,
    plot_confusion,
    plot_training_curve,
    training_curve_figure,
)

pytest.importorskip("matplotlib")


def _close(fig) -> None:
    import matplotlib.pyplot as plt

    plt.close(fig)


def _overlaps(a, b) -> bool:
    return a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1


def test_training_curve_legend_outside_and_integer_epochs(tmp_path):
    history = [{"epoch": e, "train_loss": 2.0 * 0.8 ** e, "val_top1": 0.2 + 0.05 * e} for e in range(7)]
    fig = training_curve_figure(history, "head")
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    for ax in fig.axes:
        assert not _overlaps(legend, ax.get_window_extent(renderer)), "legend covers an axes"
        assert not _overlaps(legend, ax.xaxis.label.get_window_extent(renderer)), "legend covers the axis label"
    ticks = [t for t in fig.axes[0].get_xticks() if fig.axes[0].get_xlim()[0] <= t <= fig.axes[0].get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert list(fig.axes[0].lines[0].get_xdata()) == list(range(1, 8))  # epochs count from 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["train loss", "validation top-1"]
    _close(fig)
    assert plot_training_curve(history[:1], tmp_path / "one.png").stat().st_size > 0  # a single epoch works


def test_confusion_only_present_classes_with_colour_bar(tmp_path):
    names = [f"Warbler {c}" for c in "ABCDEFGH"]
    y_true = np.repeat(np.arange(6), 4)  # classes 6 and 7 have no test sample
    y_pred = y_true.copy()
    y_pred[::4] = 7  # ... and class 7 is predicted sometimes
    fig = confusion_figure(y_true, y_pred, names)
    matrix_ax = fig.axes[0]
    image = matrix_ax.images[0]
    assert image.get_array().shape == (6, 6)  # no empty row or column for classes 6 and 7
    assert image.colorbar is not None and len(fig.axes) == 2
    assert [t.get_text() for t in matrix_ax.get_yticklabels()] == names[:6]
    rows = np.asarray(image.get_array())
    assert np.allclose(rows.diagonal(), 0.75)  # normalised by each class's test count (4), not by the drawn cells
    _close(fig)
    assert plot_confusion(y_true, y_pred, names, tmp_path / "cm.svg").read_text().startswith("<?xml")


def test_confusion_at_200_classes_has_blocks_and_a_pairs_table():
    rng = np.random.default_rng(0)
    classes = 200
    y_true = np.repeat(np.arange(classes), 5)
    y_pred = y_true.copy()
    swap = rng.random(len(y_true)) < 0.4
    y_pred[swap] = (y_true[swap] // 4) * 4 + rng.integers(0, 4, swap.sum())  # confusions inside groups of 4
    names = [f"{i + 1:03d}.Bird_{i}" for i in range(classes)]
    fig = confusion_figure(y_true, y_pred, names, top_pairs=15)
    matrix_ax, table_ax = fig.axes[0], fig.axes[1]
    assert matrix_ax.images[0].get_array().shape == (200, 200)
    assert len(matrix_ax.get_xticks()) == 0  # 200 names are not printed under the matrix ...
    table = table_ax.tables[0]
    cells = table.get_celld()
    assert cells[(0, 0)].get_text().get_text() == "true class" and (15, 0) in cells  # ... the table names pairs
    _close(fig)
    pairs = confused_pairs(y_true, y_pred, names, 15)
    assert len(pairs) == 15 and pairs[0]["rate"] >= pairs[-1]["rate"]
    assert all(int(p["true"][:3]) - 1 >= 0 and (int(p["true"][:3]) - 1) // 4 == (int(p["predicted"][:3]) - 1) // 4
               for p in pairs)


def test_block_order_puts_confused_classes_together():
    rng = np.random.default_rng(1)
    groups = rng.permutation(np.repeat(np.arange(10), 4))  # 40 classes in 10 shuffled groups of 4
    rates = np.where(groups[:, None] == groups[None, :], 0.2, 0.0) + np.eye(40) * 0.4
    order = _block_order(rates)
    ordered = groups[order]
    runs = 1 + int((ordered[1:] != ordered[:-1]).sum())
    assert sorted(order.tolist()) == list(range(40)) and runs == 10  # every group is one contiguous block
