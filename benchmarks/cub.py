"""CUB-200-2011 benchmark (DESIGN.md section 3).

    python benchmarks/cub.py --root DIR --out results.json [--cache DIR] [--tasks image,kg,...] [--seeds 0,1,2] \\
        [--update]

Uses the official split when ``train_test_split.txt`` marks test images present under ``--root``,
otherwise a fixed seeded 20% per-class holdout of the train images (reported under ``"split"``).
The 50 Reed caption classes are the unseen classes of the zero-shot tasks and the class set of the
text and retrieval keys. Writes one JSON object whose keys follow the contract table; each task adds
its keys.

``--seeds 0,1,2`` runs every seed (the seed of the holdout when the split is a holdout, and of every
model and random draw) and writes ``per_seed`` (each seed's results), ``mean`` and ``sd`` (sample
standard deviation over the seeds, of every number all seeds report); the contract keys at the top
level are the means. ``--update`` reruns some tasks into an existing results file (their keys
replaced, every other key kept, mean and sd recomputed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

import fgmm.tasks.all  # noqa: F401  (registers every task)
from fgmm.cache import FeatureCache
from fgmm.data.cub import CUB_CAPTION_CLASS_IDS, load_cub
from fgmm.errors import FgmmError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import results_table, summarize_seeds, write_json_atomic
from fgmm.tasks import TASKS, run_tasks

DEFAULT_TASKS = ("image", "kg", "zsl", "zsl_ps", "text", "text_tuned", "retrieval", "image_retrieval", "noise")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: ~/.cache/fgmm)")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS),
                        help=f"comma-separated tasks (registered: {', '.join(TASKS.names())})")
    parser.add_argument("--vision", default="efficientnet_lite2", help="vision encoder (any timm name)")
    parser.add_argument("--zoom", action="store_true",
                        help="append object-zoom features to the image features (fgmm.encoders.zoom; 3x encoding)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2 (mean and sd are reported)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    parser.add_argument("--update", action="store_true",
                        help="--out exists: rerun --tasks for its seeds and replace their keys there (the other "
                             "tasks' keys stay; mean and sd are recomputed)")
    args = parser.parse_args(argv)
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got '{args.seeds}'")
    if not args.seeds:
        parser.error("--seeds names no seed")
    return args


def run_seed(args: argparse.Namespace, seed: int, tasks: list[str], cache: FeatureCache) -> dict[str, Any]:
    """The results of one seed: split, sizes, every task's keys, seconds and encoder."""
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=seed)
    load_seconds = time.perf_counter() - start
    unseen = [class_id - 1 for class_id in CUB_CAPTION_CLASS_IDS]
    ctx, stats = build_context(dataset, cache=cache, vision=args.vision,
                               vision_options={"zoom": True} if args.zoom else None, unseen_classes=unseen,
                               seed=seed, device=args.device, out_dir=args.out.parent)
    ctx.text_classes = unseen  # the text and retrieval keys are over the 50 contract caption classes
    metrics = run_tasks(ctx, tasks)
    seconds = {"load": round(load_seconds, 3), "encode": stats["seconds"], **metrics.pop("seconds")}
    seconds["total"] = round(time.perf_counter() - start, 3)
    return {"split": ctx.dataset.split_protocol, "n_train": len(ctx.indices("train")),
            "n_test": len(ctx.indices("test")), **metrics, "seconds": seconds, "images_per_s": stats["images_per_s"],
            "encoder": {k: stats[k] for k in ("encoder", "encoder_fingerprint", "dim", "preprocessing")},
            "seed": seed}


def read_previous(args: argparse.Namespace) -> dict[str, Any]:
    """The results file ``--update`` rewrites; its seeds must be ``--seeds``."""
    if not args.out.is_file():
        raise SystemExit(f"--update: {args.out} does not exist")
    previous = json.loads(args.out.read_text(encoding="utf-8"))
    seeds = previous.get("seeds", [previous.get("seed")])
    if seeds != args.seeds:
        raise SystemExit(f"--update: {args.out} holds seeds {seeds}, not --seeds {args.seeds}")
    return previous


def updated(previous: dict[str, Any], fresh: dict[int, dict[str, Any]],
            tasks: list[str]) -> tuple[dict[int, dict[str, Any]], list[str]]:
    """Each seed's previous results with the fresh tasks' keys (and seconds) replacing theirs."""
    old = previous.get("per_seed") or {str(previous.get("seed")): previous}
    merged = {seed: {**old[str(seed)], **run, "seconds": {**old[str(seed)].get("seconds", {}), **run["seconds"]}}
              for seed, run in fresh.items()}
    return merged, list(dict.fromkeys([*previous.get("tasks", []), *tasks]))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for task in tasks:
        TASKS.get(task)  # an unknown task fails before anything runs
    cache = FeatureCache(args.cache or default_cache_dir())
    previous = read_previous(args) if args.update else None
    per_seed = {seed: run_seed(args, seed, tasks, cache) for seed in args.seeds}
    if previous is not None:
        per_seed, tasks = updated(previous, per_seed, tasks)
    if len(per_seed) == 1:
        results = {**next(iter(per_seed.values())), "tasks": tasks}
    else:
        mean, sd = summarize_seeds(per_seed)
        first = per_seed[args.seeds[0]]
        results = {**mean, "split": first["split"].replace(f"seed{args.seeds[0]}", "seed{seed}"),
                   "seeds": args.seeds, "mean": mean, "sd": sd, "per_seed": {str(k): v for k, v in per_seed.items()},
                   "encoder": first["encoder"], "tasks": tasks}
    write_json_atomic(args.out, results)
    console.print(results_table(results, title=f"CUB-200-2011 ({results['split']}, {results['n_train']:.0f} train / "
                                               f"{results['n_test']:.0f} test, seeds {args.seeds})"))
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
