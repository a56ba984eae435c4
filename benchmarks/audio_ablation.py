"""Audio design choices on the CUB dev protocol: which encoder pooling and recognition method.

    python benchmarks/audio_ablation.py --root DIR --out results.json [--cache DIR]
    python benchmarks/audio_ablation.py --table results.json     # the markdown table of benchmarks/README.md

Top-1 of recording -> class on the dev protocol of :mod:`fgmm.tasks.audio` (leave-one-recording-out and
one-shot over the classes with at least two recordings, duplicates dropped first) for variants of the
paths: whitening or not, window voting or pooled recordings, the CNN's pooling (global average or
per frequency band), and plain log-mel statistics (mean and standard deviation of each mel band over
time) as a no-network baseline. No held-out recording is used.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from fgmm.audio.features import EncodedRecordings
from fgmm.audio.frontend import LogMel
from fgmm.audio.recognition import duplicate_recordings, leave_one_out_folds, one_shot_folds
from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.encoders import create_encoder
from fgmm.errors import MissingExtraError
from fgmm.pipeline import default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.tasks import TaskContext
from fgmm.tasks.audio import (
    ENCODER_SPECS,
    ONE_SHOT_REPEATS,
    SPECIES_WEIGHT,
    AudioRun,
    birdnet_species_path,
    classifier_path,
    fused_path,
    recording_top1,
)

VARIANTS = {  # name -> path(run, fold) -> (log-probabilities, classes)
    "default avg, window NCM (the default path)": classifier_path("default", "window_ncm", shrinkage=None),
    "default avg, NCM": classifier_path("default", "ncm", shrinkage=None),
    "default avg, NCM whitened": classifier_path("default", "ncm", shrinkage=1.0),
    "default per-band pooling (5120-d), NCM": classifier_path("bands", "ncm", shrinkage=None),
    "default per-band pooling, NCM whitened": classifier_path("bands", "ncm", shrinkage=1.0),
    "log-mel mean+std per band (256-d), NCM whitened": classifier_path("melstats", "ncm", shrinkage=1.0),
    "BirdNET, NCM (the birdnet path)": classifier_path("birdnet", "ncm", shrinkage=None),
    "BirdNET, NCM whitened": classifier_path("birdnet", "ncm", shrinkage=1.0),
    "BirdNET, window NCM": classifier_path("birdnet", "window_ncm", shrinkage=None),
    "BirdNET species output alone": birdnet_species_path,
    **{f"BirdNET NCM + {w:g} x species output{' (the fused path)' if w == SPECIES_WEIGHT else ''}": fused_path(w)
       for w in (0.5, 1.0, 2.0, 4.0)},
}


def mel_statistics(run: AudioRun) -> list[torch.Tensor]:
    """Per window: mean and standard deviation over time of each of 128 normalised log-mel bands."""
    encoder = run.ctx.shared["default_encoder"]
    frontend = LogMel()
    out = []
    for recording in run.recordings:
        mel = frontend(torch.from_numpy(encoder.load_windows(recording.audio).samples))[:, 0]
        out.append(torch.cat([mel.mean(dim=2), mel.std(dim=2)], dim=1))
    return out


def markdown_table(results: dict) -> str:
    lines = ["| variant | top-1 LOO | top-1 1-shot |", "|---|---|---|"]
    lines += [f"| {name} | {100 * row['top1_loo']:.1f} | {100 * row['top1_1shot']:.1f} |"
              for name, row in results["variants"].items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--table", type=Path, default=None, help="print the README table of a results JSON")
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return {}
    if args.root is None or args.out is None:
        parser.error("--root and --out are required (or --table RESULTS.json)")
    dataset = load_cub(args.root, seed=args.seed)
    cache = FeatureCache(args.cache or default_cache_dir())
    ctx = TaskContext(dataset=dataset, features={}, seed=args.seed, cache=cache)
    specs = {**ENCODER_SPECS, "bands": ("efficientnet_lite0", {"pool": "bands"})}
    run = AudioRun(ctx, list(dataset.recordings), np.zeros(len(dataset.recordings), dtype=bool), specs=specs)
    duplicates = set(duplicate_recordings(run.windows("default")))
    run.keep([i for i in range(len(run.recordings)) if i not in duplicates])
    ctx.shared["default_encoder"] = create_encoder("audio")
    melstats = mel_statistics(run)
    run.features["melstats"] = EncodedRecordings(melstats, [], [], [], list(range(len(melstats))))
    labels = run.labels
    folds = {"loo": leave_one_out_folds(labels), "1shot": one_shot_folds(labels, args.seed, ONE_SHOT_REPEATS)}
    results: dict = {"protocol": "dev (fgmm.tasks.audio): classes with >= 2 recordings, duplicates dropped",
                     "recordings": len(run.recordings), "seed": args.seed, "variants": {}}
    for name, path in VARIANTS.items():
        try:
            row = {f"top1_{protocol}": float(np.mean([recording_top1(*path(run, fold), labels[fold.test])
                                                      for fold in fs])) for protocol, fs in folds.items()}
        except MissingExtraError:
            continue  # BirdNET variants need the audio extra
        results["variants"][name] = row
        Console().print(f"{name}: LOO {100 * row['top1_loo']:.1f}, 1-shot {100 * row['top1_1shot']:.1f}")
    write_json_atomic(args.out, results)
    return results


if __name__ == "__main__":
    main()
