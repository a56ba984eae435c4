"""Which text expert for the 200-class product of experts (``fused_top1``)? Chosen on validation data only.

    python benchmarks/text_expert.py --root DIR --out benchmarks/results/cub_text_expert.json [--zoom] \\
        [--cache DIR] [--seeds 0]

For each seed, the captioned *training* images of ``load_cub(seed=...)`` are split 80/20 (seeded, per
class); the product-of-experts preset (whitened image nearest class mean x the text's own nearest class
mean, ``fgmm.space.modality_prior.ClassMeansPrior``) is fitted on the 80% with each text model and
prior shrinkage and scored on the 20% (overall top-1, each image with its own captions pooled, as
``fused_top1`` scores the test images). No test image is read. The text models: MiniLM sentence
embeddings (preset ``image-text-product``) and hashed word n-grams (``word-ngrams``,
:mod:`fgmm.encoders.ngrams`; preset ``image-text-ngrams`` ships the selected shrinkage).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.data.splits import holdout_split
from fgmm.errors import FgmmError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.space import ModalityTable
from fgmm.tasks import TaskContext
from fgmm.tasks.text import captioned, text_table

TEXT_MODELS = ("all-MiniLM-L6-v2", "word-ngrams")
SHRINKAGES = (1.0, 3.0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: $FGMM_CACHE)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--zoom", action="store_true", help="object-zoom image features (cub.py --zoom)")
    return parser.parse_args(argv)


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).float().mean())


def validate(ctx: TaskContext) -> dict[str, dict[str, float] | float]:
    """Validation top-1 of the image expert alone and of every (text model, shrinkage) product."""
    train = captioned(ctx, "train")
    inner = np.asarray(holdout_split(ctx.labels(train).numpy(), 0.2, seed=ctx.seed))
    fit, held = train[inner == "train"], train[inner == "test"]
    images = ctx.features["image"]
    results: dict[str, dict[str, float] | float] = {}
    for text_model in TEXT_MODELS:
        table = text_table(ctx, text_model)
        for shrinkage in SHRINKAGES:
            model = ctx.model("image-text-product", dims={"text": table.dim},
                              modalities={"text": {"encoder": text_model}},
                              priors={"text": {"name": "class_means", "options": {"shrinkage": shrinkage}}})
            model.fit_features({"image": ModalityTable.one_per_sample(images[fit]), "text": table.subset(fit)},
                               ctx.labels(fit))
            texts = table.subset(held).pooled()
            results.setdefault("image", top1(model.logits({"image": images[held]}), ctx.labels(held)))
            results[f"{text_model}, shrinkage {shrinkage:g}"] = {
                "fused": top1(model.logits({"image": images[held], "text": texts}), ctx.labels(held)),
                "text_alone": top1(model.priors["text"](texts), ctx.labels(held))}
    return results


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    start = time.perf_counter()
    cache = FeatureCache(args.cache or default_cache_dir())
    per_seed = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        ctx, _ = build_context(load_cub(args.root, seed=seed), cache=cache, seed=seed,
                               vision_options={"zoom": True} if args.zoom else None, progress=False)
        per_seed[str(seed)] = validate(ctx)
        console.print(seed, per_seed[str(seed)])
    variants = [name for name in per_seed[next(iter(per_seed))] if name != "image"]
    mean = {name: float(np.mean([r[name]["fused"] for r in per_seed.values()])) for name in variants}
    output = {
        "protocol": "inner 80/20 split (seeded, per class) of the captioned training images of each seed's holdout; "
                    "fused: overall top-1 of the product of experts on the 20%, each image with its own captions",
        "features": "object zoom" if args.zoom else "whole image", "seeds": list(per_seed),
        "selected": max(mean, key=mean.get), "mean_fused": mean, "per_seed": per_seed,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(args.out, output)
    console.print(f"selected: {output['selected']}; wrote {args.out}")
    return output


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
