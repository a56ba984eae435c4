"""Image encoding throughput: a bare timm forward loop vs ``FeatureCache.encode_images`` (cold cache).

Both paths decode with the same DataLoader (``fgmm.data.images.image_loader``: same transform, batch
size and workers), so the ratio measures the cache's overhead (keys, fingerprint, shard writes, the
final read-back). Files are read once beforehand so that both runs find them in the OS page cache.
The runs go in the order bare, cache, cache, bare (each cache run into a new, empty folder) so that
a load that drifts during the benchmark weighs on both alike, and CPU seconds (this process plus its
finished DataLoader workers) are reported next to wall time: on a shared machine they are the
steadier measure.

Example::

    python benchmarks/encode_throughput.py --root /work/shared/data/cub200 --n 200 --out throughput.json
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from collections.abc import Callable
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


def bare_loop(encoder: TimmVisionEncoder, paths: list[Path], batch_size: int, num_workers: int) -> None:
    """Decoding + a plain ``model(x)`` loop over ``paths``."""
    with torch.inference_mode():
        for batch in image_loader(paths, encoder.transform(), batch_size, num_workers):
            encoder.model(batch.images)


def encode_with_cache(cache: FeatureCache, encoder: TimmVisionEncoder, paths: list[Path], batch_size: int,
               num_workers: int) -> None:
    """``FeatureCache.encode_images`` into ``cache``."""
    cache.encode_images(encoder, paths, batch_size, num_workers, progress=False)


def measure(run: Callable[[], None]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process + its finished child processes) of ``run()``."""
    def cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    wall, used = time.perf_counter(), cpu()
    run()
    return time.perf_counter() - wall, cpu() - used


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

    totals = {"bare": [0.0, 0.0], "cache": [0.0, 0.0]}
    with tempfile.TemporaryDirectory() as folder:
        for round_, name in enumerate(("bare", "cache", "cache", "bare")):
            cache = FeatureCache(Path(folder) / str(round_))  # a new, empty cache for each run
            if name == "bare":
                wall, cpu = measure(lambda: bare_loop(encoder, paths, args.batch_size, workers))
            else:
                wall, cpu = measure(lambda c=cache: encode_with_cache(c, encoder, paths, args.batch_size, workers))
                warm_cache = cache
            totals[name][0] += wall
            totals[name][1] += cpu
            print(f"  {name:5s} {wall:7.1f} s wall {cpu:7.1f} s cpu", flush=True)
        warm_s, _ = measure(lambda: encode_with_cache(warm_cache, encoder, paths, args.batch_size, workers))

    n = 2 * len(paths)  # each method ran twice
    (bare_wall, bare_cpu), (cache_wall, cache_cpu) = totals["bare"], totals["cache"]
    results = {
        "model": encoder.name,
        "n_images": len(paths),
        "batch_size": args.batch_size,
        "num_workers": workers,
        "torch_threads": torch.get_num_threads(),
        "bare_images_per_s": n / bare_wall,
        "cache_images_per_s": n / cache_wall,
        "cache_over_bare": bare_wall / cache_wall,
        "bare_images_per_cpu_s": n / bare_cpu,
        "cache_images_per_cpu_s": n / cache_cpu,
        "cache_over_bare_cpu": bare_cpu / cache_cpu,
        "warm_cache_seconds": warm_s,
    }
    print(f"{encoder.name}, {len(paths)} images x 2 runs each, batch {args.batch_size}, {workers} workers, "
          f"{torch.get_num_threads()} threads")
    print(f"bare timm loop      {results['bare_images_per_s']:7.2f} images/s  "
          f"{results['bare_images_per_cpu_s']:7.2f} images/cpu-s")
    print(f"FeatureCache (cold) {results['cache_images_per_s']:7.2f} images/s  "
          f"{results['cache_images_per_cpu_s']:7.2f} images/cpu-s")
    print(f"ratio cache/bare    {results['cache_over_bare']:7.3f} (wall)    "
          f"{results['cache_over_bare_cpu']:7.3f} (cpu)")
    print(f"FeatureCache (warm) {warm_s:7.3f} s for all {len(paths)} images")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
