"""What each part of the knowledge-graph class source brings to zero-shot on CUB (the ``zsl`` protocol).

    python benchmarks/kg_ablation.py --root ../shared/data/cub200 --cache /work/cache/features \\
        --out benchmarks/results/cub_kg_ablation.json [--seeds 0,1,2]

The ``zsl`` task's model (preset ``"image-kg"``, whitening shrinkage 3, trained on the 150 seen
classes; the 50 caption classes unseen, every image of theirs a test image) with one part removed at a
time: the taxonomy block of the class descriptors (``taxonomy_weight=0``: attributes only), the
power normalisation and within-class whitening (``projection="identity"``: L2-normalised features),
and both. Key per variant: ``zsl_unseen50_top1`` (mean per-class top-1 among the 50 unseen classes);
with several seeds (holdout seed = model seed) the JSON holds each seed's values, their mean and sd.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fgmm.cache import FeatureCache
from fgmm.data.cub import CUB_CAPTION_CLASS_IDS, load_cub
from fgmm.pipeline import build_context
from fgmm.report import summarize_seeds, write_json_atomic
from fgmm.space import ModalityTable
from fgmm.tasks import TaskContext
from fgmm.tasks.kg import task_graph
from fgmm.zeroshot import zero_shot_split, zsl_accuracy

#: variant name -> overrides of the zsl task's model
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "no_taxonomy": {"class_embeddings": {"options": {"taxonomy_weight": 0.0}}},
    "no_whitening": {"modalities": {"image": {"projection": "identity"}}},
    "neither": {"modalities": {"image": {"projection": "identity"}},
                "class_embeddings": {"options": {"taxonomy_weight": 0.0}}},
}


def variant_model(ctx: TaskContext, overrides: dict[str, Any]):
    """The zsl task's model (shrinkage 3, blend 0.5, ridge 0.3) with ``overrides`` merged in."""
    modalities = overrides.get("modalities", {"image": {"projection_options": {"shrinkage": 3.0}}})
    options = {"mean_weight": 0.5, "ridge": 0.3, **overrides.get("class_embeddings", {}).get("options", {})}
    return ctx.model("image-kg", kg=task_graph(ctx), modalities=modalities, class_embeddings={"options": options})


def run_seed(root: Path, cache: FeatureCache, seed: int) -> dict[str, float]:
    dataset = load_cub(root, seed=seed)
    unseen = [class_id - 1 for class_id in CUB_CAPTION_CLASS_IDS]
    ctx, _ = build_context(dataset, cache=cache, unseen_classes=unseen, seed=seed, progress=False)
    split = zero_shot_split(dataset.labels, dataset.split, unseen, dataset.num_classes)
    features, labels = ctx.features["image"], ctx.labels()
    results = {}
    for name, overrides in VARIANTS.items():
        model = variant_model(ctx, overrides)
        model.fit_features({"image": ModalityTable.one_per_sample(features[split.train])}, labels[split.train])
        scores = model.logits({"image": features[split.test_unseen]})
        results[name] = zsl_accuracy(scores, labels[split.test_unseen], split.unseen)
    return results


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, type=Path, help="CUB root (holds CUB_200_2011/)")
    parser.add_argument("--out", required=True, type=Path, help="where to write the results JSON")
    parser.add_argument("--cache", type=Path, required=True, help="feature cache folder")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    per_seed = {str(seed): run_seed(args.root, FeatureCache(args.cache), seed) for seed in seeds}
    mean, sd = summarize_seeds(per_seed)
    output = {
        "protocol": "zsl: 150 seen classes train, all images of the 50 caption classes test; zsl_unseen50_top1",
        "split": "holdout-20%-per-class-seed{seed}", "seeds": seeds, "per_seed": per_seed,
        **{f"zsl_{name}": mean[name] for name in VARIANTS},
        "sd": {f"zsl_{name}": sd[name] for name in VARIANTS},
    }
    write_json_atomic(args.out, output)
    for name in VARIANTS:
        print(f"{name:14s} {output[f'zsl_{name}']:.4f} ± {output['sd'][f'zsl_{name}']:.4f}")
    return output


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
