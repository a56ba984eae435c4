"""Perceptual hashes and near-duplicate search on generated near-identical images (fgmm.filters.hashing)."""

from __future__ import annotations

import io
from itertools import combinations

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from fgmm.filters.hashing import dhash, hamming, near_duplicate_groups, near_duplicate_pairs, phash


def _picture(seed: int, size: int = 96) -> Image.Image:
    """A smooth random picture (low-frequency noise upsampled), different for every seed."""
    rng = np.random.default_rng(seed)
    small = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    return Image.fromarray(small).resize((size, size), Image.Resampling.BICUBIC)


def _variants(image: Image.Image) -> list[Image.Image]:
    """Near-identical copies: resized, JPEG-recompressed, brightened, cropped by one pixel."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    w, h = image.size
    return [image.resize((w // 2, h // 2)), Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"),
            ImageEnhance.Brightness(image).enhance(1.15), image.crop((1, 1, w - 1, h - 1))]


def test_hand_checked_values() -> None:
    gradient = Image.fromarray(np.tile(np.arange(0, 252, 28, dtype=np.uint8), (8, 1)))  # 9 x 8, brighter to the right
    assert dhash(gradient) == 2**64 - 1  # every right neighbour is brighter
    assert dhash(gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) == 0
    # a flat image: only the DC coefficient is above the median of the 8 x 8 block
    assert phash(Image.new("RGB", (50, 40), (120, 120, 120))) == 1 << 63
    assert hamming(0b1011, 0b0001) == 2 and hamming(2**64 - 1, 0) == 64


@pytest.mark.parametrize("hash_fn", [phash, dhash])
def test_near_identical_copies_are_close_and_others_far(hash_fn) -> None:
    originals = [_picture(seed) for seed in range(6)]
    for image in originals:
        for variant in _variants(image):
            assert hamming(hash_fn(image), hash_fn(variant)) <= 8
    hashes = [hash_fn(image) for image in originals]
    assert min(int(hamming(a, b)) for a, b in combinations(hashes, 2)) > 16


def test_groups_recover_planted_near_duplicates() -> None:
    images, planted = [], []
    for seed in range(8):
        group = [len(images)]
        images.append(_picture(seed))
        if seed % 2 == 0:  # every other picture gets two near-identical copies
            for variant in _variants(images[-1])[:2]:
                group.append(len(images))
                images.append(variant)
            planted.append(group)
    images.append(images[0].copy())  # an exact copy joins group 0
    planted[0].append(len(images) - 1)
    groups = near_duplicate_groups([phash(image) for image in images], max_distance=8)
    assert groups == [sorted(g) for g in planted]


def test_banded_search_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2**63, 40, dtype=np.uint64)
    flips = [base[i] ^ np.uint64(1 << int(b)) for i in range(0, 40, 3) for b in rng.choice(64, 2, replace=False)]
    values = np.concatenate([base, np.array(flips, dtype=np.uint64), base[:3]])
    for max_distance in (0, 2, 5):
        brute = {(i, j) for i, j in combinations(range(len(values)), 2)
                 if hamming(values[i], values[j]) <= max_distance}
        found = {(i, j) for i, j, _ in near_duplicate_pairs(values, max_distance)}
        # identical values are reported against their first occurrence; everything else pairwise
        linked = near_duplicate_groups(values, max_distance)
        assert found <= brute
        assert {frozenset(g) for g in linked} == {frozenset(g) for g in _components(len(values), brute)}


def _components(n: int, pairs: set[tuple[int, int]]) -> list[list[int]]:
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in pairs:
        parent[find(j)] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [g for g in groups.values() if len(g) > 1]
