"""``fgmm data audit``: which labels to fix, which images repeat or leak across splits, which are broken.

:func:`audit_dataset` reads a dataset root (any registered format) and writes, into an output
folder outside the dataset (the dataset is only read; nothing in it is moved, deleted or written):

* ``label_issues.csv`` — every labelled sample judged by a noisy-label filter (default:
  cross-modal agreement over the image and, where samples carry texts, their texts), worst first:
  ``rank, id, image, split, given_label, suggested_label, decision, score``;
* ``duplicates.csv`` — groups of byte-identical files (SHA-256) and of near-identical pictures
  (perceptual hash within ``max_distance`` bits, :mod:`fgmm.filters.hashing`), with ``leak = 1`` on
  groups that span more than one split (the same picture in train and test);
* ``corrupt.csv`` — files that are missing or do not decode;
* ``contact_sheet.png`` — thumbnails of the worst suspects with their given and suggested labels;
  ``duplicates.png`` the same for leaking duplicate groups;
* ``audit.json`` — the summary (counts, estimated noise rate, settings, seconds).

Images are scanned one chunk at a time on a small thread pool (decode, SHA-256, perceptual hash),
keeping per image only its hashes, so memory stays bounded by the chunk on folders of any size;
a tqdm bar shows progress. Label checking encodes the images through the feature cache (once;
later audits reuse it) and holds ``[N, d]`` features.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm.auto import tqdm

from fgmm.data.images import image_digest, load_image
from fgmm.data.sample import MultiModalDataset
from fgmm.errors import ConfigError, DataError
from fgmm.filters.base import OPEN_SET, Decision, FilterResult
from fgmm.filters.hashing import HASHES, UnionFind, near_duplicate_pairs
from fgmm.io import write_bytes_atomic, write_csv_atomic

SUMMARY_FILE = "audit.json"  # the folder itself carries fgmm's ownership marker (fgmm.ownership)
AUDIT_FILES = ("label_issues.csv", "duplicates.csv", "corrupt.csv", "contact_sheet.png", "duplicates.png",
               SUMMARY_FILE)


@dataclass
class AuditConfig:
    """Settings of :func:`audit_dataset`.

    Attributes:
        labels: look for label issues (encodes images; ``False``: files and duplicates only).
        filter: the noisy-label filter (:data:`fgmm.filters.FILTERS`).
        vision: vision encoder for the label check (any timm name; offline defaults).
        image_size: encoder input size (``None``: the encoder's default).
        cache_dir: feature cache (default: ``$FGMM_CACHE`` or ``~/.cache/fgmm/features``).
        texts: use the samples' texts as a second modality when they have any.
        hash: ``"phash"`` or ``"dhash"``.
        max_distance: Hamming distance (of 64 bits) up to which two pictures are near duplicates.
        top: suspects shown on the contact sheet.
        folds: cross-fitting folds of the out-of-sample probabilities.
        workers: scanning threads (default: CPUs, at most 8).
        chunk: images scanned per chunk (bounds memory).
        seed: of the folds.
        progress: show progress bars.
        force: add the audit's files to a non-empty folder fgmm did not create (nothing there is overwritten).
    """

    labels: bool = True
    filter: str = "crossmodal"
    vision: str = "efficientnet_lite2"
    image_size: int | None = None
    cache_dir: Path | None = None
    texts: bool = True
    hash: str = "phash"
    max_distance: int = 8
    top: int = 48
    folds: int = 5
    workers: int | None = None
    chunk: int = 256
    seed: int = 0
    progress: bool = True
    force: bool = False


@dataclass
class AuditReport:
    """What :func:`audit_dataset` found (also written to ``audit.json``)."""

    root: str
    out_dir: str
    num_samples: int = 0
    num_images: int = 0
    corrupt: int = 0
    exact_duplicate_groups: int = 0
    near_duplicate_groups: int = 0
    leaking_groups: int = 0
    label_issues: int = 0
    relabel: int = 0
    drop: int = 0
    estimated_noise_rate: float | None = None
    filter: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"audited {self.num_samples} samples ({self.num_images} images) of {self.root}",
                 f"  corrupt or missing images: {self.corrupt}",
                 f"  duplicate groups: {self.exact_duplicate_groups} byte-identical, {self.near_duplicate_groups} "
                 f"near-identical; {self.leaking_groups} span several splits (leakage)"]
        if self.filter is not None:
            rate = self.estimated_noise_rate
            rate = "" if rate is None else f", estimated noise rate {rate:.1%}"
            lines.append(f"  suspected label issues ({self.filter}): {self.label_issues} "
                         f"({self.relabel} to relabel, {self.drop} to drop){rate}")
        lines.append(f"  wrote {', '.join(self.files)} to {self.out_dir}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Scan:
    problem: str | None
    sha256: str | None = None
    phash: int | None = None


def _scan_one(path: Path, hasher) -> _Scan:
    try:
        with load_image(path) as image:
            perceptual = hasher(image)
        return _Scan(None, image_digest(path), perceptual)
    except DataError as exc:
        return _Scan(exc.problem)


def scan_files(paths: Sequence[Path], hash_name: str = "phash", workers: int | None = None, chunk: int = 256,
               progress: bool = True) -> Iterator[_Scan]:
    """Decode and hash ``paths`` in order, ``chunk`` at a time on ``workers`` threads (a tqdm bar)."""
    hasher = HASHES.get(hash_name)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(paths), unit="img", desc="scanning images", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            for scan in pool.map(lambda p: _scan_one(p, hasher), paths[start:start + chunk]):
                bar.update(1)
                yield scan


def _claim_out_dir(root: Path, out_dir: Path, force: bool) -> None:
    """Refuse an output folder inside the dataset; claim it as an fgmm ``audit`` folder
    (:func:`fgmm.ownership.claim_folder`: new, empty or an earlier audit's; ``force`` for others)."""
    from fgmm.ownership import claim_folder

    root_resolved, out_resolved = root.resolve(), out_dir.resolve()
    if out_resolved == root_resolved or root_resolved in out_resolved.parents:
        raise ConfigError(f"{out_dir}: the audit never writes into the dataset folder {root}; choose an "
                          "output folder outside it (--out)")
    claim_folder(out_dir, "audit", force=force, reserved=AUDIT_FILES, what="audit folder (--out)")


def _split_of(dataset: MultiModalDataset, i: int) -> str:
    return dataset.split[i] if dataset.split else ""


def _class_name(dataset: MultiModalDataset, label: int) -> str:
    if label == OPEN_SET:
        return "(none of the classes)"
    return dataset.class_names[label] if 0 <= label < dataset.num_classes else ""


def duplicate_groups(dataset: MultiModalDataset, indices: Sequence[int], scans: Sequence[_Scan],
                     max_distance: int) -> list[dict[str, Any]]:
    """Groups of exact (same SHA-256) and near (perceptual hash) duplicates among ``indices``.

    Each group: ``{"kind", "members" (dataset indices), "distance" (largest pair distance found),
    "leak" (spans several splits)}``. A near group lists pictures linked by near-duplicate pairs that
    are not all byte-identical.
    """
    groups: list[dict[str, Any]] = []
    by_digest: dict[str, list[int]] = defaultdict(list)
    for i, scan in zip(indices, scans, strict=True):
        by_digest[scan.sha256].append(i)
    exact_key = {i: digest for digest, members in by_digest.items() for i in members}
    for members in by_digest.values():
        if len(members) > 1:
            groups.append({"kind": "exact", "members": members, "distance": 0})
    # near duplicates: one representative per byte-identical group
    representatives = [members[0] for members in by_digest.values()]
    position = {i: k for k, i in enumerate(indices)}
    hashes = np.array([scans[position[i]].phash for i in representatives], dtype=np.uint64)
    pairs = near_duplicate_pairs(hashes, max_distance)
    union = UnionFind(len(representatives))
    for a, b, _ in pairs:
        union.union(a, b)
    distance: dict[int, int] = defaultdict(int)
    for a, _, d in pairs:
        distance[union.find(a)] = max(distance[union.find(a)], d)
    linked: dict[int, list[int]] = defaultdict(list)
    for k in range(len(representatives)):
        linked[union.find(k)].append(k)
    for group_root, members in linked.items():
        if len(members) > 1:
            samples = sorted(i for k in members for i in by_digest[exact_key[representatives[k]]])
            groups.append({"kind": "near", "members": samples, "distance": distance[group_root]})
    for group in groups:
        group["leak"] = len({_split_of(dataset, i) for i in group["members"]}) > 1
    return sorted(groups, key=lambda g: (not g["leak"], g["kind"], g["members"][0]))


def _label_result(dataset: MultiModalDataset, good: list[int], config: AuditConfig) -> tuple[np.ndarray, FilterResult]:
    """The filter's decisions on the labelled, readable samples (returns their dataset indices too)."""
    from fgmm.cache import FeatureCache
    from fgmm.filters.recipe import clean_labels, sample_text_features
    from fgmm.pipeline import default_cache_dir, encode_dataset_images

    labelled = np.array([i for i in good if dataset[i].label >= 0], dtype=np.int64)
    counts = np.bincount(dataset.labels[labelled], minlength=dataset.num_classes) if len(labelled) else []
    if len(labelled) < 2 * config.folds or (np.asarray(counts) > 0).sum() < 2:
        raise DataError(dataset.root, f"too few labelled images to check labels ({len(labelled)} in "
                                      f"{int((np.asarray(counts) > 0).sum())} classes); use --no-labels")
    subset = dataset.subset(labelled.tolist())
    cache = FeatureCache(config.cache_dir or default_cache_dir())
    _, image_features, _ = encode_dataset_images(subset, cache, vision=config.vision, image_size=config.image_size,
                                                 progress=config.progress)
    features, masks = {"image": image_features}, {}
    if config.texts and any(s.texts for s in subset):
        features["text"], masks["text"] = sample_text_features(subset.samples, cache=cache)
    result = clean_labels(features, subset.labels, dataset.num_classes, config.filter, masks=masks,
                          folds=min(config.folds, int(np.bincount(subset.labels).max())), seed=config.seed)
    return labelled, result


def _thumbnail(path: Path, size: int) -> Image.Image:
    try:
        with load_image(path) as image:
            image.thumbnail((size, size))
            tile = Image.new("RGB", (size, size), (245, 245, 245))
            tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
            return tile
    except DataError:
        return Image.new("RGB", (size, size), (200, 200, 200))


def contact_sheet(items: Sequence[tuple[Path, Sequence[str]]], path: Path, columns: int = 6,
                  thumb: int = 160) -> Path:
    """A PNG grid of image thumbnails, each with a few caption lines under it (written atomically)."""
    font = ImageFont.load_default()
    lines = max((len(caption) for _, caption in items), default=1)
    cell_h = thumb + 6 + 12 * lines
    rows = max(1, -(-len(items) // columns))
    sheet = Image.new("RGB", (columns * (thumb + 8) + 8, rows * (cell_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    chars = max(8, thumb // 6)
    for k, (image_path, caption) in enumerate(items):
        x, y = 8 + (k % columns) * (thumb + 8), 8 + (k // columns) * (cell_h + 8)
        sheet.paste(_thumbnail(image_path, thumb), (x, y))
        for j, text in enumerate(caption):
            text = text if len(text) <= chars else text[:chars - 3] + "..."
            draw.text((x, y + thumb + 4 + 12 * j), text, fill=(20, 20, 20) if j else (180, 20, 20), font=font)
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG")
    return write_bytes_atomic(path, buffer.getvalue())


def audit_dataset(root: str | Path, out_dir: str | Path, config: AuditConfig | None = None,
                  dataset: MultiModalDataset | None = None) -> AuditReport:
    """Audit the dataset at ``root`` (module docstring); returns the report also written to ``audit.json``.

    Raises:
        ConfigError: ``out_dir`` lies inside the dataset.
        OwnershipError: ``out_dir`` holds files fgmm did not write (without ``force``, or clashing names).
        DataError: the dataset cannot be loaded.
    """
    from fgmm.data import load_dataset

    config = config or AuditConfig()
    root, out_dir = Path(root).expanduser(), Path(out_dir).expanduser()
    dataset = dataset or load_dataset(root)  # a bad root fails before any folder is created
    _claim_out_dir(root, out_dir, config.force)
    start = time.perf_counter()
    report = AuditReport(root=str(root), out_dir=str(out_dir), num_samples=len(dataset),
                         settings={k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()})
    with_image = [i for i, s in enumerate(dataset) if s.image is not None]
    report.num_images = len(with_image)
    scans = list(scan_files([dataset[i].image for i in with_image], config.hash, config.workers, config.chunk,
                            config.progress))
    report.seconds["scan"] = round(time.perf_counter() - start, 3)
    good = [i for i, s in zip(with_image, scans, strict=True) if s.problem is None]
    good_scans = [s for s in scans if s.problem is None]
    corrupt = [(dataset[i].id, str(dataset[i].image), s.problem) for i, s in zip(with_image, scans, strict=True)
               if s.problem is not None]
    report.corrupt = len(corrupt)
    write_csv_atomic(out_dir / "corrupt.csv", ["id", "image", "problem"], corrupt)
    groups = duplicate_groups(dataset, good, good_scans, config.max_distance)
    report.exact_duplicate_groups = sum(g["kind"] == "exact" for g in groups)
    report.near_duplicate_groups = sum(g["kind"] == "near" for g in groups)
    report.leaking_groups = sum(g["leak"] for g in groups)
    write_csv_atomic(out_dir / "duplicates.csv",
                     ["group", "kind", "max_distance", "leak", "id", "image", "split", "label"],
                     ([n, g["kind"], g["distance"], int(g["leak"]), dataset[i].id, str(dataset[i].image),
                       _split_of(dataset, i), _class_name(dataset, dataset[i].label)]
                      for n, g in enumerate(groups) for i in g["members"]))
    leaks = [g for g in groups if g["leak"]][: max(1, config.top // 2)]
    files = ["corrupt.csv", "duplicates.csv"]
    if leaks:
        contact_sheet([(dataset[i].image, [f"group {n} ({g['kind']})", dataset[i].id, _split_of(dataset, i),
                                           _class_name(dataset, dataset[i].label)])
                       for n, g in enumerate(leaks) for i in g["members"][:6]], out_dir / "duplicates.png")
        files.append("duplicates.png")
    if config.labels:
        t0 = time.perf_counter()
        indices, result = _label_result(dataset, good, config)
        report.seconds["labels"] = round(time.perf_counter() - t0, 3)
        report.filter = result.name
        counts = result.counts()
        report.label_issues, report.relabel, report.drop = int(result.flagged.sum()), counts["relabel"], counts["drop"]
        report.estimated_noise_rate = result.info.get("noise_rate")
        order = np.lexsort((-result.scores, ~result.flagged))
        write_csv_atomic(out_dir / "label_issues.csv",
                         ["rank", "id", "image", "split", "given_label", "suggested_label", "decision", "score"],
                         ([rank + 1, dataset[indices[k]].id, str(dataset[indices[k]].image),
                           _split_of(dataset, indices[k]), _class_name(dataset, dataset[indices[k]].label),
                           _class_name(dataset, int(result.suggested[k])),
                           Decision(int(result.decisions[k])).name.lower(), f"{result.scores[k]:.4f}"]
                          for rank, k in enumerate(order)))
        worst = [k for k in order[: config.top] if result.flagged[k]]
        contact_sheet([(dataset[indices[k]].image,
                        [f"#{rank + 1} {Decision(int(result.decisions[k])).name.lower()} ({result.scores[k]:.2f})",
                         f"given: {_class_name(dataset, dataset[indices[k]].label)}",
                         f"suggested: {_class_name(dataset, int(result.suggested[k]))}", dataset[indices[k]].id])
                       for rank, k in enumerate(worst)], out_dir / "contact_sheet.png")
        files += ["label_issues.csv", "contact_sheet.png"]
    report.seconds["total"] = round(time.perf_counter() - start, 3)
    report.files = [*files, SUMMARY_FILE]
    write_bytes_atomic(out_dir / SUMMARY_FILE, json.dumps(asdict(report), indent=2) + "\n")
    return report
