"""A picture of retrieval results: the query, then the retrieved items with rank, score and class.

Image items show as thumbnails, text items as wrapped text. When the query's class is known, each
result is framed green (same class) or red (other class).
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

from fgmm.data.images import load_image
from fgmm.errors import DataError
from fgmm.retrieval.index import SearchResult
from fgmm.train.checkpoint import atomic_write

_THUMB = 256  # longest side of a thumbnail, pixels


def _panel(ax, item: str | Path | None, text: str | None) -> None:
    """Draw an image file or (when ``item`` is None or not an image) wrapped text on ``ax``."""
    ax.set_xticks([])
    ax.set_yticks([])
    if item is not None:
        image = load_image(item)
        image.thumbnail((_THUMB, _THUMB))
        ax.imshow(image)
        return
    ax.text(0.5, 0.5, textwrap.fill(text or "", 24), ha="center", va="center", fontsize=8, wrap=True,
            transform=ax.transAxes)


def result_grid(result: SearchResult, query: int = 0, *, query_text: str | None = None,
                query_image: str | Path | None = None, query_label: int | None = None,
                out: str | Path, columns: int = 6) -> Path:
    """Save a PNG grid of the results of query ``query`` of ``result``.

    Args:
        result: from :meth:`EmbeddingIndex.search` or :meth:`Retriever.search`.
        query: which query row to draw.
        query_text, query_image: the query itself (a sentence or an image file), drawn first.
        query_label: the query's class, to frame results green (same class) or red.
        out: the PNG file to write (atomically).
        columns: panels per row.

    Returns:
        ``out``.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = result.rows(query)
    if not rows:
        raise DataError(None, "no results to draw")
    panels = len(rows) + 1
    ncols = min(columns, panels)
    nrows = -(-panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.4 * ncols, 2.7 * nrows), squeeze=False)
    for ax in axes.flat[panels:]:
        ax.axis("off")
    first = axes.flat[0]
    _panel(first, query_image, query_text)
    first.set_title("query", fontsize=9, fontweight="bold")
    for ax, row in zip(axes.flat[1:], rows, strict=False):
        path = row["path"]
        is_image = path is not None and Path(path).suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
        _panel(ax, path if is_image else None, row["text"] or row["id"])
        ax.set_title(f"#{row['rank']}  {row['score']:.3f}\n{row['class'] or row['id']}"[:60], fontsize=8)
        if query_label is not None and query_label >= 0:
            color = "tab:green" if row["label"] == query_label else "tab:red"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return atomic_write(Path(out), lambda handle: handle.write(buffer.getvalue()))
