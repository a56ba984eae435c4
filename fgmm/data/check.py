"""``fgmm data check``: what a dataset holds and what is wrong with it.

:func:`check_dataset` loads a root (any registered format, auto-detected) or takes a loaded
dataset and reports counts, modalities, classes without images, files that are missing, and with
``deep=True`` every image fully decoded (corrupt files) and hashed (duplicate groups).
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fgmm.data.images import image_digest, load_image
from fgmm.data.sample import MultiModalDataset
from fgmm.errors import DataError


@dataclass(frozen=True)
class ImageScan:
    """The outcome of decoding one image: ``problem`` is ``None`` when it decoded."""

    path: Path
    problem: str | None
    size: tuple[int, int] | None = None
    digest: str | None = None


def _scan(path: Path, digest: bool) -> ImageScan:
    try:
        with load_image(path) as image:
            size = image.size
        return ImageScan(path, None, size, image_digest(path) if digest else None)
    except DataError as exc:
        return ImageScan(path, exc.problem)


def scan_images(paths: Iterable[Path], *, digest: bool = False, workers: int | None = None,
                progress: bool = False) -> list[ImageScan]:
    """Fully decode every image (and hash it when ``digest``), in order, on a small thread pool.

    Decoding releases the GIL in Pillow, so threads scale with cores; ``workers`` defaults to the
    number of CPUs (at most 8). ``progress`` shows a bar (on stderr).
    """
    from tqdm.auto import tqdm

    paths = list(paths)
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        scans = pool.map(lambda p: _scan(p, digest), paths, chunksize=32)
        return list(tqdm(scans, total=len(paths), desc="checking images", unit="img", disable=not progress))


@dataclass
class CheckReport:
    """What :func:`check_dataset` found. ``ok`` is false when something is broken (``errors``);
    ``warnings`` are worth reading but do not stop training.

    Files that the metadata names but that are absent (``left_out`` by the loader) are errors, unless
    ``allow_subset`` says the root is meant to hold only part of the dataset; then they are warnings.
    """

    root: str | None
    dataset_format: str
    name: str
    num_samples: int = 0
    num_classes: int = 0
    split_protocol: str = "none"
    split_counts: dict[str, int] = field(default_factory=dict)
    modality_counts: dict[str, int] = field(default_factory=dict)
    num_recordings: int = 0
    unseen_classes: list[str] = field(default_factory=list)
    classes_without_images: list[str] = field(default_factory=list)
    left_out: dict[str, int] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)
    skipped_bad: list[dict] = field(default_factory=list)
    corrupt_images: list[dict] = field(default_factory=list)
    duplicate_images: list[list[str]] = field(default_factory=list)
    boxes_past_border: int = 0
    load_error: str | None = None
    deep: bool = False
    allow_subset: bool = False
    seconds: float = 0.0

    @property
    def errors(self) -> list[str]:
        out = [f"cannot load: {self.load_error}"] if self.load_error else []
        if self.missing_files:
            out.append(f"{len(self.missing_files)} file(s) referenced by samples are missing, "
                       f"e.g. {self.missing_files[0]}")
        if self.corrupt_images:
            out.append(f"{len(self.corrupt_images)} image(s) cannot be decoded, e.g. "
                       f"{self.corrupt_images[0]['path']}: {self.corrupt_images[0]['problem']}")
        if not self.allow_subset:
            out += [f"{message} (pass --allow-subset / allow_subset=True if the root holds only part of the data)"
                    for message in self._absent()]
        return out

    def _absent(self) -> list[str]:
        return [f"{count} {kind} file(s) named by the metadata are absent (left out by the loader)"
                for kind, count in self.left_out.items() if count]

    @property
    def warnings(self) -> list[str]:
        out = []
        if self.classes_without_images:
            out.append(f"{len(self.classes_without_images)} class(es) have no images, e.g. "
                       f"{self.classes_without_images[0]}")
        if self.allow_subset:
            out += self._absent()
        if self.skipped_bad:
            out.append(f"{len(self.skipped_bad)} unreadable file(s) were skipped by the loader")
        if self.duplicate_images:
            out.append(f"{sum(len(g) for g in self.duplicate_images)} images in {len(self.duplicate_images)} "
                       f"group(s) have identical content, e.g. {' = '.join(self.duplicate_images[0][:3])}")
        if self.boxes_past_border:
            out.append(f"{self.boxes_past_border} bounding box(es) reach past the image border "
                       "(fgmm.data.cub.clip_bbox clips them)")
        return out

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "errors": self.errors, "warnings": self.warnings}

    def format(self) -> str:
        """A plain-text report, one fact per line."""
        lines = [f"dataset {self.name} ({self.dataset_format}) at {self.root}",
                 f"  samples {self.num_samples}, classes {self.num_classes}, "
                 f"recordings {self.num_recordings}",
                 f"  split {self.split_protocol}: "
                 + (", ".join(f"{k} {v}" for k, v in self.split_counts.items()) or "unsplit"),
                 "  modalities: " + ", ".join(f"{k} {v}" for k, v in self.modality_counts.items())]
        if self.unseen_classes:
            lines.append(f"  unseen (zero-shot) classes: {len(self.unseen_classes)}")
        lines.append(f"  images decoded: {'yes' if self.deep else 'no (run with deep=True)'}; "
                     f"checked in {self.seconds:.1f} s")
        lines += [f"ERROR   {message}" for message in self.errors]
        lines += [f"WARNING {message}" for message in self.warnings]
        lines.append("OK" if self.ok else "NOT OK")
        return "\n".join(lines)


def _fill(report: CheckReport, dataset: MultiModalDataset, deep: bool, workers: int | None,
          progress: bool = False) -> None:
    report.num_samples, report.num_classes = len(dataset), dataset.num_classes
    report.split_protocol = dataset.split_protocol
    report.split_counts = {part: dataset.split.count(part) for part in dict.fromkeys(dataset.split)}
    report.modality_counts = dataset.modality_counts()
    report.num_recordings = len(dataset.recordings)
    report.unseen_classes = [dataset.class_names[i] for i in dataset.unseen_classes]
    with_images = {s.label for s in dataset.samples if s.image is not None}
    report.classes_without_images = [name for i, name in enumerate(dataset.class_names)
                                     if i not in with_images]
    report.left_out = {kind: len(paths) for kind, paths in dataset.meta.get("missing", {}).items()}
    report.skipped_bad = list(dataset.meta.get("skipped_bad", []))
    referenced = [path for s in [*dataset.samples, *dataset.recordings] for path in (s.image, s.audio)
                  if path is not None]
    report.missing_files = [str(p) for p in referenced if not p.is_file()]
    if not deep:
        return
    missing = set(report.missing_files)
    with_image = [s for s in dataset.samples if s.image is not None and str(s.image) not in missing]
    scans = scan_images([s.image for s in with_image], digest=True, workers=workers, progress=progress)
    groups: dict[str, list[str]] = defaultdict(list)
    for sample, scan in zip(with_image, scans, strict=True):
        if scan.problem is not None:
            report.corrupt_images.append({"path": str(scan.path), "problem": scan.problem})
            continue
        groups[scan.digest].append(str(scan.path))
        box = sample.meta.get("bbox")
        if box is not None and (box[0] < 0 or box[1] < 0 or box[0] + box[2] > scan.size[0]
                                or box[1] + box[3] > scan.size[1]):
            report.boxes_past_border += 1
    report.duplicate_images = sorted(group for group in groups.values() if len(group) > 1)


def check_dataset(dataset_or_root: MultiModalDataset | str | Path, *, deep: bool = True,
                  format: str | None = None, workers: int | None = None, allow_subset: bool = False,
                  progress: bool = False) -> CheckReport:
    """Check a dataset or a dataset root (format auto-detected unless ``format`` is given).

    A root that fails to load gives a report with ``load_error`` set (and ``ok`` false) rather
    than an exception. ``deep`` decodes and hashes every image (about 2 ms per CUB image and core).
    ``allow_subset`` turns files named by the metadata but absent from errors into warnings. ``progress``
    shows a bar (on stderr) while the images are decoded.
    """
    from fgmm.data import load_dataset  # the format registry imports the loaders, which import us

    start = time.perf_counter()
    dataset = dataset_or_root
    if not isinstance(dataset, MultiModalDataset):
        try:
            dataset = load_dataset(dataset_or_root, format=format)
        except DataError as exc:
            return CheckReport(root=str(dataset_or_root), dataset_format=format or "unknown", name="?",
                               load_error=str(exc), seconds=time.perf_counter() - start, allow_subset=allow_subset)
    report = CheckReport(root=str(dataset.root) if dataset.root else None,
                         dataset_format=dataset.meta.get("format", "folder"), name=dataset.name, deep=deep,
                         allow_subset=allow_subset)
    _fill(report, dataset, deep, workers, progress)
    report.seconds = time.perf_counter() - start
    return report
