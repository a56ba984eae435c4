"""Safe image loading: conversions to RGB, and clear errors for bad files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image, ImageFile
from torchvision.transforms.functional import pil_to_tensor

from fgmm.data.images import ImageFiles, collate_images, image_digest, image_loader, load_image
from fgmm.errors import DataError


def _photo(size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def test_greyscale_becomes_rgb_with_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), mode="L").save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (8, 8)
    pixels = np.asarray(image)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all()
    assert pixels[0, 5, 0] == 5


def test_transparent_pixels_become_white_and_palette_converts(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black
    rgba.save(tmp_path / "alpha.png")
    pixels = np.asarray(load_image(tmp_path / "alpha.png"))
    assert tuple(pixels[0, 0]) == (255, 255, 255)
    assert tuple(pixels[1, 1]) == (10, 20, 30)

    _photo().convert("P").save(tmp_path / "palette.gif")
    assert load_image(tmp_path / "palette.gif").mode == "RGB"


def test_exif_orientation_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    _photo((40, 30)).save(path, exif=exif)
    assert load_image(path).size == (30, 40)


def test_truncated_jpeg_raises_data_error_naming_the_file(tmp_path):
    good = tmp_path / "good.jpg"
    _photo((200, 150)).save(good, quality=95)
    data = good.read_bytes()
    bad = tmp_path / "truncated.jpg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated image") as info:
        load_image(bad)
    assert info.value.path == bad and str(bad) in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    ("content", "problem"), [(b"", "empty file"), (b"not an image at all", "corrupt or truncated image")]
)
def test_empty_and_non_image_files(tmp_path, content, problem):
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    with pytest.raises(DataError, match=problem):
        load_image(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="file not found") as info:
        load_image(tmp_path / "nope.jpg")
    assert info.value.path == tmp_path / "nope.jpg"
    with pytest.raises(DataError, match="not a file"):
        load_image(tmp_path)


def test_image_digest_finds_byte_identical_copies(tmp_path):
    _photo().save(tmp_path / "a.png")
    shutil.copy(tmp_path / "a.png", tmp_path / "b.png")
    _photo((41, 30)).save(tmp_path / "c.png")
    digests = [image_digest(tmp_path / name) for name in ("a.png", "b.png", "c.png")]
    assert digests[0] == digests[1] != digests[2] and len(digests[0]) == 64
    with pytest.raises(DataError, match="file not found"):
        image_digest(tmp_path / "missing.png")


def test_image_files_batch_carries_failures_instead_of_raising(tmp_path):
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        _photo().save(paths[-1])
    (tmp_path / "1.png").write_bytes(b"broken")
    batch = collate_images([ImageFiles(paths, pil_to_tensor)[i] for i in range(3)])
    assert batch.indices == [0, 2] and batch.images.shape == (2, 3, 30, 40)
    assert batch.failures[0][0] == 1 and "corrupt" in batch.failures[0][1]

    batches = list(image_loader(paths, pil_to_tensor, batch_size=2, num_workers=1))
    assert [b.indices for b in batches] == [[0], [2]] and [len(b.failures) for b in batches] == [1, 0]
