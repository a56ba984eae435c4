"""Noisy labels on CUB-200-2011: every fgmm filter and cleanlab, three noise settings.

    python benchmarks/noise.py --root DIR --out results.json [--cache DIR] [--seeds 0,1,2]
    python benchmarks/noise.py --table results.json          # the markdown table of benchmarks/README.md

The split is the benchmark contract's (official test split when present, else a seeded 20% per-class
holdout); noise is injected into the training labels only (:func:`fgmm.tasks.noise.inject_noise`):
20% and 40% symmetric, and 20% open-set (40 of 200 classes leave the label set; their training
images stay with random in-set labels, their test images leave the test set). Every filter run of
:data:`fgmm.tasks.noise.FILTER_RUNS` is scored for detection (precision / recall / F1 against the
injected truth) and by the test top-1 of the one model, :class:`fgmm.FGModel` with preset ``image``
(nearest class mean in the within-class whitened space of the image features: the ``image`` task's
model), fitted on its cleaned labels (:func:`fgmm.tasks.noise.run_protocol`). Out-of-fold scores come
from FGModel fits too (:class:`fgmm.filters.ModelScores`).

Contract keys (20% symmetric, mean over seeds): ``noise_f1`` (fgmm's default filter, cross-modal
agreement, fixed in advance), ``cleanlab_f1`` (cleanlab's ``find_label_issues`` on the image
classifier's out-of-fold probabilities), ``noisy_top1_nofilter``, ``noisy_top1_filtered`` (the default
filter), and ``noise_clean_top1`` (the same classifier on clean labels).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.errors import FgmmError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.tasks.noise import DEFAULT_FILTER, FILTER_RUNS, inject_noise, protocol_inputs, run_protocol

SETTINGS = ("symmetric-20", "symmetric-40", "openset-20")
HEADLINE = "symmetric-20"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder")
    parser.add_argument("--seeds", default="0", help="comma-separated noise seeds (the split uses seed 0)")
    parser.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, from {SETTINGS}")
    parser.add_argument("--runs", default=",".join(FILTER_RUNS), help=f"filter runs ({', '.join(FILTER_RUNS)})")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--table", type=Path, default=None, help="print the markdown table of a results JSON")
    return parser.parse_args(argv)


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(per_seed: dict[str, list[dict]]) -> dict[str, dict]:
    """Mean (and sd over seeds) of every figure, per setting and filter run."""
    out = {}
    for setting, results in per_seed.items():
        runs = {}
        for name in results[0]["runs"]:
            rows = [r["runs"][name] for r in results]
            runs[name] = {k: _mean([row[k] for row in rows]) for k in ("precision", "recall", "f1", "top1",
                                                                       "keep", "drop", "relabel", "relabel_correct")}
            runs[name]["f1_sd"] = float(np.std([row["f1"] for row in rows]))
            runs[name]["top1_sd"] = float(np.std([row["top1"] for row in rows]))
            runs[name].update(filter=rows[0]["filter"], signals=rows[0]["signals"])
        first = results[0]
        out[setting] = {"noise_rate": _mean([r["noise_rate"] for r in results]), "n_train": first["n_train"],
                        "n_test": first["n_test"], "num_classes": first["num_classes"],
                        "clean_top1": _mean([r["clean_top1"] for r in results]),
                        "nofilter_top1": _mean([r["nofilter_top1"] for r in results]), "runs": runs}
    return out


def markdown_table(results: dict) -> str:
    """The README table: one row per filter run, F1 and top-1 (%) for every setting (mean ± sd over seeds)."""
    settings = list(results["settings"])
    head = "| filter | signals | " + " | ".join(f"{s} F1 | {s} top-1" for s in settings) + " |"
    lines = [head, "|---|---|" + "---:|---:|" * len(settings)]
    for label, key in (("no filter", "nofilter_top1"), ("clean labels (reference)", "clean_top1")):
        lines.append(f"| {label} | | " + " | ".join(f"— | {100 * results['settings'][s][key]:.1f}" for s in settings)
                     + " |")
    names = list(results["settings"][settings[0]]["runs"])
    spread = len(results.get("seeds", [])) > 1
    for name in names:
        cells = []
        for s in settings:
            run = results["settings"][s]["runs"][name]
            f1_sd = f" ± {run['f1_sd']:.3f}" if spread else ""
            top1_sd = f" ± {100 * run['top1_sd']:.1f}" if spread else ""
            cells.append(f"{run['f1']:.3f}{f1_sd} | {100 * run['top1']:.1f}{top1_sd}")
        bold = "**" if name == DEFAULT_FILTER else ""
        lines.append(f"| {bold}`{name}`{bold} | {results['settings'][settings[0]]['runs'][name]['signals']} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    if args.table:
        console.print(markdown_table(json.loads(args.table.read_text())), highlight=False, soft_wrap=True)
        return {}
    if args.root is None or args.out is None:
        raise SystemExit("--root and --out are required (or --table FILE)")
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=0)
    ctx, stats = build_context(dataset, cache=FeatureCache(args.cache or default_cache_dir()), seed=0,
                               device=args.device, out_dir=None)
    inputs = protocol_inputs(ctx)
    prepared = time.perf_counter() - start
    train, test = ctx.trained_indices()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    per_seed: dict[str, list[dict]] = {}
    seconds: dict[str, float] = {"prepare": round(prepared, 1)}
    for setting in [s.strip() for s in args.settings.split(",") if s.strip()]:
        kind, rate = setting.split("-")
        t0 = time.perf_counter()
        for seed in seeds:
            noisy = inject_noise(ctx.dataset.labels, train, test, kind, int(rate) / 100, seed=seed)
            result = run_protocol(inputs, noisy, runs, seed=seed, device=args.device)
            per_seed.setdefault(setting, []).append(result)
            console.print(f"{setting} seed {seed}: " + ", ".join(f"{n} F1 {r['f1']:.3f} top-1 {r['top1']:.3f}"
                                                               for n, r in result["runs"].items()))
        seconds[setting] = round(time.perf_counter() - t0, 1)
    settings = summarise(per_seed)
    head = settings.get(HEADLINE)
    keys = {}
    if head is not None and {DEFAULT_FILTER, "cleanlab"} <= set(head["runs"]):
        default = head["runs"][DEFAULT_FILTER]
        keys = {"noise_f1": default["f1"], "cleanlab_f1": head["runs"]["cleanlab"]["f1"],
                "noisy_top1_nofilter": head["nofilter_top1"], "noisy_top1_filtered": default["top1"],
                "noise_clean_top1": head["clean_top1"]}
    seconds["total"] = round(time.perf_counter() - start, 1)
    results = {"split": ctx.dataset.split_protocol, "n_train": len(train), "n_test": len(test), **keys,
               "default_filter": DEFAULT_FILTER, "modalities": per_seed[next(iter(per_seed))][0].get("modalities"),
               "seeds": seeds, "settings": settings, "per_seed": per_seed, "seconds": seconds,
               "encoder": {k: stats[k] for k in ("encoder", "encoder_fingerprint", "dim")}}
    write_json_atomic(args.out, results)
    console.print(markdown_table(results), highlight=False, soft_wrap=True)
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
