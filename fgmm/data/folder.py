"""The generic folder/CSV format for users' own multi-modal data (datasets/folder-format.md).

A root holds::

    samples.csv            one row per sample (required)
    classes.csv            one row per class: name[, description][, unseen] (required)
    class_attributes.csv   class, <attribute 1>, <attribute 2>, ...  strengths in [0, 1] (optional)
    recordings.csv         class-level audio, same columns as samples.csv (optional)
    dataset.json           {"name", "split_protocol", "meta"} (optional)

``samples.csv`` columns, all optional but ``id``: ``id, label, image, texts, audio, latitude,
longitude, time, split, clean_label, meta``. ``label`` and ``clean_label`` are class names from
``classes.csv`` (empty: unknown); ``image``/``audio`` are file paths and ``texts`` is the path of a
UTF-8 text file with one description per line, all relative to the root and never leaving it;
``time`` is ISO 8601; ``split`` is ``train``/``val``/``test`` on every row or on none; ``meta`` is a
JSON object. Any other column is kept as a string in ``Sample.meta[column]``.

Text files are read when loading; image and audio files are only referenced (``fgmm data check``
verifies them), so loading costs one pass over the CSV.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.errors import DataError, OwnershipError
from fgmm.io import write_bytes_atomic as write_atomic
from fgmm.ownership import claim_folder

SAMPLES_FILE = "samples.csv"
CLASSES_FILE = "classes.csv"
ATTRIBUTES_FILE = "class_attributes.csv"
RECORDINGS_FILE = "recordings.csv"
MANIFEST_FILE = "dataset.json"

DATASET_KIND = "dataset"
#: the files write_folder puts directly in the root; with ``force`` none of them may exist there yet
DATASET_FILES = (SAMPLES_FILE, CLASSES_FILE, ATTRIBUTES_FILE, RECORDINGS_FILE, MANIFEST_FILE)

SAMPLE_COLUMNS = ("id", "label", "image", "texts", "audio", "latitude", "longitude", "time", "split",
                  "clean_label", "meta")
CLASS_COLUMNS = ("name", "description", "unseen")
SPLIT_NAMES = ("train", "val", "test")

_TRUE, _FALSE = {"1", "true", "yes"}, {"", "0", "false", "no"}


def is_folder_root(root: str | Path) -> bool:
    """Whether ``root`` looks like a folder-format dataset (it has ``samples.csv``)."""
    return (Path(root) / SAMPLES_FILE).is_file()


def resolve_inside(root: Path, relpath: str, *, source: Path, line: int | None = None) -> Path:
    """``root / relpath`` after checking that ``relpath`` stays inside ``root``.

    The check is lexical (absolute paths, drive letters and ``..`` that climb out of the root are
    refused); symbolic links placed inside the root by its owner are followed as usual.

    Raises:
        DataError: naming ``source`` and ``line`` when the path escapes the root.
    """
    posix = relpath.replace("\\", "/")
    absolute = posix.startswith("/") or posix[1:2] == ":"
    if absolute or (".." in posix and os.path.normpath(posix).split("/")[0] == ".."):
        raise DataError(source, f"path '{relpath}' leaves the dataset root {root}", line)
    return root / posix


def read_text_lines(path: Path) -> list[str]:
    """Non-blank, stripped lines of a UTF-8 text file (one description per line).

    Raises:
        DataError: the file is missing, is not UTF-8, or holds no text.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "text file is missing") from None
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(path, f"text is not valid UTF-8 (byte {exc.start})", line) from None
    lines = [stripped for raw in text.splitlines() if (stripped := raw.strip())]
    if not lines:
        raise DataError(path, "text file is empty")
    return lines


def _read_csv(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a UTF-8 CSV with a header, with the line each row ends on."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file is missing") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise DataError(path, "file is empty (a header row is needed)", 1)
    reader.fieldnames = header
    absent = [name for name in required if name not in header]
    if absent:
        raise DataError(path, f"missing column(s) {', '.join(absent)} in header {header}", 1)
    for row in reader:
        if None in row:
            raise DataError(path, f"row has more fields than the header ({len(header)})", reader.line_num)
        if any(value is None for value in row.values()):
            raise DataError(path, f"row has fewer fields than the header ({len(header)})", reader.line_num)
        yield reader.line_num, {key: value.strip() for key, value in row.items()}


def _float(value: str, column: str, path: Path, line: int, low: float, high: float) -> float:
    try:
        number = float(value)
    except ValueError:
        raise DataError(path, f"{column} '{value}' is not a number", line) from None
    if not low <= number <= high:
        raise DataError(path, f"{column} {number} is outside [{low:g}, {high:g}]", line)
    return number


def _class_index(name: str, classes: dict[str, int], column: str, path: Path, line: int) -> int:
    if not name:
        return -1
    try:
        return classes[name]
    except KeyError:
        raise DataError(path, f"{column} '{name}' is not a class of {CLASSES_FILE}", line) from None


def _parse_sample(row: dict[str, str], root: Path, classes: dict[str, int], path: Path,
                  line: int) -> Sample:
    if not row["id"]:
        raise DataError(path, "empty id", line)
    location = None
    if row.get("latitude") or row.get("longitude"):
        if not (row.get("latitude") and row.get("longitude")):
            raise DataError(path, "latitude and longitude must be given together", line)
        location = (_float(row["latitude"], "latitude", path, line, -90, 90),
                    _float(row["longitude"], "longitude", path, line, -180, 180))
    time = None
    if row.get("time"):
        try:
            time = datetime.fromisoformat(row["time"])
        except ValueError:
            raise DataError(path, f"time '{row['time']}' is not ISO 8601 (YYYY-MM-DD[THH:MM:SS])",
                            line) from None
    meta: dict = {}
    if row.get("meta"):
        try:
            meta = json.loads(row["meta"])
        except json.JSONDecodeError as exc:
            raise DataError(path, f"meta is not valid JSON ({exc.msg})", line) from None
        if not isinstance(meta, dict):
            raise DataError(path, "meta must be a JSON object", line)
    meta.update({key: value for key, value in row.items() if key not in SAMPLE_COLUMNS and value})
    if row.get("clean_label"):
        meta["clean_label"] = _class_index(row["clean_label"], classes, "clean_label", path, line)

    def file(column: str) -> Path | None:
        value = row.get(column)
        return resolve_inside(root, value, source=path, line=line) if value else None

    texts_file = file("texts")
    if texts_file is not None:
        try:
            texts = read_text_lines(texts_file)
        except DataError as exc:
            raise DataError(path, f"texts file {texts_file}: {exc.problem}", line) from None
    else:
        texts = []
    return Sample(id=row["id"], label=_class_index(row.get("label", ""), classes, "label", path, line),
                  image=file("image"), texts=texts, audio=file("audio"), location=location, time=time,
                  meta=meta)


def _load_samples(path: Path, root: Path, classes: dict[str, int]) -> tuple[list[Sample], list[str]]:
    samples, split, first_line = [], [], {}
    for line, row in _read_csv(path, ("id",)):
        sample = _parse_sample(row, root, classes, path, line)
        if sample.id in first_line:
            raise DataError(path, f"id '{sample.id}' repeats line {first_line[sample.id]}", line)
        first_line[sample.id] = line
        part = row.get("split", "")
        if part not in ("", *SPLIT_NAMES):
            raise DataError(path, f"split '{part}' is not one of {', '.join(SPLIT_NAMES)}", line)
        if split and bool(part) != bool(split[-1]):
            raise DataError(path, "split must be given on every row or on none", line)
        samples.append(sample)
        split.append(part)
    return samples, split if split and split[0] else []


def _load_classes(path: Path) -> tuple[list[str], dict[int, str], list[int]]:
    names: list[str] = []
    descriptions: dict[int, str] = {}
    unseen: list[int] = []
    for line, row in _read_csv(path, ("name",)):
        extra = [key for key in row if key not in CLASS_COLUMNS]
        if extra:
            raise DataError(path, f"unknown column(s) {', '.join(extra)} "
                                  f"(expected {', '.join(CLASS_COLUMNS)})", 1)
        name = row["name"]
        if not name:
            raise DataError(path, "empty class name", line)
        if name in names:
            raise DataError(path, f"class '{name}' is listed twice", line)
        flag = row.get("unseen", "").lower()
        if flag not in _TRUE | _FALSE:
            raise DataError(path, f"unseen must be 0/1/true/false, got '{row['unseen']}'", line)
        if flag in _TRUE:
            unseen.append(len(names))
        if row.get("description"):
            descriptions[len(names)] = row["description"]
        names.append(name)
    if not names:
        raise DataError(path, "no classes listed")
    return names, descriptions, unseen


def _load_attributes(path: Path, classes: dict[str, int]) -> tuple[list[str], np.ndarray]:
    rows: dict[int, list[float]] = {}
    attribute_names: list[str] = []
    for line, row in _read_csv(path, ("class",)):
        attribute_names = [key for key in row if key != "class"]
        label = _class_index(row["class"], classes, "class", path, line)
        if label < 0:
            raise DataError(path, "empty class name", line)
        if label in rows:
            raise DataError(path, f"class '{row['class']}' is listed twice", line)
        rows[label] = [_float(row[name], name, path, line, 0.0, 1.0) for name in attribute_names]
    absent = [name for name, index in classes.items() if index not in rows]
    if absent:
        raise DataError(path, f"no attribute row for {len(absent)} class(es), e.g. '{absent[0]}'")
    return attribute_names, np.array([rows[i] for i in range(len(classes))], dtype=np.float32)


def load_folder(root: str | Path) -> MultiModalDataset:
    """Load a folder-format dataset (see the module docstring and datasets/folder-format.md).

    Raises:
        DataError: a missing or malformed file, naming the file and line: unknown class name,
            a path leaving the root, a repeated id, an unreadable texts file, no samples at all.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(root, "dataset folder does not exist")
    class_names, descriptions, unseen = _load_classes(root / CLASSES_FILE)
    classes = {name: index for index, name in enumerate(class_names)}
    samples, split = _load_samples(root / SAMPLES_FILE, root, classes)
    if not samples:
        raise DataError(root / SAMPLES_FILE, "the dataset is empty (no sample rows)")
    recordings = (_load_samples(root / RECORDINGS_FILE, root, classes)[0]
                  if (root / RECORDINGS_FILE).is_file() else [])
    attribute_names, attributes = ([], None)
    if (root / ATTRIBUTES_FILE).is_file():
        attribute_names, attributes = _load_attributes(root / ATTRIBUTES_FILE, classes)
    manifest = {}
    if (root / MANIFEST_FILE).is_file():
        try:
            manifest = json.loads((root / MANIFEST_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(root / MANIFEST_FILE, f"not valid JSON ({exc})") from None
    return MultiModalDataset(
        samples=samples, class_names=class_names, split=split,
        split_protocol=manifest.get("split_protocol", "given" if split else "none"),
        attribute_names=attribute_names, class_attributes=attributes, class_descriptions=descriptions,
        root=root, name=manifest.get("name", root.name), unseen_classes=unseen, recordings=recordings,
        meta={**manifest.get("meta", {}), "format": "folder"},
    )


def _json_value(value: object) -> object:
    """JSON fallback for ``meta`` values: arrays and numpy scalars as lists/numbers, the rest as text."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return str(value)


def _safe_name(sample_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", sample_id).strip("._") or "sample"


def _csv_text(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _legacy_dataset(folder: Path) -> bool:
    """A dataset folder fgmm generated before ownership markers (its manifest names an fgmm generator)."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    generator = manifest.get("meta", {}).get("generator", "") if isinstance(manifest, dict) else ""
    return isinstance(generator, str) and generator.startswith("fgmm.")


def claim_dataset_folder(root: str | Path, force: bool = False, reserved: tuple[str, ...] = DATASET_FILES) -> dict:
    """Make ``root`` an fgmm dataset folder (see :func:`fgmm.ownership.claim_folder`): absent, empty or
    written by fgmm; another folder only with ``force``, and then none of ``reserved`` may exist there."""
    return claim_folder(root, DATASET_KIND, force=force, reserved=reserved, legacy=_legacy_dataset,
                        what="dataset folder")


class _Writer:
    """Writes samples of one dataset as rows, placing files that live outside the root inside it.

    Files go only where nothing stands that fgmm did not create (entries the root's marker lists as foreign)."""

    def __init__(self, dataset: MultiModalDataset, root: Path, foreign: set[str]):
        self.dataset, self.root, self.foreign = dataset, root, foreign
        self.names: set[str] = set()

    def target(self, relpath: str) -> Path:
        """``root / relpath``, refused when it exists inside an entry that is not fgmm's."""
        target = self.root / relpath
        if relpath.split("/", 1)[0] in self.foreign and target.exists():
            raise OwnershipError(target, "exists and was not created by fgmm, so it is not overwritten; move it "
                                         "away or write the dataset to another folder")
        return target

    def _relative(self, path: Path, folder: str, stem: str) -> str:
        try:
            return path.absolute().relative_to(self.root).as_posix()
        except ValueError:
            target = self.target(f"{folder}/{stem}{path.suffix.lower()}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            try:
                shutil.copyfile(path, tmp)
            except OSError as exc:
                raise DataError(path, f"cannot copy it into {self.root}: {exc.strerror}") from None
            os.replace(tmp, target)
            return target.relative_to(self.root).as_posix()

    def _stem(self, sample: Sample, index: int) -> str:
        stem = _safe_name(sample.id)
        if stem in self.names:
            stem = f"{stem}-{index}"
        self.names.add(stem)
        return stem

    def rows(self, samples: list[Sample], split: list[str], prefix: str) -> list[list[str]]:
        names = self.dataset.class_names
        rows, seen = [], set()
        for index, sample in enumerate(samples):
            if sample.id in seen:
                raise DataError(self.root, f"sample id '{sample.id}' is not unique")
            seen.add(sample.id)
            stem = self._stem(sample, index)
            texts = ""
            if sample.texts:
                lines = [" ".join(text.split()) for text in sample.texts]
                texts_path = self.target(f"{prefix}texts/{stem}.txt")
                write_atomic(texts_path, "\n".join(lines) + "\n")
                texts = texts_path.relative_to(self.root).as_posix()
            meta = dict(sample.meta)
            clean = meta.pop("clean_label", None)
            lat, lon = sample.location if sample.location is not None else ("", "")
            rows.append([
                sample.id, names[sample.label] if sample.label >= 0 else "",
                self._relative(sample.image, f"{prefix}images", stem) if sample.image else "",
                texts,
                self._relative(sample.audio, f"{prefix}audio", stem) if sample.audio else "",
                repr(float(lat)) if lat != "" else "", repr(float(lon)) if lon != "" else "",
                sample.time.isoformat() if sample.time else "",
                split[index] if split else "",
                names[clean] if clean is not None and clean >= 0 else "",
                json.dumps(meta, sort_keys=True, default=_json_value) if meta else "",
            ])
        return rows


def write_folder(dataset: MultiModalDataset, root: str | Path, force: bool = False) -> Path:
    """Write ``dataset`` in the folder format under ``root`` and return the root.

    Image and audio files already inside ``root`` are referenced where they are; others are copied
    to ``images/`` / ``audio/`` (``recordings/...`` for recordings). Texts go to ``texts/<id>.txt``,
    one per line (whitespace inside a text, newlines included, is collapsed to single spaces).
    ``Sample.meta`` is written as JSON (``clean_label`` as a class name), so tuples and numpy arrays
    come back as lists.
    Every file is written atomically. ``load_folder(write_folder(d, r))`` reproduces ``d``.

    ``root`` must be absent, empty or an fgmm dataset folder; any other folder needs ``force``, and
    then fgmm writes next to what is there without overwriting any of it (:func:`claim_dataset_folder`).

    Raises:
        OwnershipError: ``root`` holds files fgmm did not create (see above).
    """
    root = Path(root).expanduser().absolute()
    marker = claim_dataset_folder(root, force)
    writer = _Writer(dataset, root, set(marker.get("foreign", ())))
    header = list(SAMPLE_COLUMNS)
    write_atomic(root / SAMPLES_FILE, _csv_text(header, writer.rows(dataset.samples, dataset.split, "")))
    if dataset.recordings:
        write_atomic(root / RECORDINGS_FILE,
                     _csv_text(header, writer.rows(dataset.recordings, [], "recordings/")))
    unseen = set(dataset.unseen_classes)
    write_atomic(root / CLASSES_FILE, _csv_text(list(CLASS_COLUMNS), [
        [name, dataset.class_descriptions.get(index, ""), "1" if index in unseen else "0"]
        for index, name in enumerate(dataset.class_names)]))
    if dataset.class_attributes is not None:
        write_atomic(root / ATTRIBUTES_FILE, _csv_text(["class", *dataset.attribute_names], [
            [name, *(repr(float(value)) for value in row)]
            for name, row in zip(dataset.class_names, dataset.class_attributes, strict=True)]))
    meta = {key: value for key, value in dataset.meta.items() if key != "format"}  # set by the loader
    manifest = {"name": dataset.name, "split_protocol": dataset.split_protocol, "meta": meta}
    write_atomic(root / MANIFEST_FILE, json.dumps(manifest, indent=2, sort_keys=True, default=_json_value) + "\n")
    return root
