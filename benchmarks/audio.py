"""CUB audio benchmark: recording -> class and image <-> recording retrieval, every audio path, and speed.

    python benchmarks/audio.py --root DIR --out results.json [--cache DIR] [--speed-recordings 24]
    python benchmarks/audio.py --table results.json          # the markdown table of benchmarks/README.md

Runs the ``audio`` task (:mod:`fgmm.tasks.audio`) on CUB: images by the image split (official when
present, else the seeded 20% per-class holdout), recordings from ``audio/recordings.csv``. With held-out
recordings (``is_train=0`` rows) it reports the contract keys ``audio_top1``, ``i2a_mAP``, ``a2i_mAP``
for each path; without them (the developers' bundle) the dev protocol keys (``*_dev_*``). Paths:
``default`` (log-mel EfficientNet-Lite0, offline), ``birdnet`` (BirdNET embeddings; extra ``fgmm[audio]``,
CC BY-NC-SA 4.0), ``birdnet_species`` (BirdNET's own species output, the reference point),
``birdnet_fused``.

Speed: windows/s of each encoder on the first ``--speed-recordings`` recordings, decoding and window
selection included, without the cache, with ``--speed-threads`` threads (default 2); CPU seconds next
to wall time (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console

from fgmm.audio.features import encode_recordings
from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.encoders import create_encoder
from fgmm.errors import FgmmError, MissingExtraError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.tasks import run_tasks
from fgmm.tasks.audio import ENCODER_SPECS

PATHS = ("default", "birdnet", "birdnet_species", "birdnet_fused")
PATH_LABELS = {"default": "default: log-mel EfficientNet-Lite0 (offline) + window-voting NCM",
               "birdnet": "BirdNET embeddings + NCM",
               "birdnet_species": "BirdNET species output (reference, trained on xeno-canto)",
               "birdnet_fused": "BirdNET embeddings NCM + species output (fused)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="CUB root (holds CUB_200_2011/ and audio/)")
    parser.add_argument("--out", type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, default=None, help="feature cache folder (default: ~/.cache/fgmm)")
    parser.add_argument("--vision", default="efficientnet_lite2", help="vision encoder of the image side")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--speed-recordings", type=int, default=24, help="recordings timed per encoder (0: skip)")
    parser.add_argument("--speed-threads", type=int, default=2, help="threads of the speed measurement")
    parser.add_argument("--table", type=Path, default=None, help="print the README table of a results JSON")
    return parser.parse_args(argv)


def encoder_speed(paths: list[Path], threads: int = 2) -> dict[str, dict[str, float]]:
    """Windows/s (wall and per CPU-second) of each encoder on ``paths``, no cache, decoding included."""
    torch.set_num_threads(threads)
    speeds = {}
    for key in ("default", "birdnet"):
        name, options = ENCODER_SPECS[key]
        try:
            encoder = create_encoder("audio", name, **({"threads": threads} if name == "birdnet" else {}), **options)
        except MissingExtraError:
            continue
        encode_recordings(encoder, paths[:1], progress=False)  # warm-up: model preparation is not throughput
        wall, cpu = time.perf_counter(), time.process_time()
        result = encode_recordings(encoder, paths, progress=False)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        speeds[key] = {"encoder": encoder.name, "windows": result.windows_encoded, "wall_s": round(wall, 2),
                       "cpu_s": round(cpu, 2), "windows_per_s": round(result.windows_encoded / wall, 2),
                       "windows_per_cpu_s": round(result.windows_encoded / cpu, 2), "threads": threads}
    return speeds


def _pct(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}"


def markdown_table(results: dict) -> str:
    """The benchmarks/README.md table of one results JSON."""
    dev = "audio_top1" not in results
    lines = []
    if dev:
        lines += ["| path | top-1 LOO | top-1 1-shot | i2a mAP 1-shot | a2i mAP 1-shot |", "|---|---|---|---|---|"]
        for path in PATHS:
            if f"audio_top1_dev_loo_{path}" in results:
                lines.append(f"| {PATH_LABELS[path]} | {_pct(results[f'audio_top1_dev_loo_{path}'])} | "
                             f"{_pct(results[f'audio_top1_dev_1shot_{path}'])} | "
                             f"{_pct(results[f'i2a_mAP_dev_1shot_{path}'])} | "
                             f"{_pct(results[f'a2i_mAP_dev_1shot_{path}'])} |")
        lines.append(f"| random ranking (chance) | | | {_pct(results['i2a_mAP_dev_chance'])} | "
                     f"{_pct(results['a2i_mAP_dev_chance'])} |")
    else:
        lines += ["| path | audio_top1 | i2a_mAP | a2i_mAP |", "|---|---|---|---|"]
        for path in PATHS:
            if f"audio_top1_{path}" in results:
                lines.append(f"| {PATH_LABELS[path]} | {_pct(results[f'audio_top1_{path}'])} | "
                             f"{_pct(results[f'i2a_mAP_{path}'])} | {_pct(results[f'a2i_mAP_{path}'])} |")
    speed = results.get("speed", {})
    if speed:
        lines += ["", "| encoder | threads | windows/s (wall) | windows per CPU-second | windows timed |",
                  "|---|---|---|---|---|"]
        lines += [f"| {s['encoder']} | {s['threads']} | {s['windows_per_s']} | {s['windows_per_cpu_s']} | "
                  f"{s['windows']} |" for s in speed.values()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    console = Console()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return {}
    if args.root is None or args.out is None:
        raise SystemExit("--root and --out are required (or --table RESULTS.json)")
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=args.seed)
    cache = FeatureCache(args.cache or default_cache_dir())
    ctx, stats = build_context(dataset, cache=cache, vision=args.vision, seed=args.seed, out_dir=args.out.parent,
                               device="cpu")
    metrics = run_tasks(ctx, ["audio"])
    speed = encoder_speed([r.audio for r in dataset.recordings[:args.speed_recordings]], args.speed_threads) \
        if args.speed_recordings else {}
    results = {
        "split": ctx.dataset.split_protocol, "image_encoder": stats["encoder"],
        "recordings": len(dataset.recordings), "recording_classes": len({r.label for r in dataset.recordings}),
        "protocol": "held-out recordings (is_train=0)" if "audio_top1" in metrics else
                    "dev: no held-out recordings; classes with >= 2 recordings held out in turn",
        **metrics, "speed": speed, "seed": args.seed, "seconds_total": round(time.perf_counter() - start, 1),
    }
    write_json_atomic(args.out, results)
    console.print(markdown_table(results))
    console.print(f"wrote {args.out}")
    return results


if __name__ == "__main__":
    try:
        main()
    except FgmmError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        sys.exit(2)
