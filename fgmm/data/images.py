"""Safe image decoding and a DataLoader-ready dataset of image files.

:func:`load_image` fully decodes a file into an RGB PIL image and turns every way a file can be
bad (missing, empty, truncated, not an image) into a :class:`~fgmm.errors.DataError` that names it.
PIL's global ``LOAD_TRUNCATED_IMAGES`` is never touched, so a truncated JPEG is an error, not a
silently grey-padded picture.

:class:`ImageFiles` + :func:`collate_images` decode and transform in DataLoader workers and carry
failures back to the main process as data (``DataError`` itself does not survive the trip between
processes), where the caller decides to raise or to skip and report.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from fgmm.errors import ConfigError, DataError

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error)
MAX_PIXELS_ENV = "FGMM_MAX_IMAGE_PIXELS"


def set_max_image_pixels(limit: int | None) -> None:
    """Set the largest image (width x height) fgmm decodes; ``None`` removes the limit.

    The limit guards against decompression bombs; it is Pillow's ``Image.MAX_IMAGE_PIXELS`` (default
    89,478,485, about 9459 x 9459), which this sets. The environment variable ``FGMM_MAX_IMAGE_PIXELS``
    (a number, or ``none``) sets it when fgmm starts, in DataLoader workers too.
    """
    if limit is not None and not (isinstance(limit, int) and limit > 0):
        raise ConfigError(f"the image pixel limit must be a positive whole number or None, got {limit!r}")
    Image.MAX_IMAGE_PIXELS = limit


def max_image_pixels() -> int | None:
    """The largest image fgmm decodes (see :func:`set_max_image_pixels`)."""
    return Image.MAX_IMAGE_PIXELS


def _limit_from_environment() -> None:
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return
    if value.lower() == "none":
        set_max_image_pixels(None)
    elif value.isdigit() and int(value) > 0:
        set_max_image_pixels(int(value))
    else:
        raise ConfigError(f"{MAX_PIXELS_ENV}={value!r}: give a positive whole number of pixels, or 'none'")


def _too_large(path: Path, pixels: str) -> DataError:
    return DataError(path, f"image too large: {pixels} pixels is over the limit of {max_image_pixels():,} (a guard "
                           f"against decompression bombs); raise it with {MAX_PIXELS_ENV}=N or "
                           "fgmm.data.images.set_max_image_pixels(N)")


_limit_from_environment()


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB copy of ``image``; transparent pixels are composited onto white instead of their hidden colour."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Decode ``path`` completely into an RGB image.

    Greyscale, CMYK, palette and alpha images are converted to RGB (alpha composited onto white) and
    the EXIF orientation is applied, so a photo looks the way viewers show it.

    Raises:
        DataError: ``"file not found"``, ``"not a file"``, ``"cannot read file: ..."``,
            ``"image too large: ..."`` (over :func:`max_image_pixels`) or ``"corrupt or truncated image:
            ..."``, always naming ``path``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with Image.open(path) as image:  # Pillow warns over the limit and raises over twice the limit
            limit = max_image_pixels()
            width, height = image.size
            if limit is not None and width * height > limit:
                raise _too_large(path, f"{width} x {height} = {width * height:,}")
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as exc:  # Pillow's own check, at twice the limit
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_large(path, f"{int(found.group(1)):,}" if found else "its") from None
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except IsADirectoryError:
        raise DataError(path, "not a file") from None
    except PermissionError as exc:
        raise DataError(path, f"cannot read file: {exc.strerror}") from None
    except _DECODE_ERRORS as exc:
        detail = "empty file" if size == 0 else f"{type(exc).__name__}: {exc}"
        raise DataError(path, f"corrupt or truncated image: {detail}") from None


def image_digest(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of the file's bytes (hex): equal digests mean byte-identical files (exact duplicates)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(chunk_size):
                digest.update(block)
    except FileNotFoundError:
        raise DataError(path, "file not found") from None
    except OSError as exc:
        raise DataError(path, f"cannot read file: {exc}") from None
    return digest.hexdigest()


class ImageFiles(Dataset):
    """Image files decoded with :func:`load_image` and passed through ``transform``.

    Item ``i`` is ``(i, tensor, None)``, or ``(i, None, problem)`` when the file is bad, so that one
    bad file neither kills a worker nor loses the rest of its batch.
    """

    def __init__(self, paths: Sequence[str | Path], transform: Callable[[Image.Image], torch.Tensor]):
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor | None, str | None]:
        try:
            return index, self.transform(load_image(self.paths[index])), None
        except DataError as exc:
            return index, None, exc.problem


@dataclass
class ImageBatch:
    """A collated batch: ``images[k]`` is item ``indices[k]``; ``failures`` are ``(index, problem)``."""

    indices: list[int]
    images: torch.Tensor | None
    failures: list[tuple[int, str]]


def collate_images(items: list[tuple[int, torch.Tensor | None, str | None]]) -> ImageBatch:
    """Stack the decoded items of a batch and set the bad ones aside."""
    good = [(index, tensor) for index, tensor, _ in items if tensor is not None]
    return ImageBatch(
        indices=[index for index, _ in good],
        images=torch.stack([tensor for _, tensor in good]) if good else None,
        failures=[(index, problem) for index, tensor, problem in items if tensor is None],
    )


def default_num_workers() -> int:
    """Decoding workers: one per available core but one (the main process runs the model), at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(8, max(1, cores - 1))


def image_loader(
    paths: Sequence[str | Path],
    transform: Callable[[Image.Image], torch.Tensor],
    batch_size: int = 32,
    num_workers: int | None = None,
) -> DataLoader:
    """A DataLoader yielding :class:`ImageBatch` es of ``paths`` in order, decoded in worker processes."""
    workers = default_num_workers() if num_workers is None else num_workers
    return DataLoader(
        ImageFiles(paths, transform),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
        prefetch_factor=4 if workers > 0 else None,
    )
