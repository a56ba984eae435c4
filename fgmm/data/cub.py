"""CUB-200-2011 in its official layout, with Reed et al. captions and xeno-canto recordings.

Layout (datasets/cub200.md)::

    root/
      attributes.txt                       "attribute_id has_part::value" (also accepted under CUB_200_2011/
                                           or CUB_200_2011/attributes/)
      CUB_200_2011/
        images.txt  classes.txt  image_class_labels.txt  train_test_split.txt   (required)
        bounding_boxes.txt                                                      (optional)
        images/<NNN.Class_Name>/<file>.jpg                                      (any subset)
        attributes/class_attribute_labels_continuous.txt                        (optional)
        parts/parts.txt  parts/part_locs.txt                                    (optional)
      text_c10/<NNN.Class_Name>/<image stem>.txt   captions, one per line      (optional)
      audio/recordings.csv + audio files          class-level recordings       (optional)
      image_locations.csv                         per-image place/date/record  (optional)

Images listed in ``images.txt`` but absent from ``images/`` are left out, counted and listed in
``dataset.meta["missing"]["image"]`` and logged as a warning. Metadata is parsed in one vectorised
pass per file; a malformed row is then located and reported with its line number.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np

from fgmm.data.check import scan_images
from fgmm.data.folder import read_text_lines, resolve_inside
from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.data.splits import holdout_protocol, holdout_split
from fgmm.errors import DataError
from fgmm.geo.metadata import read_image_locations

logger = logging.getLogger(__name__)

CUB_DIR = "CUB_200_2011"
ATTRIBUTE_MATRIX = "attributes/class_attribute_labels_continuous.txt"
ATTRIBUTE_NAME_PLACES = ("attributes.txt", f"{CUB_DIR}/attributes.txt",
                         f"{CUB_DIR}/attributes/attributes.txt")
CAPTIONS_DIR = "text_c10"
#: CUB class ids (1-based) of the 50 classes with Reed et al. captions, the usual unseen classes of
#: zero-shot benchmarks (DS-SJE); ``class_id - 1`` is the label.
CUB_CAPTION_CLASS_IDS: tuple[int, ...] = (
    1, 4, 6, 8, 9, 14, 23, 29, 31, 33, 34, 35, 36, 37, 38, 43, 49, 51, 53, 66, 72, 79, 83, 84, 86, 91, 95, 96,
    98, 101, 102, 103, 112, 114, 119, 121, 130, 135, 138, 147, 156, 163, 165, 166, 180, 183, 185, 186, 187, 197,
)
RECORDINGS_CSV = "audio/recordings.csv"
LOCATIONS_CSV = "image_locations.csv"


def is_cub_root(root: str | Path) -> bool:
    """Whether ``root`` (or its parent, when ``root`` is ``CUB_200_2011`` itself) is a CUB root."""
    root = Path(root)
    return (root / CUB_DIR / "images.txt").is_file() or (
        root.name == CUB_DIR and (root / "images.txt").is_file())


def clip_bbox(bbox: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    """Clip an ``(x, y, w, h)`` box in pixels to a ``width`` x ``height`` image.

    The loader stores the official boxes unclipped (it does not open images); 14 official train
    boxes reach up to 26 px past the border, so crop code calls this with the decoded image size.
    """
    x0, y0 = min(max(bbox[0], 0.0), width), min(max(bbox[1], 0.0), height)
    x1, y1 = min(max(bbox[0] + bbox[2], 0.0), width), min(max(bbox[1] + bbox[3], 0.0), height)
    return x0, y0, x1 - x0, y1 - y0


_CLASS_PREFIX = re.compile(r"(\d+)\.")
_WHITESPACE = np.frombuffer(b" \t\r\n\v\f", dtype=np.uint8)


def _bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(path, "required CUB metadata file is missing") from None


def _text(path: Path) -> str:
    try:
        return _bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 (byte {exc.start})") from None


def _numbers(path: Path, width: int | None, integer_columns: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A whitespace-separated numeric table as ``[rows, width]`` float64 plus each row's line number.

    The first ``integer_columns`` columns must hold whole numbers; ``width=None`` takes the width
    of the first row. Fields per line are counted with numpy over the raw bytes and all tokens are
    parsed by one ``map(float)``, so 90k-row files take tens of milliseconds; a bad row is then
    located by its token's line.
    """
    raw = _bytes(path)
    data = np.frombuffer(raw, dtype=np.uint8)
    space = np.isin(data, _WHITESPACE)
    starts = ~space
    starts[1:] &= space[:-1]
    token_line = np.cumsum(data == 10)[starts]
    counts = np.bincount(token_line)
    row_lines = np.nonzero(counts)[0]
    fields = counts[row_lines]
    width = width if width is not None else (int(fields[0]) if fields.size else 0)
    wrong = np.nonzero(fields != width)[0]
    if wrong.size:
        row = int(wrong[0])
        raise DataError(path, f"malformed row: expected {width} fields, found {int(fields[row])}",
                        int(row_lines[row]) + 1)
    tokens = raw.split()
    try:
        values = np.array(list(map(float, tokens)), dtype=np.float64)
    except ValueError:
        for index, token in enumerate(tokens):
            if not _is_float(token):
                raise DataError(path, f"malformed row: '{token.decode(errors='replace')}' is not a number",
                                int(token_line[index]) + 1) from None
        raise
    infinite = np.nonzero(~np.isfinite(values))[0]
    if infinite.size:
        index = int(infinite[0])
        raise DataError(path, f"malformed row: '{tokens[index].decode(errors='replace')}' is not a finite number",
                        int(token_line[index]) + 1)
    table = values.reshape(len(row_lines), width)
    whole = table[:, :integer_columns]
    not_whole = np.nonzero(~np.all(np.isfinite(whole) & (whole == np.round(whole)), axis=1))[0]
    if not_whole.size:
        raise DataError(path, "malformed row: ids must be whole numbers", int(row_lines[not_whole[0]]) + 1)
    return table, row_lines + 1


def _is_float(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _named(path: Path, spaces: bool = False) -> list[tuple[int, int, str]]:
    """Rows ``"<integer id> <name>"`` as ``(line, id, name)``; the name may contain spaces only when
    ``spaces`` (part names do; paths, class folders and attribute names never do)."""
    rows = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split(maxsplit=1) if spaces else line.split()
        if len(fields) != 2 or not fields[0].isdigit():
            found = f"{len(fields)} fields in" if len(fields) > 2 else "found"
            raise DataError(path, f"malformed row: expected '<id> <name>', {found} '{line.strip()}'", number)
        rows.append((number, int(fields[0]), fields[1].strip()))
    return rows


def _by_id(path: Path, table: np.ndarray, lines: list[int]) -> dict[int, int]:
    """Map image id (column 0) to row index, refusing repeated ids."""
    index: dict[int, int] = {}
    for row, image_id in enumerate(table[:, 0].astype(np.int64).tolist()):
        if image_id in index:
            raise DataError(path, f"image id {image_id} repeats line {int(lines[index[image_id]])}",
                            int(lines[row]))
        index[image_id] = row
    return index


def _classes(meta_dir: Path) -> list[str]:
    path = meta_dir / "classes.txt"
    rows = _named(path)
    ids = [class_id for _, class_id, _ in rows]
    if sorted(ids) != list(range(1, len(ids) + 1)):
        raise DataError(path, f"class ids must be 1..{len(ids)}, each once")
    if not rows:
        raise DataError(path, "no classes listed")
    folders = [""] * len(rows)
    for line, class_id, folder in rows:
        number = _CLASS_PREFIX.match(folder)
        if number and int(number.group(1)) != class_id:
            raise DataError(path, f"class id {class_id} names folder '{folder}', whose number is "
                                  f"{int(number.group(1))}: are two rows swapped?", line)
        folders[class_id - 1] = folder
    return folders


def readable_name(folder: str) -> str:
    """``"001.Black_footed_Albatross"`` -> ``"Black footed Albatross"``."""
    return folder.split(".", 1)[-1].replace("_", " ")


class _CubReader:
    """Reads one CUB root; each method adds one kind of annotation to the present samples."""

    def __init__(self, root: Path, meta_dir: Path):
        self.root, self.meta_dir = root, meta_dir
        self.images_dir = meta_dir / "images"
        self.folders = _classes(meta_dir)
        self.missing: dict[str, list[str]] = {"image": [], "text": [], "audio": []}
        self.absent_files: list[str] = []

    def check_image_folders(self) -> None:
        """Every class folder under ``images/`` must be a class of classes.txt."""
        if not self.images_dir.is_dir():
            return
        known = set(self.folders)
        for entry in sorted(os.scandir(self.images_dir), key=lambda e: e.name):
            if entry.is_dir() and not entry.name.startswith(".") and entry.name not in known:
                raise DataError(Path(entry.path), f"image folder is not a class of {self.meta_dir}/classes.txt "
                                                  f"({len(known)} classes listed)")

    def optional(self, relpath: str) -> Path | None:
        path = self.meta_dir / relpath
        if path.is_file():
            return path
        self.absent_files.append(str(path))
        return None

    def samples(self, require_images: bool) -> tuple[list[Sample], list[int], int]:
        """Samples of the images present (all listed ones when ``require_images`` is false),
        their official ``is_train`` flags and the number of rows in images.txt."""
        self.check_image_folders()
        images_txt = self.meta_dir / "images.txt"
        listed = _named(images_txt)
        if not listed:
            raise DataError(images_txt, "no images listed: the dataset is empty")
        labels_path = self.meta_dir / "image_class_labels.txt"
        split_path = self.meta_dir / "train_test_split.txt"
        labels, label_lines = _numbers(labels_path, 2, 2)
        split, split_lines = _numbers(split_path, 2, 2)
        label_of, split_of = _by_id(labels_path, labels, label_lines), _by_id(split_path, split, split_lines)
        out_of_range = np.nonzero((labels[:, 1] < 1) | (labels[:, 1] > len(self.folders)))[0]
        if out_of_range.size:
            row = int(out_of_range[0])
            raise DataError(labels_path, f"class id {int(labels[row, 1])} is out of range "
                                         f"1..{len(self.folders)}", int(label_lines[row]))
        not_flag = np.nonzero(~np.isin(split[:, 1], (0, 1)))[0]
        if not_flag.size:
            raise DataError(split_path, "is_train must be 0 or 1", int(split_lines[int(not_flag[0])]))
        present_in: dict[str, set[str]] = {}
        samples, is_train, seen = [], [], {}
        for line, image_id, relpath in listed:
            if image_id in seen:
                raise DataError(images_txt, f"image id {image_id} repeats line {seen[image_id]}", line)
            seen[image_id] = line
            for path, index in ((labels_path, label_of), (split_path, split_of)):
                if image_id not in index:
                    raise DataError(path, f"no row for image id {image_id} (images.txt line {line})")
            path = resolve_inside(self.images_dir, relpath, source=images_txt, line=line)
            folder, _, name = relpath.replace("\\", "/").rpartition("/")
            class_id = int(labels[label_of[image_id], 1])
            if folder != self.folders[class_id - 1]:
                raise DataError(labels_path, f"image id {image_id} is labelled {class_id} "
                                             f"({self.folders[class_id - 1]}) but images.txt line {line} puts it in "
                                             f"folder '{folder}'", int(label_lines[label_of[image_id]]))
            if folder not in present_in:
                directory = self.images_dir / folder
                present_in[folder] = set(os.listdir(directory)) if directory.is_dir() else set()
            present = name in present_in[folder]
            if not present:
                self.missing["image"].append(relpath)
                if require_images:
                    continue
            samples.append(Sample(
                id=str(image_id), label=class_id - 1,
                image=path if present else None,
                meta={"class_id": class_id, "class_folder": self.folders[class_id - 1], "relpath": relpath}))
            is_train.append(int(split[split_of[image_id], 1]))
        return samples, is_train, len(listed)

    def add_boxes(self, samples: list[Sample]) -> None:
        path = self.optional("bounding_boxes.txt")
        if path is None:
            return
        boxes, lines = _numbers(path, 5)
        row_of = _by_id(path, boxes, lines)
        for sample in samples:
            row = row_of.get(int(sample.id))
            if row is not None:
                sample.meta["bbox"] = tuple(boxes[row, 1:].tolist())

    def add_parts(self, samples: list[Sample]) -> list[str]:
        """Set ``meta["parts"]``: a float32 ``[num_parts, 3]`` array of ``(x, y, visible)`` rows in
        the order of the returned part names (zeros for parts without a row)."""
        names_path, locs_path = self.optional("parts/parts.txt"), self.optional("parts/part_locs.txt")
        if names_path is None or locs_path is None:
            return []
        names = {part_id: name for _, part_id, name in _named(names_path, spaces=True)}
        part_ids = np.array(sorted(names))
        locs, lines = _numbers(locs_path, 5, 2)
        unknown = np.nonzero(~np.isin(locs[:, 1], part_ids))[0]
        if unknown.size:
            raise DataError(locs_path, f"part id {int(locs[unknown[0], 1])} is not in {names_path.name}",
                            int(lines[unknown[0]]))
        image_ids = np.array([int(s.id) for s in samples])
        order = np.argsort(image_ids)
        locs = locs[np.isin(locs[:, 0], image_ids)]
        table = np.zeros((len(samples), len(part_ids), 3), dtype=np.float32)
        rows = order[np.searchsorted(image_ids[order], locs[:, 0])]
        table[rows, np.searchsorted(part_ids, locs[:, 1])] = locs[:, 2:5]
        for sample, parts in zip(samples, table, strict=True):
            sample.meta["parts"] = parts
        return [names[int(part_id)] for part_id in part_ids]

    def attributes(self) -> tuple[list[str], np.ndarray | None]:
        matrix_path = self.optional(ATTRIBUTE_MATRIX)
        if matrix_path is None:
            return [], None
        names_path = next((self.root / p for p in ATTRIBUTE_NAME_PLACES if (self.root / p).is_file()), None)
        if names_path is None:
            raise DataError(matrix_path, "attribute names are missing: expected one of "
                                         + ", ".join(str(self.root / p) for p in ATTRIBUTE_NAME_PLACES))
        rows = _named(names_path)
        if [attribute_id for _, attribute_id, _ in rows] != list(range(1, len(rows) + 1)):
            raise DataError(names_path, f"attribute ids must be 1..{len(rows)} in order")
        matrix, _ = _numbers(matrix_path, len(rows), 0)
        if matrix.shape[0] != len(self.folders):
            raise DataError(matrix_path, f"{matrix.shape[0]} rows for {len(self.folders)} classes")
        if matrix.size and (matrix.min() < 0 or matrix.max() > 100):
            raise DataError(matrix_path, "values must be percentages in [0, 100]")
        return [name for _, _, name in rows], (matrix / 100.0).astype(np.float32)

    def add_captions(self, samples: list[Sample], skip_bad: bool, skipped: list[dict]) -> int:
        """Attach Reed captions; return the number of caption files whose image is not present."""
        text_dir = self.root / CAPTIONS_DIR
        if not text_dir.is_dir():
            self.absent_files.append(str(text_dir))
            return 0
        by_folder: dict[str, dict[str, Sample]] = defaultdict(dict)
        for sample in samples:
            stem = os.path.splitext(os.path.basename(sample.meta["relpath"]))[0]
            by_folder[sample.meta["class_folder"]][stem] = sample
        known, orphans = set(self.folders), 0
        for folder in sorted(entry.name for entry in os.scandir(text_dir) if entry.is_dir()):
            if folder not in known:
                raise DataError(text_dir / folder,
                                f"caption folder is not a class of {self.meta_dir}/classes.txt")
            files = {name[:-4] for name in os.listdir(text_dir / folder) if name.endswith(".txt")}
            orphans += len(files - by_folder[folder].keys())
            for stem, sample in sorted(by_folder[folder].items()):
                if stem not in files:
                    self.missing["text"].append(f"{CAPTIONS_DIR}/{folder}/{stem}.txt")
                    continue
                path = text_dir / folder / f"{stem}.txt"
                try:
                    sample.texts = read_text_lines(path)
                except DataError as exc:
                    if not skip_bad:
                        raise
                    skipped.append({"path": str(path), "problem": exc.problem})
        return orphans

    def add_locations(self, samples: list[Sample]) -> None:
        """Set ``location``, ``time`` and ``meta["location_record"]`` (the occurrence record the place
        was drawn from) from ``image_locations.csv``; images without a row keep none."""
        path = self.root / LOCATIONS_CSV
        if not path.is_file():
            return
        places = read_image_locations(path)
        for sample in samples:
            place, record = places.get(int(sample.id), (None, ""))
            if place is None or place.location is None:
                continue
            sample.location, sample.time = place.location, place.time
            sample.meta.update(location_record=record, has_hour=place.has_hour)

    def recordings(self) -> list[Sample]:
        path = self.root / RECORDINGS_CSV
        if not path.is_file():
            self.absent_files.append(str(path))
            return []
        reader = csv.DictReader(io.StringIO(_text(path), newline=""))
        absent = {"file", "class"} - set(reader.fieldnames or [])
        if absent:
            raise DataError(path, f"missing column(s) {', '.join(sorted(absent))}", 1)
        label_of = {folder: index for index, folder in enumerate(self.folders)}
        recordings = []
        for row in reader:
            line = reader.line_num
            values = {key: (value or "").strip() for key, value in row.items() if key is not None}
            if values["class"] not in label_of:
                raise DataError(path, f"class '{values['class']}' is not a CUB class folder", line)
            if not values["file"]:
                raise DataError(path, "empty file name", line)
            audio = resolve_inside(path.parent, values["file"], source=path, line=line)
            if not audio.is_file():
                self.missing["audio"].append(str(audio.relative_to(self.root)))
                continue
            recordings.append(Sample(
                id=values.get("xeno_canto_id") or audio.stem, label=label_of[values["class"]], audio=audio,
                location=_location(values, path, line), time=_date(values.get("date", ""), path, line),
                meta={key: value for key, value in values.items()
                      if key not in ("file", "class", "latitude", "longitude", "date") and value}))
        return recordings


def _location(values: dict[str, str], path: Path, line: int) -> tuple[float, float] | None:
    lat, lon = values.get("latitude", ""), values.get("longitude", "")
    if not lat and not lon:
        return None
    try:
        location = (float(lat), float(lon))
    except ValueError:
        raise DataError(path, f"latitude/longitude '{lat}', '{lon}' are not numbers", line) from None
    if not (-90 <= location[0] <= 90 and -180 <= location[1] <= 180):
        raise DataError(path, f"location {location} is outside the globe", line)
    return location


def _date(value: str, path: Path, line: int) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise DataError(path, f"date '{value}' is not YYYY-MM-DD", line) from None


def load_cub(root: str | Path, *, require_images: bool = True, holdout: float = 0.2, seed: int = 0,
             skip_bad: bool = False) -> MultiModalDataset:
    """Load CUB-200-2011 (any subset of its images) with captions, attributes, parts and recordings.

    Labels are ``class_id - 1``; ``Sample.id`` is the official image id; ``Sample.meta`` holds
    ``class_id`` (1-based), ``class_folder``, ``relpath``, ``bbox`` (raw ``(x, y, w, h)``, see
    :func:`clip_bbox`) and ``parts`` (``{part name: (x, y)}`` of the visible parts).
    ``location``/``time`` come from the optional ``image_locations.csv`` (``meta["location_record"]`` names
    the occurrence record each place was drawn from).
    ``class_attributes`` is the continuous matrix divided by 100. Recordings are per class and go to
    ``dataset.recordings`` (audio-only samples with location, date and xeno-canto credits in meta).

    Split: the official one (``split_protocol="official"``) when ``train_test_split.txt`` marks a
    present image as test; otherwise a seeded holdout of ``holdout`` of each class
    (:func:`fgmm.data.splits.holdout_split`).

    Args:
        root: the folder holding ``CUB_200_2011/`` (or ``CUB_200_2011/`` itself).
        require_images: leave out samples whose image is absent (counted in ``meta["missing"]``);
            when false they are kept with ``image=None`` (captions/attributes only).
        holdout: the per-class test fraction when there is no official test image.
        seed: seed of that holdout.
        skip_bad: decode every image now and leave out those that fail, and skip empty or
            non-UTF-8 caption files, listing both in ``meta["skipped_bad"]``; when false images
            are not opened here (a corrupt one fails when used or in ``fgmm data check``) and a
            bad caption file raises.

    Raises:
        DataError: naming the file and line: a missing required file, a malformed row, a label or
            part id out of range, a caption folder or recording of an unknown class, an empty or
            non-UTF-8 caption file, a path leaving the root, no images at all.
    """
    root = Path(root).expanduser().absolute()
    if root.name == CUB_DIR and (root / "images.txt").is_file():
        root = root.parent
    reader = _CubReader(root, root / CUB_DIR)
    samples, is_train, listed = reader.samples(require_images)
    skipped: list[dict] = []
    if skip_bad:
        problems = {scan.path: scan.problem for scan in scan_images([s.image for s in samples if s.image])}
        keep = [i for i, s in enumerate(samples) if s.image is None or problems.get(s.image) is None]
        skipped += [{"path": str(s.image), "problem": problems[s.image]}
                    for s in samples if s.image is not None and problems.get(s.image)]
        samples, is_train = [samples[i] for i in keep], [is_train[i] for i in keep]
    if not samples:
        raise DataError(reader.meta_dir / "images.txt",
                        f"none of the {listed} listed images is usable under {reader.images_dir}: "
                        "the dataset is empty")
    reader.add_boxes(samples)
    reader.add_locations(samples)
    part_names = reader.add_parts(samples)
    attribute_names, attributes = reader.attributes()
    orphans = reader.add_captions(samples, skip_bad, skipped)
    recordings = reader.recordings()
    if any(flag == 0 for flag in is_train):
        split, protocol = ["train" if flag else "test" for flag in is_train], "official"
    else:
        labels = [s.label for s in samples]
        split, protocol = holdout_split(labels, holdout, seed), holdout_protocol(holdout, seed)
    for kind, items in reader.missing.items():
        if items:
            fate = "kept without image" if kind == "image" and not require_images else "left out"
            logger.warning("%s: %d %s file(s) named by the metadata are absent (%s), e.g. %s",
                           root, len(items), kind, fate, items[0])
    if orphans:
        logger.warning("%s: %d caption file(s) under %s belong to no loaded image and are not used",
                       root, orphans, CAPTIONS_DIR)
    if skipped:
        logger.warning("%s: %d unreadable file(s) skipped (e.g. %s: %s)", root, len(skipped),
                       skipped[0]["path"], skipped[0]["problem"])
    return MultiModalDataset(
        samples=samples, class_names=[readable_name(f) for f in reader.folders], split=split,
        split_protocol=protocol, attribute_names=attribute_names, class_attributes=attributes, root=root,
        name="cub200", recordings=recordings,
        meta={"format": "cub", "class_folders": reader.folders, "part_names": part_names,
              "images_listed": listed, "missing": reader.missing, "skipped_bad": skipped,
              "captions_without_image": orphans, "absent_files": reader.absent_files},
    )
