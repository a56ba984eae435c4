"""Image->image retrieval on CUB classes 101-200 after training on 1-100 (issue 14).

    python benchmarks/image_retrieval.py --root DIR --out benchmarks/results/cub_image_retrieval.json \\
        [--cache DIR] [--seed 0] [--device cpu]
    python benchmarks/image_retrieval.py --table benchmarks/results/cub_image_retrieval.json   # README table

``--zoom`` compares the descriptors on the object-zoom features instead (``create_encoder("vision",
zoom=True)``: the image and the bird found by the backbone's own activations, ``fgmm.encoders.zoom``), next to
the same kNN baseline on the plain features; its variants are named ``zoom <descriptor>``:

    python benchmarks/image_retrieval.py --root DIR --zoom --out benchmarks/results/cub_image_retrieval_zoom.json

``--save-descriptor FILE`` also writes the selected descriptor fitted on classes 1-100, ready for
``fgmm index build --images DIR --descriptor FILE`` (it is derived from CUB images: keep it out of the
repository).

Every labelled image of classes 101-200 under ``--root`` is a query once, against all the others
(query excluded); classes 1-100 are the only training data (whitening, metric heads). Each variant of
``fgmm.tasks.image_retrieval`` (descriptors x re-rankers) is evaluated twice:

1. on two validation folds made of training classes only (train on 1-50 and search 51-100, and the
   other way round; ``validation_splits``): the variant with the best mean Recall@1 (then mAP) is
   *selected* there;
2. on the protocol split; the contract keys ``img_R@1/2/4/8`` and ``img_mAP`` are the selected variant's,
   ``img_knn_*`` the frozen-feature kNN baseline's, and every variant's figures are under ``"variants"``.

Frozen features come through the feature cache: the plain EfficientNet-Lite2 features, plus one pass of
``multiview_encoder`` (the mirror image, average/GeM/max/SCDA pooling: one more backbone forward per image,
~2 min per 1,000 images on 2 idle CPU cores; cached, so later runs take seconds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.encoders import create_encoder
from fgmm.errors import FgmmError
from fgmm.pipeline import default_cache_dir, encode_dataset_images
from fgmm.report import write_json_atomic
from fgmm.tasks.image_retrieval import (
    BASELINE,
    DESCRIPTORS,
    RECIPE,
    RERANKINGS,
    Variant,
    ViewFeatures,
    evaluate_variants,
    fit_descriptor,
    multiview_encoder,
    needs_multiview,
    retrieval_split,
    validation_splits,
)

KEYS = ("R@1", "R@2", "R@4", "R@8", "mAP")
ZOOM_PREFIX = "zoom "
ANCHORS = {"Proxy-Anchor (BN-Inception, fine-tuned)": 0.699, "frozen CLIP ViT-B/16": 0.665,
           "frozen DINO ViT-S/16": 0.627, "SCDA": 0.622}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: $FGMM_CACHE)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the metric heads' training")
    parser.add_argument("--device", default="cpu", help="torch device for the metric heads")
    parser.add_argument("--table", type=Path, default=None, help="print the README table of a results JSON and exit")
    parser.add_argument("--zoom", action="store_true",
                        help="descriptors on the object-zoom features (3 backbone passes per image, cached)")
    parser.add_argument("--save-descriptor", type=Path, default=None,
                        help="write the selected descriptor, fitted on classes 1-100, to this file")
    args = parser.parse_args(argv)
    if args.table is None and (args.root is None or args.out is None):
        parser.error("--root and --out are required (or --table FILE)")
    return args


def all_variants(zoom: bool = False) -> list[Variant]:
    """Every descriptor x re-ranker; with ``zoom`` only those reading one feature vector per image (test-time
    views are part of the zoom encoder itself)."""
    variants = [Variant(d, r) for d in DESCRIPTORS for r in RERANKINGS]
    return [v for v in variants if not needs_multiview([v])] if zoom else variants


def prefixed(results: dict[str, dict[str, float]], prefix: str) -> dict[str, dict[str, float]]:
    return {prefix + name: metrics for name, metrics in results.items()}


def select(validation: dict[str, dict[str, float]]) -> str:
    """The variant with the best validation Recall@1, ties broken by mAP."""
    return max(validation, key=lambda name: (round(validation[name]["R@1"], 6), validation[name]["mAP"]))


def markdown_table(results: dict) -> str:
    """The README table: every variant on the protocol split (and validation R@1), best first."""
    lines = ["| variant | R@1 | R@2 | R@4 | R@8 | mAP | validation R@1 |", "|---|---|---|---|---|---|---|"]
    rows = sorted(results["variants"].items(), key=lambda item: -item[1]["R@1"])
    for name, metrics in rows:
        mark = " **(selected)**" if name == results["selected"] else " (baseline)" if name == BASELINE.name else ""
        values = " | ".join(f"{100 * metrics[k]:.1f}" for k in KEYS)
        lines.append(f"| {name}{mark} | {values} | {100 * results['validation'][name]['R@1']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    if args.table is not None:
        import json

        console.print(markdown_table(json.loads(args.table.read_text())), markup=False)
        return {}
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=args.seed)
    cache = FeatureCache(args.cache or default_cache_dir())
    dataset, plain, stats = encode_dataset_images(dataset, cache)
    encode_start = time.perf_counter()
    if args.zoom:
        encoder = create_encoder("vision", zoom=True)
        features, prefix = ViewFeatures(cache.encode_images(encoder, [s.image for s in dataset]).features), ZOOM_PREFIX
    else:
        encoder = multiview_encoder(create_encoder("vision"))
        features, prefix = ViewFeatures(plain, cache.encode_images(encoder, [s.image for s in dataset]).features), ""
    seconds = {"encode_plain": stats["seconds"],
               f"encode_{'zoom' if args.zoom else 'multiview'}": round(time.perf_counter() - encode_start, 1)}
    labels = torch.as_tensor(dataset.labels).long()
    variants = all_variants(args.zoom)

    folds, describe_split = [], []
    for part, split in [*(("validation", s) for s in validation_splits(labels)), ("test", retrieval_split(labels))]:
        part_start = time.perf_counter()
        results = prefixed(evaluate_variants(features, labels, split.train, split.evaluation, variants,
                                             seed=args.seed, device=args.device), prefix)
        if args.zoom:  # the baseline stays the plain features' kNN
            results.update(evaluate_variants(ViewFeatures(plain), labels, split.train, split.evaluation, [BASELINE]))
        folds.append(results)
        describe_split.append({
            "part": part, "train_classes": f"{split.train_classes[0] + 1}-{split.train_classes[-1] + 1}",
            "search_classes": f"{split.evaluation_classes[0] + 1}-{split.evaluation_classes[-1] + 1}",
            "train_images": len(split.train), "search_images": len(split.evaluation),
            "seconds": round(time.perf_counter() - part_start, 1)})
        console.print(describe_split[-1])
    test = folds.pop()
    validation = {name: {k: sum(f[name][k] for f in folds) / len(folds) for k in KEYS} for name in test}
    selected = select(validation)
    seconds["total"] = round(time.perf_counter() - start, 1)
    output = {
        "protocol": "train on classes 1-100, every labelled image of classes 101-200 a query against all the others "
                    "(query excluded); all images of the bundle under --root (the official train split), no image "
                    "of 101-200 used for training, whitening or selection",
        **{f"img_{k}": test[selected][k] for k in KEYS},
        **{f"img_knn_{k}": test[BASELINE.name][k] for k in KEYS},
        "selected": selected,
        "selected_on": "mean validation R@1 (then mAP) of two folds: train 1-50 / search 51-100 and the reverse",
        "task_recipe": RECIPE.name, "selected_is_task_recipe": selected == RECIPE.name,
        "splits": describe_split, "variants": test, "validation": validation, "validation_folds": folds,
        "about": {prefix + name: spec.about for name, spec in DESCRIPTORS.items()
                  if not args.zoom or not needs_multiview([Variant(name)])},
        "features": "object zoom: [image; zoomed object] (fgmm.encoders.zoom)" if args.zoom else "plain + multiview",
        "rerankers": RERANKINGS, "anchors_R@1": ANCHORS,
        "encoder": {"plain": stats["encoder_fingerprint"], "zoom" if args.zoom else "multiview": encoder.fingerprint(),
                    "name": encoder.name},
        "seed": args.seed, "device": args.device, "torch_threads": torch.get_num_threads(), "seconds": seconds,
    }
    write_json_atomic(args.out, output)
    if args.save_descriptor is not None:
        descriptor = fit_descriptor(features, labels, retrieval_split(labels).train,
                                    Variant(*selected.removeprefix(prefix).split(" + ")).descriptor, seed=args.seed,
                                    device=args.device)
        if descriptor is None:
            console.print("the selected variant uses the frozen features unchanged: no descriptor to save")
        else:
            console.print(f"descriptor: {descriptor.save(args.save_descriptor)}")
    console.print(markdown_table(output), markup=False)
    if selected != RECIPE.name and not args.zoom:
        console.print(f"[yellow]note:[/] validation selects '{selected}', the image_retrieval task runs "
                      f"'{RECIPE.name}' (update fgmm.tasks.image_retrieval.RECIPE)")
    console.print(f"wrote {args.out}")
    return output


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
