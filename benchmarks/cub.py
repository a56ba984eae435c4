"""CUB-200-2011 benchmark (DESIGN.md section 3).

    python benchmarks/cub.py --root DIR --out results.json [--cache DIR] [--tasks image,kg,...]

Uses the official split when ``train_test_split.txt`` marks test images present under ``--root``,
otherwise a fixed seeded 20% per-class holdout of the train images (reported under ``"split"``).
The 50 Reed caption classes are the unseen classes of the zero-shot tasks. Writes one JSON object
whose keys follow the contract table; each task adds its keys.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console

import fgmm.tasks.all  # noqa: F401  (registers every task)
from fgmm.cache import FeatureCache
from fgmm.data.cub import CUB_CAPTION_CLASS_IDS, load_cub
from fgmm.errors import FgmmError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import results_table, write_json_atomic
from fgmm.tasks import TASKS, run_tasks

DEFAULT_TASKS = ("image", "kg", "zsl", "text", "retrieval", "image_retrieval")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: ~/.cache/fgmm)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help=f"comma-separated tasks (registered: {', '.join(TASKS.names())})")
    parser.add_argument("--vision", default="efficientnet_lite2", help="vision encoder (any timm name)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=args.seed)
    load_seconds = time.perf_counter() - start
    unseen = [class_id - 1 for class_id in CUB_CAPTION_CLASS_IDS]
    cache = FeatureCache(args.cache or default_cache_dir())
    ctx, stats = build_context(dataset, cache=cache, vision=args.vision, unseen_classes=unseen,
                               seed=args.seed, device=args.device, out_dir=args.out.parent)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    metrics = run_tasks(ctx, tasks)
    seconds = {"load": round(load_seconds, 3), "encode": stats["seconds"], **metrics.pop("seconds")}
    seconds["total"] = round(time.perf_counter() - start, 3)
    n_train = len(ctx.indices("train"))
    results = {
        "split": ctx.dataset.split_protocol, "n_train": n_train, "n_test": len(ctx.indices("test")),
        **metrics, "seconds": seconds, "images_per_s": stats["images_per_s"],
        "encoder": {k: stats[k] for k in ("encoder", "encoder_fingerprint", "dim", "preprocessing")},
        "tasks": tasks, "seed": args.seed,
    }
    write_json_atomic(args.out, results)
    console.print(results_table(results, title=f"CUB-200-2011 ({results['split']}, "
                                               f"{n_train} train / {results['n_test']} test)"))
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
