"""Where and when: reading locations and dates as users have them, with range checks.

Sources:

* photos: EXIF ``GPSLatitude``/``GPSLongitude`` (+ ``Ref``) and ``DateTimeOriginal`` (Pillow), see
  :func:`read_exif`;
* CSV columns ``latitude``, ``longitude`` and a date/time (the folder format's ``samples.csv``,
  CUB's ``image_locations.csv``, ``occurrences.csv``), parsed by :func:`parse_location` and
  :func:`parse_date`;
* CUB's ``image_locations.csv``: :func:`read_image_locations`.

Every bad value raises :class:`~fgmm.errors.DataError` naming the file and line: a latitude outside
[-90, 90], a longitude outside [-180, 180], a coordinate that is not a number, one coordinate without
the other, an impossible date (``2023-02-30``) or time (``25:10``).

The tensor form used by encoders and priors is :func:`geo_tensor`: ``[B, 4]`` float32 rows
``(latitude, longitude, day_of_year, hour)`` with ``NaN`` where a value is missing (never imputed).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from fgmm.errors import DataError

LATITUDE_RANGE = (-90.0, 90.0)
LONGITUDE_RANGE = (-180.0, 180.0)
GEO_COLUMNS = ("latitude", "longitude", "day_of_year", "hour")
"""Columns of :func:`geo_tensor` rows; ``NaN`` marks a missing value."""

_DATE_FORMATS = ("%Y-%m-%d", "%Y:%m:%d", "%Y/%m/%d")
_TIME_FORMATS = ("%H:%M", "%H:%M:%S", "%I:%M %p", "%I:%M:%S %p")
_EXIF_DATETIME = "%Y:%m:%d %H:%M:%S"


@dataclass(frozen=True)
class GeoTime:
    """A place and a moment, each optional.

    Attributes:
        location: ``(latitude, longitude)`` in decimal degrees, or ``None``.
        time: when, or ``None``; ``has_hour`` tells whether its clock time is known (a date alone
            is stored at midnight).
        has_hour: whether ``time`` carries a clock time.
    """

    location: tuple[float, float] | None = None
    time: datetime | None = None
    has_hour: bool = False


def check_location(lat: float, lon: float, path: str | Path | None = None, line: int | None = None,
                   what: str = "") -> tuple[float, float]:
    """``(lat, lon)`` as floats after range checks.

    Raises:
        DataError: naming ``path`` and ``line`` when a value is not finite or outside the globe.
    """
    prefix = f"{what} " if what else ""
    for name, value, (low, high) in (("latitude", lat, LATITUDE_RANGE), ("longitude", lon, LONGITUDE_RANGE)):
        if not math.isfinite(value):
            raise DataError(path, f"{prefix}{name} {value} is not a finite number", line)
        if not low <= value <= high:
            raise DataError(path, f"{prefix}{name} {value:g} is outside [{low:g}, {high:g}]", line)
    return float(lat), float(lon)


def parse_location(lat: str, lon: str, path: str | Path | None = None,
                   line: int | None = None) -> tuple[float, float] | None:
    """A location from two CSV fields; both empty gives ``None``.

    Raises:
        DataError: one field without the other, a field that is not a number, a value off the globe.
    """
    lat, lon = lat.strip(), lon.strip()
    if not lat and not lon:
        return None
    if not (lat and lon):
        raise DataError(path, "latitude and longitude must be given together", line)
    try:
        values = float(lat), float(lon)
    except ValueError:
        raise DataError(path, f"latitude/longitude '{lat}', '{lon}' are not numbers", line) from None
    return check_location(*values, path, line)


def parse_date(value: str, path: str | Path | None = None, line: int | None = None,
               time_of_day: str = "") -> tuple[datetime | None, bool]:
    """A date (``YYYY-MM-DD``, ``YYYY:MM:DD``, ``YYYY/MM/DD`` or ISO 8601 with a time) and an optional
    separate clock time (``HH:MM[:SS]`` or ``HH:MM AM``).

    Returns:
        ``(datetime or None, whether a clock time is known)``.

    Raises:
        DataError: an impossible date or time, or a time without a date.
    """
    value, time_of_day = value.strip(), time_of_day.strip()
    if not value:
        if time_of_day:
            raise DataError(path, f"time '{time_of_day}' is given without a date", line)
        return None, False
    when, has_hour = None, False
    for fmt in _DATE_FORMATS:
        try:
            when = datetime.strptime(value, fmt)
            break
        except ValueError:
            continue
    if when is None:
        try:
            when = datetime.fromisoformat(value)
            has_hour = "T" in value or " " in value
        except ValueError:
            raise DataError(path, f"date '{value}' is not a valid date (YYYY-MM-DD)", line) from None
    if time_of_day:
        clock = _parse_clock(time_of_day, path, line)
        when = when.replace(hour=clock.hour, minute=clock.minute, second=clock.second)
        has_hour = True
    return when, has_hour


def _parse_clock(value: str, path: str | Path | None, line: int | None) -> datetime:
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(value.upper(), fmt)
        except ValueError:
            continue
    raise DataError(path, f"time '{value}' is not a valid clock time (HH:MM or HH:MM AM)", line)


def day_of_year(when: datetime) -> float:
    """Day of the year in ``[1, 367)``, fractional with the clock time (1.5 = noon on 1 January)."""
    return when.timetuple().tm_yday + (when.hour + when.minute / 60 + when.second / 3600) / 24


def geo_tensor(items: Iterable[GeoTime | object]) -> torch.Tensor:
    """``[B, 4]`` float32 rows ``(latitude, longitude, day_of_year, hour)``, ``NaN`` where missing.

    ``items`` are :class:`GeoTime` records or anything with ``location`` and ``time`` attributes (a
    :class:`fgmm.data.Sample`); for those a clock time counts as known unless it is exactly midnight
    or ``meta["has_hour"]`` is false.
    """
    rows = []
    for item in items:
        location, when = getattr(item, "location", None), getattr(item, "time", None)
        has_hour = getattr(item, "has_hour", None)
        if has_hour is None:
            meta = getattr(item, "meta", None) or {}
            has_hour = bool(meta.get("has_hour", when is not None and (when.hour, when.minute) != (0, 0)))
        lat, lon = location if location is not None else (math.nan, math.nan)
        day = day_of_year(when) if when is not None else math.nan
        hour = when.hour + when.minute / 60 if when is not None and has_hour else math.nan
        rows.append((lat, lon, day, hour))
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


def make_geo(lat: float | None = None, lon: float | None = None,
             when: datetime | str | None = None) -> torch.Tensor:
    """One ``[1, 4]`` :func:`geo_tensor` row from plain values (what ``fgmm predict --lat --lon --date`` has).

    ``when`` is a :class:`~datetime.datetime` (its clock time counts unless it is midnight) or a string
    accepted by :func:`parse_date` (``"2024-05-17"``, ``"2024-05-17T07:45"``).

    Raises:
        DataError: a value off the globe, a bad date, or only one of ``lat``/``lon``.
    """
    if (lat is None) != (lon is None):
        raise DataError(None, "latitude and longitude must be given together")
    location = check_location(float(lat), float(lon)) if lat is not None else None
    if isinstance(when, str):
        when, has_hour = parse_date(when)
    else:
        has_hour = when is not None and (when.hour, when.minute, when.second) != (0, 0, 0)
    return geo_tensor([GeoTime(location, when, has_hour)])


# ---------------------------------------------------------------- EXIF

def _rational(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError, ZeroDivisionError):
        numerator, denominator = value
        return float(numerator) / float(denominator)


def _dms(value, ref: str, path: Path, tag: str) -> float:
    try:
        degrees, minutes, seconds = (_rational(v) for v in value)
    except (TypeError, ValueError, ZeroDivisionError):
        raise DataError(path, f"EXIF {tag} {value!r} is not (degrees, minutes, seconds)") from None
    sign = -1.0 if str(ref).strip().upper() in ("S", "W") else 1.0
    return sign * (degrees + minutes / 60 + seconds / 3600)


def read_exif(path: str | Path) -> GeoTime:
    """The GPS position and ``DateTimeOriginal`` (else ``DateTime``) of a photo's EXIF.

    Returns:
        :class:`GeoTime`; fields the photo does not carry are ``None``.

    Raises:
        DataError: the file cannot be opened as an image, or its EXIF holds an impossible position
            or date (the problem names the tag).
    """
    from PIL import ExifTags, Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as image:
            exif = image.getexif()
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(path, f"cannot read image: {exc}") from None
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    location = None
    if ExifTags.GPS.GPSLatitude in gps and ExifTags.GPS.GPSLongitude in gps:
        lat = _dms(gps[ExifTags.GPS.GPSLatitude], gps.get(ExifTags.GPS.GPSLatitudeRef, "N"), path, "GPSLatitude")
        lon = _dms(gps[ExifTags.GPS.GPSLongitude], gps.get(ExifTags.GPS.GPSLongitudeRef, "E"), path,
                   "GPSLongitude")
        location = check_location(lat, lon, path, what="EXIF GPS")
    stamp = exif.get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
    when = None
    if stamp:
        text = str(stamp).strip().rstrip("\x00")
        try:
            when = datetime.strptime(text, _EXIF_DATETIME)
        except ValueError:
            raise DataError(path, f"EXIF DateTimeOriginal '{text}' is not a valid 'YYYY:MM:DD HH:MM:SS'") from None
    return GeoTime(location, when, has_hour=when is not None)


def fill_from_exif(samples: Sequence, overwrite: bool = False) -> int:
    """Set ``location``/``time`` of samples from their image's EXIF where the sample has none.

    Returns the number of samples that gained a location or a time. Samples without an image are
    left alone; a photo with impossible EXIF values raises :class:`DataError` naming it.
    """
    changed = 0
    for sample in samples:
        if sample.image is None or (not overwrite and sample.location is not None and sample.time is not None):
            continue
        found = read_exif(sample.image)
        before = (sample.location, sample.time)
        if found.location is not None and (overwrite or sample.location is None):
            sample.location = found.location
        if found.time is not None and (overwrite or sample.time is None):
            sample.time = found.time
            sample.meta["has_hour"] = True
        changed += (sample.location, sample.time) != before
    return changed


# ---------------------------------------------------------------- CUB image_locations.csv

IMAGE_LOCATION_COLUMNS = ("image_id", "latitude", "longitude")


def read_csv_rows(path: Path, required: Sequence[str]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and ``(line, row)`` pairs of a UTF-8 CSV, values stripped.

    Raises:
        DataError: a missing file, invalid UTF-8, a missing required column, a row of the wrong width.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise DataError(path, "file is missing") from None
    except UnicodeDecodeError as exc:
        raise DataError(path, f"not valid UTF-8 (byte {exc.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    absent = [name for name in required if name not in header]
    if absent:
        raise DataError(path, f"missing column(s) {', '.join(absent)} in header {header}", 1)
    reader.fieldnames = header
    rows = []
    for row in reader:
        if None in row or any(value is None for value in row.values()):
            raise DataError(path, f"row does not have the header's {len(header)} fields", reader.line_num)
        rows.append((reader.line_num, {key: value.strip() for key, value in row.items()}))
    return header, rows


def read_image_locations(path: str | Path) -> dict[int, tuple[GeoTime, str]]:
    """CUB's ``image_locations.csv``: image id -> (place and date, the ``record`` it was drawn from).

    Rows with empty latitude/longitude (classes without any record) map to an empty :class:`GeoTime`.

    Raises:
        DataError: naming the line: a repeated or non-integer image id, a bad coordinate or date.
    """
    path = Path(path)
    _, rows = read_csv_rows(path, IMAGE_LOCATION_COLUMNS)
    out: dict[int, tuple[GeoTime, str]] = {}
    first: dict[int, int] = {}
    for line, row in rows:
        if not row["image_id"].isdigit():
            raise DataError(path, f"image_id '{row['image_id']}' is not a whole number", line)
        image_id = int(row["image_id"])
        if image_id in first:
            raise DataError(path, f"image id {image_id} repeats line {first[image_id]}", line)
        first[image_id] = line
        location = parse_location(row["latitude"], row["longitude"], path, line)
        when, has_hour = parse_date(row.get("date", ""), path, line, row.get("time", ""))
        out[image_id] = GeoTime(location, when, has_hour), row.get("record", "")
    return out

