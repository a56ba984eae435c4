"""Geo/time prior on CUB-200-2011: image only, image x place/date prior, prior alone, and the kernel-density baseline.

    python benchmarks/geo.py --root DIR --occurrences occurrences.csv --out results.json [--cache DIR]
    python benchmarks/geo.py --markdown results.json      # the benchmarks/README.md table of a finished run

Same split, image features and image model as ``benchmarks/cub.py`` (the official split when the root has
test images, else the seeded 20% per-class holdout; the image task's :class:`fgmm.FGModel`, preset ``"image"``),
the protocol of :mod:`fgmm.tasks.geo`: the fused model is that FGModel with the ``"geo_occurrences"`` prior
(preset ``"image-geo"``), the prior never sees the records the evaluation images' places were drawn from, and
every choice (prior recipe, kernel bandwidth, learned fusion) is made on an inner validation split of the
training images.
Writes one JSON object with the ``geo_*`` keys of the benchmark contract.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.errors import FgmmError
from fgmm.geo.occurrences import load_occurrences
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.tasks.geo import class_names_for_records, evaluate_geo
from fgmm.tasks.image import image_model

ROWS = (
    ("geo_image_top1", "image only (FGModel, preset image)"),
    ("geo_fused_top1", "FGModel image-geo: image + learned prior (learned fusion) — the headline"),
    ("geo_fused_top1_product", "FGModel image-geo: image x learned prior (plain product rule)"),
    ("geo_fused_top1_an", "image + SINR assume-negative prior (learned fusion)"),
    ("geo_fused_top1_an_product", "image x SINR assume-negative prior (plain product rule)"),
    ("geo_fused_top1_kde", "image + kernel density (baseline, learned fusion)"),
    ("geo_fused_top1_kde_product", "image x kernel density (baseline, plain product rule)"),
    ("geo_fused_top1_birdnet", "image + BirdNET range model (extra, learned fusion)"),
    ("geo_fused_top1_learned_birdnet", "image + learned prior + BirdNET range model (extra)"),
    ("geo_prior_top1", "learned prior alone (test images with a place)"),
    ("geo_prior_top1_an", "SINR assume-negative prior alone (test images with a place)"),
    ("geo_prior_top1_kde", "kernel density alone (test images with a place)"),
    ("geo_prior_top1_birdnet", "BirdNET range model alone (test images with a place)"),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="CUB root (holds CUB_200_2011/, image_locations.csv)")
    parser.add_argument("--occurrences", type=Path, help="occurrences.csv")
    parser.add_argument("--out", type=Path, help="where to write the results JSON")
    parser.add_argument("--markdown", type=Path, default=None, help="print the markdown table of a results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: $FGMM_CACHE)")
    parser.add_argument("--vision", default="efficientnet_lite2", help="vision encoder (any timm name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy box)")
    parser.add_argument("--birdnet-table", type=Path, default=None,
                        help="also report BirdNET's range model (needs fgmm[audio]; CC BY-NC-SA) with this CSV of "
                             "class folders -> BirdNET labels (cub_to_birdnet.csv)")
    args = parser.parse_args(argv)
    if args.markdown is None and None in (args.root, args.occurrences, args.out):
        parser.error("--root, --occurrences and --out are required (or --markdown RESULTS.json)")
    return args


def table(results: dict) -> Table:
    out = Table(title=f"CUB geo/time ({results['split']}, {results['n_train']} train / {results['n_test']} test)")
    out.add_column("setting")
    out.add_column("top-1", justify="right")
    for key, label in ROWS:
        if results.get(key) is not None:
            out.add_row(label, f"{100 * results[key]:.1f}%")
    return out


def markdown(results: dict) -> str:
    """The results as the markdown table of benchmarks/README.md."""
    lines = ["| setting | key | top-1 |", "|---|---|---|"]
    lines += [f"| {label} | `{key}` | {100 * results[key]:.1f}% |" for key, label in ROWS
              if results.get(key) is not None]
    priors = [(suffix, label) for suffix, label in (("", "learned prior"), ("_an", "SINR AN-full"),
                                                    ("_kde", "kernel density"), ("_birdnet", "BirdNET range"))
              if f"geo_gain_dated{suffix}" in results]
    lines += ["", "| test images | n | " + " | ".join(f"{label}: gain" for _, label in priors) + " |",
              "|---|---|" + "---|" * len(priors)]
    for subset, label in (("dated", "with a place and a date"), ("undated", "with a place, no date")):
        gains = " | ".join(f"{100 * results[f'geo_gain_{subset}{suffix}']:+.1f}" for suffix, _ in priors)
        lines.append(f"| {label} | {results[f'geo_n_{subset}']} | {gains} |")
    lines.append(f"| without a place (image only) | {results['geo_n_noplace']} |" + " 0 |" * len(priors))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.markdown is not None:
        results = json.loads(args.markdown.read_text())
        print(markdown(results))
        return results
    console = Console()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=args.seed)
    ctx, stats = build_context(dataset, cache=FeatureCache(args.cache or default_cache_dir()), vision=args.vision,
                               seed=args.seed, device="cpu", progress=False)
    records = load_occurrences(args.occurrences, class_names_for_records(ctx.dataset))
    train, test = ctx.trained_indices()
    extra = {}
    if args.birdnet_table is not None:
        from fgmm.geo.birdnet_range import BirdNetRangePrior

        extra["birdnet"] = BirdNetRangePrior(ctx.dataset.class_names, args.birdnet_table,
                                             ctx.dataset.meta["class_folders"])
    metrics = evaluate_geo(ctx.dataset, ctx.features["image"], records, train, test, image_model=image_model(ctx),
                           seed=args.seed, extra_priors=extra)
    results = {
        "split": ctx.dataset.split_protocol, "n_train": len(train), "n_test": len(test), "seed": args.seed,
        **metrics, "occurrences": str(args.occurrences.name), "encoder": stats["encoder"],
        "seconds": {"total": round(time.perf_counter() - start, 1)},
    }
    write_json_atomic(args.out, results)
    console.print(table(results))
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
