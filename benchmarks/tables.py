"""Write the results tables of README.md and benchmarks/README.md from the committed JSON results.

    python benchmarks/tables.py            # rewrite every generated table in place
    python benchmarks/tables.py --check    # exit 1 when a table differs from what its JSON gives

A generated table sits between two markers in a markdown file::

    <!-- table:cub-headline -->
    | ... |
    <!-- /table:cub-headline -->

and its content is a pure function of the JSON files named in :data:`TABLES`, so no figure is typed by
hand. Percentages print with one decimal, mAP/recall-like fractions below 1 that the contract reports
as such with three; a JSON written with ``--seeds`` prints ``mean ± sd``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass(frozen=True)
class Row:
    """One table row: a JSON key, its label, and how to print it (``"pct"`` or ``"frac"``)."""

    key: str
    label: str
    fmt: str = "pct"


@dataclass(frozen=True)
class Table:
    """A table: rows read from ``sources`` (one column each, titled by ``columns``), optional reference column."""

    sources: tuple[str, ...]
    columns: tuple[str, ...]
    rows: tuple[Row, ...]
    references: dict[str, str] = field(default_factory=dict)
    delta: bool = False


def _value(results: dict, key: str, fmt: str) -> str:
    if key not in results:
        return "–"
    scale, digits = (100.0, 1) if fmt == "pct" else (1.0, 3)
    mean = float(results[key]) * scale
    sd = results.get("sd", {}).get(key)
    text = f"{mean:.{digits}f}"
    return f"{text} ± {float(sd) * scale:.{digits}f}" if sd is not None else text


def render(table: Table) -> str:
    """The markdown of ``table`` from its JSON files."""
    data = [json.loads((HERE / "results" / name).read_text()) for name in table.sources]
    header = ["setting", "key", *table.columns]
    if table.delta:
        header.append("Δ")
    if table.references:
        header.append("reference point")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [row.label, f"`{row.key}`", *(_value(d, row.key, row.fmt) for d in data)]
        if table.delta:
            present = [d for d in data if row.key in d]
            scale = 100.0 if row.fmt == "pct" else 1.0
            digits = 1 if row.fmt == "pct" else 3
            cells.append(f"{(float(data[-1][row.key]) - float(data[0][row.key])) * scale:+.{digits}f}"
                         if len(present) == len(data) else "–")
        if table.references:
            cells.append(table.references.get(row.key, ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CUB_ROWS = (
    Row("image_top1", "image only: whitened nearest class mean (overall top-1, 200 classes)"),
    Row("image_top1_logreg", "plain logistic probe, L2-normalised features (overall top-1)"),
    Row("kg_top1", "+ knowledge graph: KG prototypes (overall top-1)"),
    Row("kg_top1_nokg", "the same classifier without the KG (overall top-1)"),
    Row("zsl_unseen50_top1", "zero-shot, 50 caption classes unseen (mean per-class top-1)"),
    Row("gzsl_h", "generalised zero-shot, harmonic mean (mean per-class)"),
    Row("image_top1_50", "50 caption classes: image-only model, trained without text (overall top-1)"),
    Row("fused_top1_50", "50 caption classes: image + its captions (overall top-1)"),
    Row("i2t_mAP_caption", "image→text mAP, per caption, 50 classes", "frac"),
    Row("t2i_mAP_caption", "text→image mAP, per caption, 50 classes", "frac"),
    Row("i2t_mAP", "image→text mAP, captions pooled per image, 50 classes", "frac"),
    Row("t2i_mAP", "text→image mAP, captions pooled per image, 50 classes", "frac"),
)

TABLES: dict[str, Table] = {
    "fgmodel-before-after": Table(
        sources=("cub_before_fgmodel.json", "cub_fgmodel.json"),
        columns=("separate models (6fe8fb0)", "one model (FGModel)"), rows=CUB_ROWS, delta=True),
}

#: markdown files holding generated tables
DOCUMENTS: tuple[Path, ...] = (ROOT / "README.md", HERE / "README.md")


def _marker(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(.*?)(\n<!-- /table:{re.escape(name)} -->)", re.S)


def update(text: str) -> str:
    """``text`` with every generated table it holds rewritten."""
    for name, table in TABLES.items():
        text = _marker(name).sub(lambda m, t=table: m.group(1) + render(t) + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check that every table is up to date")
    args = parser.parse_args(argv)
    stale = []
    for document in DOCUMENTS:
        text = document.read_text(encoding="utf-8")
        fresh = update(text)
        if fresh != text:
            stale.append(document)
            if not args.check:
                document.write_text(fresh, encoding="utf-8")
    if args.check and stale:
        print(f"generated tables out of date in: {', '.join(map(str, stale))}; run python benchmarks/tables.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
