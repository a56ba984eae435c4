"""Text→image retrieval for classes whose captions were withheld (issue 16), on CUB-200-2011.

    python benchmarks/text_novel.py --root /work/shared/data/cub200 --out benchmarks/results/cub_text_novel.json \\
        --cache /work/cache/features [--tune-steps 2000] [--tasks text_novel,text_described] [--seed 0] \\
        [--serve runs/text-novel]

Runs the tasks of :mod:`fgmm.tasks.text_novel` on frozen EfficientNet-Lite2 image features (the same
split as ``benchmarks/cub.py``: the official one when the root has test images, else the seeded 20%
per-class holdout) and writes one JSON object: the split, the 40 novel classes (CUB ids and names),
every metric, the recipe and the wall time per stage. The model is the one :class:`fgmm.FGModel`
(preset ``image-text-attributes``); ``--serve DIR`` also keeps the trained model with its text tower
in ``DIR/text_novel/served`` (``fgmm index build --model DIR/text_novel/served``) and the training
runs. ``--validation`` runs the same protocol without the test split, to choose a recipe: the same
novel classes, an inner 20% per-class holdout of the training images (seed ``--seed`` + 1) as queries
and gallery. ``--table`` prints the Markdown table of ``benchmarks/README.md`` from such a JSON file instead
of running.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console

from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.errors import FgmmError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.tasks import run_tasks
from fgmm.tasks.text_novel import NovelTextRecipe

DEFAULT_TASKS = ("text_novel", "text_described")

#: (label, key of this run) rows of the printed table; the ablation column is the key + ``_desc``/``_nodesc``
TABLE = (
    ("t2i mAP, novel classes (captions withheld)", "t2i_mAP_novel"),
    ("t2i R@1, novel classes", "t2i_R@1_novel"),
    ("t2i R@5, novel classes", "t2i_R@5_novel"),
    ("t2i R@10, novel classes", "t2i_R@10_novel"),
    ("t2i R@5, novel classes, embedding cosine alone", "t2i_R@5_novel_cosine"),
    ("text-only class top-1, novel classes", "t2c_top1_novel"),
    ("t2i mAP, captioned classes", "t2i_mAP_captioned"),
    ("t2i R@5, captioned classes", "t2i_R@5_captioned"),
    ("t2i R@5, captioned classes, embedding cosine alone", "t2i_R@5_captioned_cosine"),
)

#: (key of the existing retrieval task, its suffixed key here) compared in the README
CAPTION_KEYS = ("t2i_mAP", "i2t_mAP", "t2i_R@5", "i2t_R@5", "t2i_mAP_caption", "i2t_mAP_caption")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: ~/.cache/fgmm)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated tasks")
    parser.add_argument("--tune-steps", type=int, default=None, help="text-tower fine-tuning steps (recipe default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument("--validation", action="store_true",
                        help="inner holdout of the training images instead of the test split (recipe choice)")
    parser.add_argument("--serve", type=Path, default=None,
                        help="a new folder: keep the trained model (DIR/text_novel/served) and training runs")
    parser.add_argument("--table", type=Path, default=None, help="print the README table of a results JSON and exit")
    return parser.parse_args(argv)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def markdown_table(results: dict, reference: dict | None = None) -> str:
    """The README tables: novel/captioned figures, then the caption keys next to the existing model's."""
    suffix = "_nodesc" if results.get("recipe", {}).get("class_texts") else "_desc"
    other = "captions only" if suffix == "_nodesc" else "+ KG descriptions as training text"
    lines = [f"| figure | key | recipe | {other} (`{suffix}`) |", "|---|---|---|---|"]
    for label, key in TABLE:
        if key in results:
            lines.append(f"| {label} | `{key}` | **{_pct(results[key])}** | {_pct(results.get(key + suffix))} |")
    if any(f"{k}_kgtext" in results for k in CAPTION_KEYS):
        lines += ["", "| caption key (50 caption classes) | existing `retrieval` task "
                      "| the recipe, no caption withheld |", "|---|---|---|"]
        for key in CAPTION_KEYS:
            if f"{key}_kgtext" in results:
                old = (reference or {}).get(key)
                lines.append(f"| `{key}` | {'' if old is None else f'{old:.3f}'} | {results[key + '_kgtext']:.3f} |")
    return "\n".join(lines)


def validation_split(ctx, seed: int) -> None:
    """Fix the novel classes of ``ctx`` (chosen on its split), then re-split it: an inner 20% per-class
    holdout of its training samples becomes the test part, its test samples are left out."""
    from fgmm.data.splits import holdout_split
    from fgmm.tasks.text_novel import novel_classes

    ctx.shared["novel_classes"] = novel_classes(ctx)
    train = ctx.indices("train")
    inner = holdout_split(ctx.dataset.labels[train], 0.2, seed=seed)
    split = ["excluded"] * len(ctx.dataset.samples)
    for i, part in zip(train, inner, strict=True):
        split[i] = part
    ctx.dataset = replace(ctx.dataset, split=split, split_protocol=f"validation-inner-20%-seed{seed}")


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    if args.table is not None:
        results = json.loads(args.table.read_text(encoding="utf-8"))
        reference = args.table.parent / "cub_text.json"
        console.print(markdown_table(results, json.loads(reference.read_text()) if reference.is_file() else None),
                      markup=False, highlight=False)
        return results
    if args.root is None or args.out is None:
        raise SystemExit("--root and --out are required (or --table FILE)")
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=args.seed)
    load_seconds = time.perf_counter() - start
    cache = FeatureCache(args.cache or default_cache_dir())
    ctx, stats = build_context(dataset, cache=cache, vision="efficientnet_lite2", seed=args.seed, device=args.device,
                               out_dir=args.serve, progress=False)
    if args.validation:
        validation_split(ctx, args.seed + 1)
    recipe = NovelTextRecipe()
    if args.tune_steps is not None:
        recipe = replace(recipe, tune_steps=args.tune_steps)
    ctx.shared["text_novel_recipe"] = recipe
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    metrics = run_tasks(ctx, tasks)
    seconds = {"load": round(load_seconds, 3), "encode": stats["seconds"], **metrics.pop("seconds")}
    seconds["total"] = round(time.perf_counter() - start, 3)
    novel = metrics.get("text_novel_classes", [])
    folders = dataset.meta.get("class_folders", dataset.class_names)
    results = {
        "split": (f"validation: inner 20% per-class holdout (seed {args.seed + 1}) of the training images of "
                  f"{dataset.split_protocol}" if args.validation else dataset.split_protocol),
        "n_train": len(ctx.indices("train")), "n_test": len(ctx.indices("test")),
        "novel_class_ids": [c + 1 for c in novel], "novel_classes": [folders[c] for c in novel],
        **{k: v for k, v in metrics.items() if k != "text_novel_classes"},
        "recipe": asdict(recipe), "seconds": seconds, "tasks": tasks, "seed": args.seed,
        "encoder": {k: stats[k] for k in ("encoder", "encoder_fingerprint")},
    }
    write_json_atomic(args.out, results)
    console.print(markdown_table(results), markup=False, highlight=False)
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
