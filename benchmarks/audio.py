"""CUB audio benchmark: recording -> class and image <-> recording retrieval, every audio path, and speed.

    python benchmarks/audio.py --root DIR --out results.json [--cache DIR] [--speed-recordings 24]
    python benchmarks/audio.py --table results.json          # the markdown table of benchmarks/README.md

Runs the ``audio`` task (:mod:`fgmm.tasks.audio`) on CUB: images by the image split (official when
present, else the seeded 20% per-class holdout), recordings from ``audio/recordings.csv``. With held-out
recordings (``is_train=0`` rows) it reports the contract keys ``audio_top1``, ``i2a_mAP``, ``a2i_mAP``
for each path; without them (the developers' bundle) the dev protocol keys (``*_dev_*``). Every figure
comes from :class:`fgmm.FGModel` presets (``audio``, ``audio-birdnet`` for recognition; ``image-audio``,
``image-audio-birdnet`` for retrieval). Paths: ``default`` (log-mel EfficientNet-Lite0, offline),
``birdnet`` (BirdNET embeddings; extra ``fgmm[audio]``, CC BY-NC-SA 4.0), ``birdnet_species`` (BirdNET's
own species output, the reference point), ``birdnet_fused`` (both, the preset as it is).

``--baseline OLD.json`` with ``--table`` prints old and new figures side by side (``old → new``).

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
from fgmm.errors import FgmmError, MissingExtraError
from fgmm.pipeline import build_context, default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.space import model_config
from fgmm.space.inputs import build_encoder
from fgmm.tasks import run_tasks
from fgmm.tasks.audio import AUDIO_PATHS

PATHS = tuple(AUDIO_PATHS)
PATH_LABELS = {"default": "default: log-mel EfficientNet-Lite0 (offline); `audio` / `image-audio`",
               "birdnet": "BirdNET embeddings; `audio-birdnet` without its prior",
               "birdnet_species": "BirdNET species output alone (reference, trained on xeno-canto)",
               "birdnet_fused": "BirdNET embeddings × species prior; `audio-birdnet` / `image-audio-birdnet`"}
SPEED_PATHS = ("default", "birdnet_fused")
"""The encoders timed: those of these paths' presets."""


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
    parser.add_argument("--baseline", type=Path, default=None, help="with --table: older results shown as old → new")
    return parser.parse_args(argv)


def encoder_speed(paths: list[Path], threads: int = 2) -> dict[str, dict[str, float]]:
    """Windows/s (wall and per CPU-second) of each encoder on ``paths``, no cache, decoding included."""
    torch.set_num_threads(threads)
    speeds = {}
    for key in SPEED_PATHS:
        spec = model_config(AUDIO_PATHS[key].preset).modalities["audio"]
        if spec.encoder == "birdnet":
            spec.encoder_options["threads"] = threads
        try:
            encoder = build_encoder("audio", spec)
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


def markdown_table(results: dict, baseline: dict | None = None) -> str:
    """The benchmarks/README.md table of one results JSON (``baseline``: an older one, shown as old → new)."""

    def cell(key: str) -> str:
        new = _pct(results.get(key))
        return f"{_pct(baseline[key])} → {new}" if baseline and key in baseline else new

    dev = "audio_top1" not in results
    if dev:
        columns = ("audio_top1_dev_loo_{}", "audio_top1_dev_1shot_{}", "i2a_mAP_dev_1shot_{}", "a2i_mAP_dev_1shot_{}")
        lines = ["| path | top-1 LOO | top-1 1-shot | i2a mAP 1-shot | a2i mAP 1-shot |", "|---|---|---|---|---|"]
    else:
        columns = ("audio_top1_{}", "i2a_mAP_{}", "a2i_mAP_{}")
        lines = ["| path | audio_top1 | i2a_mAP | a2i_mAP |", "|---|---|---|---|"]
    for path in PATHS:
        if columns[0].format(path) in results:
            lines.append(f"| {PATH_LABELS[path]} | " + " | ".join(cell(c.format(path)) for c in columns) + " |")
    if dev:
        lines.append(f"| random ranking (chance) | | | {cell('i2a_mAP_dev_chance')} | {cell('a2i_mAP_dev_chance')} |")
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
        baseline = json.loads(args.baseline.read_text()) if args.baseline else None
        print(markdown_table(json.loads(args.table.read_text()), baseline))
        return {}
    if args.root is None or args.out is None:
        raise SystemExit("--root and --out are required (or --table RESULTS.json)")
    start = time.perf_counter()
    dataset = load_cub(args.root, seed=args.seed)
    cache = FeatureCache(args.cache or default_cache_dir())
    ctx, stats = build_context(dataset, cache=cache, vision=args.vision, seed=args.seed, device="cpu")
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
