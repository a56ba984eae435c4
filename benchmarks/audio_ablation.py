"""Audio design choices on the CUB dev protocol, all on the one model (fgmm.FGModel): pooling, projection, prior weight.

    python benchmarks/audio_ablation.py --root DIR --out results.json [--cache DIR]
    python benchmarks/audio_ablation.py --table results.json     # the markdown table of benchmarks/README.md

Top-1 of recording -> class on the dev protocol of :mod:`fgmm.tasks.audio` (leave-one-recording-out and
one-shot over the classes with at least two recordings, duplicates dropped first) for variants of the audio
presets: how a recording's windows are pooled (the encoder's own pooling or another), the projection
(``center``: the presets' centring; ``identity``: cosine of the raw features; ``whiten``: within-class
whitening), the CNN's pooling (global average or per frequency band), plain log-mel statistics (mean and
standard deviation of each mel band over time) as a no-network baseline, and the weight of BirdNET's species
prior. Each variant is an ``FGModel`` fitted per fold (:meth:`fgmm.tasks.audio.AudioRun.model`). No held-out
recording is used.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from fgmm.audio.features import encode_recordings
from fgmm.audio.frontend import LogMel
from fgmm.audio.pooling import pool_recordings
from fgmm.audio.protocol import duplicate_recordings, leave_one_out_folds, one_shot_folds
from fgmm.cache import FeatureCache
from fgmm.data.cub import load_cub
from fgmm.errors import MissingExtraError
from fgmm.pipeline import default_cache_dir
from fgmm.report import write_json_atomic
from fgmm.space import model_config
from fgmm.space.inputs import build_encoder
from fgmm.tasks import TaskContext
from fgmm.tasks.audio import AUDIO_VIEWS, ONE_SHOT_REPEATS, AudioRun, recording_top1

BIRDNET_EMBEDDING = {"columns": [0, 1024]}


def pooled(preset: str, pooling: str, **encoder_options: Any) -> Callable[[AudioRun], torch.Tensor]:
    """Recording vectors of the preset's audio encoder (with ``encoder_options``) pooled by ``pooling``."""

    def features(run: AudioRun) -> torch.Tensor:
        spec = model_config(preset, modalities={"audio": {"encoder_options": encoder_options}}).modalities["audio"]
        encoded = encode_recordings(build_encoder("audio", spec), [r.audio for r in run.recordings], run.ctx.cache,
                                    progress=False)
        return pool_recordings(encoded.windows, pooling)

    return features


def mel_statistics(run: AudioRun) -> torch.Tensor:
    """Per recording: the mean over windows of each window's mean and standard deviation over time of each of
    128 normalised log-mel bands (256-d), windows as the default encoder selects them."""
    encoder = build_encoder("audio", model_config("audio").modalities["audio"])
    frontend = LogMel()
    out = []
    for recording in run.recordings:
        mel = frontend(torch.from_numpy(encoder.load_windows(recording.audio).samples))[:, 0]
        out.append(torch.cat([mel.mean(dim=2), mel.std(dim=2)], dim=1).mean(dim=0))
    return torch.stack(out)


@dataclass(frozen=True)
class Variant:
    """An audio preset with patches, on the preset's features (``features=None``) or others, read by ``view``."""

    preset: str
    features: Callable[[AudioRun], torch.Tensor] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    view: str = "model"


def _projection(name: str, **options: Any) -> dict[str, Any]:
    return {"modalities": {"audio": {"projection": name, "projection_options": options}}}


def _prior_weight(weight: float) -> dict[str, Any]:
    return {"priors": {"audio": {"weight": weight}}}


VARIANTS: dict[str, Variant] = {
    "default: l2mean pooling, center (preset audio)": Variant("audio"),
    "default: l2mean pooling, identity (no centring)": Variant("audio", overrides=_projection("identity")),
    "default: l2mean pooling, whiten": Variant("audio", overrides=_projection("whiten", shrinkage=1.0)),
    "default: mean pooling, center": Variant("audio", pooled("audio", "mean")),
    "default: per-band CNN pooling (5120-d), center": Variant("audio", pooled("audio", "l2mean", pool="bands")),
    "log-mel mean+std per band (256-d), center": Variant("audio", mel_statistics),
    "BirdNET: mean pooling, center (preset audio-birdnet, prior off)": Variant("audio-birdnet", view="embedding"),
    "BirdNET: l2mean pooling, center": Variant("audio-birdnet", pooled("audio-birdnet", "l2mean"), view="embedding"),
    "BirdNET: mean pooling, identity": Variant("audio-birdnet", overrides=_projection("identity", **BIRDNET_EMBEDDING),
                                               view="embedding"),
    "BirdNET: mean pooling, whiten": Variant("audio-birdnet", view="embedding", overrides=_projection(
        "whiten", shrinkage=1.0, **BIRDNET_EMBEDDING)),
    "BirdNET species prior alone": Variant("audio-birdnet", view="prior"),
    **{f"BirdNET embeddings × species prior, weight {w:g}{' (preset audio-birdnet)' if w == 2 else ''}":
       Variant("audio-birdnet", overrides=_prior_weight(w)) for w in (0.5, 1.0, 2.0, 4.0)},
}


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
    ctx = TaskContext(dataset=dataset, features={}, seed=args.seed,
                      cache=FeatureCache(args.cache or default_cache_dir()))
    run = AudioRun(ctx, list(dataset.recordings), np.zeros(len(dataset.recordings), dtype=bool))
    duplicates = set(duplicate_recordings(run.features("audio")))
    run.keep([i for i in range(len(run.recordings)) if i not in duplicates])
    labels = run.labels
    folds = {"loo": leave_one_out_folds(labels), "1shot": one_shot_folds(labels, args.seed, ONE_SHOT_REPEATS)}
    results: dict = {"protocol": "dev (fgmm.tasks.audio): classes with >= 2 recordings, duplicates dropped",
                     "recordings": len(run.recordings), "seed": args.seed, "variants": {}}
    for name, variant in VARIANTS.items():
        try:
            features = None if variant.features is None else variant.features(run)
            view = AUDIO_VIEWS.get(variant.view)
            row = {}
            for protocol, fs in folds.items():
                hits = []
                for fold in fs:
                    model = run.model(variant.preset, fold.train, features, **variant.overrides)
                    test = (run.features(variant.preset) if features is None else features)[fold.test]
                    hits.append(recording_top1(view(model, test), labels[fold.test]))
                row[f"top1_{protocol}"] = float(np.mean(hits))
        except MissingExtraError:
            continue  # BirdNET variants need the audio extra
        results["variants"][name] = row
        Console().print(f"{name}: LOO {100 * row['top1_loo']:.1f}, 1-shot {100 * row['top1_1shot']:.1f}")
    write_json_atomic(args.out, results)
    return results


if __name__ == "__main__":
    main()
