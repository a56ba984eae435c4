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


def _scale_digits(fmt: str) -> tuple[float, int]:
    """How a value of format ``fmt`` prints: percentages x100 with one decimal, fractions with three."""
    return (100.0, 1) if fmt == "pct" else (1.0, 3)


def _value(results: dict, key: str, fmt: str) -> str:
    if key not in results:
        return "–"
    scale, digits = _scale_digits(fmt)
    mean = float(results[key]) * scale
    sd = results.get("sd", {}).get(key)
    text = f"{mean:.{digits}f}"
    return f"{text} ± {float(sd) * scale:.{digits}f}" if sd is not None else text


def load_source(name: str) -> dict:
    """The results of source ``name``: a file of ``results/``, or ``FILE:seedN`` for one seed of a ``--seeds`` run."""
    file, _, seed = name.partition(":seed")
    results = json.loads((HERE / "results" / file).read_text())
    return results["per_seed"][seed] if seed else results


def render(table: Table) -> str:
    """The markdown of ``table`` from its JSON files."""
    data = [load_source(name) for name in table.sources]
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
            scale, digits = _scale_digits(row.fmt)
            cells.append(f"{(float(data[-1][row.key]) - float(data[0][row.key])) * scale:+.{digits}f}"
                         if len(present) == len(data) else "–")
        if table.references:
            cells.append(table.references.get(row.key, ""))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CUB_ROWS = (
    Row("image_top1", "image only: whitened nearest class mean (overall top-1, 200 classes)"),
    Row("image_top1_logreg", "plain logistic probe, L2-normalised features (overall top-1)"),
    Row("kg_top1", "+ knowledge graph: KG prototypes, settings chosen on inner validation (overall top-1)"),
    Row("kg_top1_nokg", "the same classifier without the KG, its own tuned shrinkage (overall top-1)"),
    Row("kg_top1_random", "the same model over a random graph of the same degrees (overall top-1)"),
    Row("kg_top1_preset", "+ knowledge graph: the image-kg preset as shipped, no selection (overall top-1)"),
    Row("kg_top1_5shot", "+ knowledge graph, 5 training images per class (overall top-1)"),
    Row("kg_top1_5shot_nokg", "the same without the KG, 5 images per class (overall top-1)"),
    Row("zsl_unseen50_top1", "zero-shot, 50 caption classes unseen (mean per-class top-1)"),
    Row("gzsl_h", "generalised zero-shot, harmonic mean (mean per-class)"),
    Row("image_top1_50", "50 caption classes: image-only model, trained without text (overall top-1)"),
    Row("fused_top1_50", "50 caption classes: image + its captions (overall top-1)"),
    Row("i2t_mAP_caption", "image→text mAP, per caption, 50 classes", "frac"),
    Row("t2i_mAP_caption", "text→image mAP, per caption, 50 classes", "frac"),
    Row("i2t_mAP_caption_tuned", "the same, text tower fine-tuned on the training captions: image→text", "frac"),
    Row("t2i_mAP_caption_tuned", "the same, text tower fine-tuned on the training captions: text→image", "frac"),
    Row("i2t_mAP", "image→text mAP, captions pooled per image, 50 classes", "frac"),
    Row("t2i_mAP", "text→image mAP, captions pooled per image, 50 classes", "frac"),
)

CUB_ROWS_NEW = (
    Row("fused_top1", "200 classes: image × its own captions' word n-grams, product of experts (overall top-1)"),
    Row("fused_top1_minilm", "200 classes: the same with MiniLM sentence embeddings (overall top-1)"),
    Row("fused_top1_joint", "200 classes: image + its own captions, joint image-text space (overall top-1)"),
    Row("fused_top1_tuned", "200 classes: MiniLM product, text tower fine-tuned (overall top-1)"),
)

HEADLINE_REFERENCES = {
    "image_top1": "the lead's frozen Lite2 + logistic probe: 73.6 (official split, 30 images per class)",
    "zsl_unseen50_top1": "DS-SJE 56.8 (per-image text, not comparable); 3 of the 50 classes are ImageNet classes",
    "i2t_mAP_caption": "FGCrossNet 0.210 (PKU FG-XMedia, not comparable)",
    "t2i_mAP_caption": "FGCrossNet 0.255 (PKU FG-XMedia, not comparable)",
}

ZSL_PS_ROWS = (
    Row("zsl_ps_top1", "zero-shot, Xian et al.'s proposed split, 50 unseen (mean per-class top-1)"),
    Row("gzsl_ps_h", "generalised zero-shot on the proposed split, harmonic mean (mean per-class)"),
)

NOISE_ROWS = (
    Row("noise_f1", "20% symmetric noise: wrong-label detection F1, cross-modal agreement", "frac"),
    Row("cleanlab_f1", "the same with cleanlab's find_label_issues", "frac"),
    Row("noisy_top1_filtered", "top-1 trained on the filtered labels (overall)"),
    Row("noisy_top1_nofilter", "top-1 trained on the noisy labels (overall)"),
    Row("noise_clean_top1", "top-1 of the same classifier on clean labels (overall)"),
)

KG_ROWS = (
    Row("image_top1", "image preset as shipped: whitened nearest class mean (overall top-1)"),
    Row("kg_top1", "+ knowledge graph, settings chosen on inner validation (overall top-1)"),
    Row("kg_top1_nokg", "without the graph, its own shrinkage chosen the same way (overall top-1)"),
    Row("kg_top1_random", "a random graph with the same degrees, same selection (overall top-1)"),
    Row("kg_top1_preset", "image-kg preset as shipped, no selection (overall top-1)"),
    Row("kg_top1_5shot", "+ knowledge graph, 5 images per class (overall top-1)"),
    Row("kg_top1_5shot_nokg", "without the graph, 5 images per class (overall top-1)"),
    Row("zsl_unseen50_top1", "zero-shot, 50 caption classes unseen (mean per-class top-1)"),
    Row("gzsl_seen", "GZSL, seen classes (mean per-class top-1)"),
    Row("gzsl_unseen", "GZSL, unseen classes (mean per-class top-1)"),
    Row("gzsl_h", "GZSL harmonic mean"),
)

KG_GNN_ROWS = (
    Row("kg_gnn_top1", "GCN class embeddings + free per-class weights, all classes trained (overall top-1)"),
    Row("zsl_gnn_unseen50_top1", "GCN, zero-shot, 50 caption classes unseen (mean per-class top-1)"),
    Row("gzsl_gnn_h", "GCN, GZSL harmonic mean"),
)

TEXT_ROWS = (
    Row("image_top1_50", "50 caption classes: the image-text config trained without text (overall top-1)"),
    Row("fused_top1_50", "50 caption classes: image + its captions, joint space (overall top-1)"),
    Row("fused_top1_50_product", "50 caption classes: image × its captions, product of experts (overall top-1)"),
    Row("fused_top1", "200 classes: image × its captions' word n-grams, product of experts (overall top-1)"),
    Row("fused_top1_minilm", "200 classes: image × its captions' MiniLM embeddings, product of experts "
                             "(overall top-1)"),
    Row("fused_top1_joint", "200 classes: image + its captions, joint space (overall top-1)"),
    Row("fused_top1_tuned", "200 classes: MiniLM product, text tower fine-tuned towards the text expert "
                            "(overall top-1)"),
    Row("image_top1", "200 classes: image only, the image preset (overall top-1)"),
    Row("i2t_mAP_caption", "image→text class-level mAP, per caption, 50 classes (class-aware match)", "frac"),
    Row("t2i_mAP_caption", "text→image class-level mAP, per caption, 50 classes (class-aware match)", "frac"),
    Row("i2t_mAP_caption_cosine", "image→text mAP per caption, the same model ranked by cosine alone", "frac"),
    Row("t2i_mAP_caption_cosine", "text→image mAP per caption, the same model ranked by cosine alone", "frac"),
    Row("i2t_R@1_caption", "image→text R@1, per caption"),
    Row("t2i_R@1_caption", "text→image R@1, per caption"),
    Row("i2t_mAP_caption_tuned", "image→text mAP per caption, text tower fine-tuned on the training captions "
                                 "(class-aware match)", "frac"),
    Row("t2i_mAP_caption_tuned", "text→image mAP per caption, text tower fine-tuned on the training captions "
                                 "(class-aware match)", "frac"),
    Row("i2t_mAP", "image→text class-level mAP, captions pooled per image", "frac"),
    Row("t2i_mAP", "text→image class-level mAP, captions pooled per image", "frac"),
    Row("i2t_R@5", "image→text R@5, pooled"),
    Row("t2i_R@5", "text→image R@5, pooled"),
)

GEO_ROWS = (
    Row("geo_image_top1", "image only, the image preset (overall top-1)"),
    Row("geo_fused_top1", "image-geo: × place/date prior, learned fusion (overall top-1)"),
    Row("geo_fused_top1_product", "image-geo: × place/date prior, product rule (overall top-1)"),
    Row("geo_fused_top1_kde", "baseline: × kernel-density prior, learned fusion (overall top-1)"),
)

AUDIO_ROWS = (
    Row("audio_top1_dev_1shot_birdnet_fused", "recording → class, unheard recordings, BirdNET path (top-1)"),
    Row("audio_top1_dev_1shot_default", "the same, offline default (log-mel EfficientNet-Lite0) (top-1)"),
    Row("i2a_mAP_dev_1shot_birdnet_fused", "image → recordings mAP, BirdNET path", "frac"),
    Row("a2i_mAP_dev_1shot_birdnet_fused", "recording → images mAP, BirdNET path", "frac"),
    Row("i2a_mAP_dev_1shot_default", "image → recordings mAP, offline default", "frac"),
    Row("a2i_mAP_dev_1shot_default", "recording → images mAP, offline default", "frac"),
)

NOVEL_ROWS = (
    Row("t2i_R@5_novel", "novel classes: captions → images R@5 (pooled captions), class-aware match, "
                         "trained on the other classes' captions"),
    Row("t2i_R@5_novel_cosine", "the same model ranked by the joint-embedding cosine alone"),
    Row("t2i_R@5_novel_desc", "trained on captions + KG descriptions + pseudo-captions (class-aware match)"),
    Row("t2i_mAP_novel", "novel classes: class-level mAP, class-aware match", "frac"),
    Row("t2i_mAP_novel_desc", "the same trained on captions + KG descriptions + pseudo-captions", "frac"),
    Row("t2i_R@5_novel_caption", "novel classes, each caption its own query: R@5"),
    Row("t2c_top1_novel", "novel classes: text-only zero-shot, pooled captions → class (top-1)"),
    Row("t2i_R@5_captioned", "captioned classes: captions → images R@5 (the same model, class-aware match)"),
    Row("t2i_R@5_captioned_cosine", "captioned classes, joint-embedding cosine alone"),
    Row("t2i_mAP_captioned", "captioned classes: class-level mAP", "frac"),
)

IMAGE_RETRIEVAL_ROWS = (
    Row("img_R@1", "descriptor + re-ranker selected on training-class folds: Recall@1"),
    Row("img_R@2", "Recall@2"),
    Row("img_R@4", "Recall@4"),
    Row("img_R@8", "Recall@8"),
    Row("img_mAP", "class-level mAP", "frac"),
    Row("img_knn_R@1", "baseline: frozen features, cosine kNN, Recall@1"),
    Row("img_knn_mAP", "baseline: class-level mAP", "frac"),
)

ZOOM_ROWS = tuple({row.key: row for row in CUB_ROWS + CUB_ROWS_NEW}[key] for key in (
    "image_top1", "image_top1_logreg", "kg_top1", "kg_top1_nokg", "kg_top1_5shot", "kg_top1_5shot_nokg",
    "zsl_unseen50_top1", "gzsl_h", "fused_top1", "fused_top1_minilm", "fused_top1_tuned", "fused_top1_50",
    "i2t_mAP_caption", "t2i_mAP_caption", "i2t_mAP_caption_tuned", "t2i_mAP_caption_tuned"))
"""The headline rows the object-zoom run (``cub.py --zoom``) is compared on."""

KG_ABLATION_ROWS = (
    Row("zsl_default", "KG class source as in the zsl task: attributes + taxonomy, whitened features"),
    Row("zsl_no_taxonomy", "without the taxonomy block (attributes only)"),
    Row("zsl_no_whitening", "without power normalisation and whitening (L2-normalised features)"),
    Row("zsl_neither", "neither"),
)

TABLES: dict[str, Table] = {
    "fgmodel-before-after": Table(
        sources=("cub_before_fgmodel.json", "cub_fgmodel_seeds.json:seed0"),
        columns=("separate models (6fe8fb0), seed 0", "one model (FGModel), seed 0"), rows=CUB_ROWS, delta=True),
    "cub-headline": Table(
        sources=("cub_fgmodel_seeds.json",), columns=("FGModel, seeds 0, 1, 2 (mean ± sd)",),
        rows=CUB_ROWS + CUB_ROWS_NEW, references=HEADLINE_REFERENCES),
    "cub-zsl-ps": Table(
        sources=("cub_zsl_ps.json",), columns=("seeds 0, 1, 2 (mean ± sd)",), rows=ZSL_PS_ROWS,
        references={"zsl_ps_top1": "ALE 54.9, f-CLSWGAN 57.3, TF-VAEGAN 64.9 (ResNet-101 features)"}),
    "cub-noise": Table(sources=("cub_noise.json",), columns=("seed 0",), rows=NOISE_ROWS),
    "cub-text": Table(sources=("cub_fgmodel_seeds.json",), columns=("seeds 0, 1, 2 (mean ± sd)",), rows=TEXT_ROWS),
    "cub-kg": Table(sources=("cub_fgmodel_seeds.json",), columns=("seeds 0, 1, 2 (mean ± sd)",), rows=KG_ROWS),
    "cub-kg-gnn": Table(sources=("cub_kg_gnn.json",), columns=("seed 0",), rows=KG_GNN_ROWS),
    "cub-geo": Table(sources=("cub_geo.json",), columns=("seed 0",), rows=GEO_ROWS),
    "cub-audio": Table(sources=("cub_audio.json",), columns=("seed 0, development protocol",), rows=AUDIO_ROWS),
    "cub-text-novel": Table(sources=("cub_text_novel_validation.json", "cub_text_novel.json"),
                            columns=("validation (inner holdout of the train images)", "test part, seed 0"),
                            rows=NOVEL_ROWS),
    "cub-image-retrieval": Table(
        sources=("cub_image_retrieval.json", "cub_image_retrieval_zoom.json"),
        columns=("whole image: views, poolings, heads; seed 0", "object zoom (`--zoom`), seed 0"),
        rows=IMAGE_RETRIEVAL_ROWS,
        references={"img_R@1": "fine-tuned on GPU: SCDA 62.2, Proxy-Anchor 69.9; frozen CLIP ViT-B/16 66.5 "
                               "(all with the official test images in the gallery)"}),
    "cub-zoom": Table(
        sources=("cub_fgmodel_seeds.json", "cub_zoom_seeds.json"),
        columns=("whole image, seeds 0, 1, 2 (mean ± sd)", "+ object zoom (`--zoom`), seeds 0, 1, 2"),
        rows=ZOOM_ROWS, delta=True),
    "cub-kg-ablation": Table(sources=("cub_kg_ablation.json",),
                             columns=("zsl_unseen50_top1, seeds 0, 1, 2 (mean ± sd)",), rows=KG_ABLATION_ROWS),
}

#: markdown files holding generated tables
DOCUMENTS: tuple[Path, ...] = (ROOT / "README.md", HERE / "README.md")


def _marker(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- table:{re.escape(name)} -->\n)(.*?\n)?(<!-- /table:{re.escape(name)} -->)", re.S)


def update(text: str) -> str:
    """``text`` with every generated table it holds rewritten."""
    for name, table in TABLES.items():
        text = _marker(name).sub(lambda m, t=table: m.group(1) + render(t) + "\n" + m.group(3), text)
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
