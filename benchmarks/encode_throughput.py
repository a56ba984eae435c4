"""Image encoding throughput: a bare timm forward loop vs ``FeatureCache.encode_images`` (cold cache).

Both paths decode with the same DataLoader (``fgmm.data.images.image_loader``: same transform, batch
size and workers), so the ratio measures the cache's overhead (keys, fingerprint, shard writes, the
final read-back). Files are read once beforehand so that both runs find them in the OS page cache.

Example::

    python benchmarks/encode_throughput.py --root /work/shared/data/cub200 --n 200 --out throughput.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fgmm.cache import FeatureCache
from fgmm.data.images import default_num_workers, image_loader
from fgmm.encoders import TimmVisionEncoder
from fgmm.errors import DataError


def cub_images(root: Path, n: int) -> list[Path]:
    """``n`` CUB images spread evenly over ``CUB_200_2011/images.txt`` (so over the classes)."""
    listing = root / "CUB_200_2011" / "images.txt"
    if not listing.is_file():
        raise DataError(listing, "file not found (expected a CUB-200-2011 root)")
    paths = [root / "CUB_200_2011" / "images" / line.split()[1] for line in listing.read_text().splitlines()
             if line.strip()]
    step = max(1, len(paths) // n)
    return paths[::step][:n]


def bare_loop(encoder: TimmVisionEncoder, paths: list[Path], batch_size: int, num_workers: int) -> float:
    """Seconds for decoding + a plain ``model(x)`` loop over ``paths``."""
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in image_loader(paths, encoder.transform(), batch_size, num_workers):
            encoder.model(batch.images)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="CUB root holding CUB_200_2011/")
    parser.add_argument("--n", type=int, default=200, help="number of images")
    parser.add_argument("--model", default="efficientnet_lite2", help="vision encoder name")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=None, help="default: one per core but one")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    workers = default_num_workers() if args.num_workers is None else args.num_workers
    paths = cub_images(args.root, args.n)
    for path in paths:  # warm the OS page cache for both runs alike
        path.read_bytes()
    encoder = TimmVisionEncoder(args.model)
    with torch.inference_mode():  # first-call allocations, not part of either measurement
        encoder.model(torch.zeros(1, *encoder.preprocessing()["input_size"]))

    bare_s = bare_loop(encoder, paths, args.batch_size, workers)
    with tempfile.TemporaryDirectory() as folder:
        cache = FeatureCache(folder)
        start = time.perf_counter()
        result = cache.encode_images(encoder, paths, args.batch_size, workers, progress=False)
        cache_s = time.perf_counter() - start
        start = time.perf_counter()
        cache.encode_images(encoder, paths, args.batch_size, workers, progress=False)
        warm_s = time.perf_counter() - start

    results = {
        "model": encoder.name,
        "n_images": len(paths),
        "batch_size": args.batch_size,
        "num_workers": workers,
        "torch_threads": torch.get_num_threads(),
        "bare_images_per_s": len(paths) / bare_s,
        "cache_images_per_s": len(paths) / cache_s,
        "cache_over_bare": bare_s / cache_s,
        "warm_cache_seconds": warm_s,
        "feature_dim": result.features.shape[1],
    }
    print(f"{encoder.name}, {len(paths)} images, batch {args.batch_size}, {workers} workers, "
          f"{torch.get_num_threads()} threads")
    print(f"bare timm loop      {results['bare_images_per_s']:7.2f} images/s")
    print(f"FeatureCache (cold) {results['cache_images_per_s']:7.2f} images/s  "
          f"ratio {results['cache_over_bare']:.3f}")
    print(f"FeatureCache (warm) {warm_s:7.3f} s for all {len(paths)} images")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
