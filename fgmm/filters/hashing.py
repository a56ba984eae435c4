r"""Perceptual image hashes and near-duplicate search (Pillow + numpy, no extra dependency).

* :func:`dhash` (difference hash): the image in grey at ``(s+1) × s`` pixels, one bit per pair of
  horizontal neighbours, :math:`b_{rc} = [g_{r,c+1} > g_{r,c}]`.
* :func:`phash` (perceptual hash, Zauner 2010 as in the ``imagehash`` package): the grey image at
  :math:`32 \times 32`, its 2-D DCT-II :math:`D = M G M^\top`, and one bit per coefficient of the
  top-left :math:`8 \times 8` block, :math:`b_{uv} = [D_{uv} > \operatorname{median}(D_{0:8, 0:8})]`.
  Robust to resizing, recompression, small crops and colour shifts.

Both return a 64-bit ``int``; the Hamming distance between hashes measures visual difference
(0: the same picture to the hash; up to about 8 of 64 bits: a near duplicate).
:func:`near_duplicate_groups` finds every pair within ``max_distance`` without comparing all
pairs: a 64-bit hash cut into ``max_distance + 1`` bands shares at least one whole band with any
hash within ``max_distance`` bits (pigeonhole), so only hashes sharing a band are compared
(multi-index hashing, Norouzi et al., CVPR 2012).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from PIL import Image

from fgmm.registry import Registry

HASHES: Registry[int] = Registry("perceptual hash")


def _grey(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(image.convert("L").resize(size, Image.Resampling.LANCZOS), dtype=np.float64)


def _bits_to_int(bits: np.ndarray) -> int:
    return int(np.packbits(bits.astype(np.uint8).ravel()).view(">u8")[0])


@HASHES.register("dhash")
def dhash(image: Image.Image, size: int = 8) -> int:
    """64-bit difference hash of ``image`` (``size`` = 8)."""
    grey = _grey(image, (size + 1, size))
    return _bits_to_int(grey[:, 1:] > grey[:, :-1])


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``M`` with ``M[k, i] = a_k cos(pi (2i + 1) k / 2n)``."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


@HASHES.register("phash")
def phash(image: Image.Image, size: int = 8, highfreq_factor: int = 4) -> int:
    """64-bit perceptual (DCT) hash of ``image`` (``size`` = 8 on a 32 × 32 grey image)."""
    n = size * highfreq_factor
    matrix = _dct_matrix(n)
    block = np.round((matrix @ _grey(image, (n, n)) @ matrix.T)[:size, :size], 6)  # no float-noise bits
    return _bits_to_int(block > np.median(block))


def hamming(a: int | np.ndarray, b: int | np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance of 64-bit hashes (broadcasts over numpy arrays)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, dtype=np.uint64), np.asarray(b, dtype=np.uint64)))


class UnionFind:
    """Disjoint sets over ``0..n-1`` (path compression; the smaller index becomes the root)."""

    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def near_duplicate_pairs(hashes: Sequence[int] | np.ndarray, max_distance: int = 6) -> list[tuple[int, int, int]]:
    """Every pair ``(i, j, distance)`` with ``i < j`` and Hamming distance ``<= max_distance``.

    Identical hashes are compared once per distinct value (a large group of identical hashes costs
    ``O(group)``, not ``O(group²)``): the pairs inside such a group are reported against its first member.
    """
    values = np.asarray(hashes, dtype=np.uint64)
    if not 0 <= max_distance < 64:
        raise ValueError(f"max_distance must be in 0..63, got {max_distance}")
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    pairs: list[tuple[int, int, int]] = []
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(unique) + 1))
    for u in range(len(unique)):  # identical hashes: distance 0 to the first member
        members = order[bounds[u]:bounds[u + 1]]
        pairs += [(int(members[0]), int(m), 0) for m in members[1:]]
    if max_distance == 0 or len(unique) < 2:
        return pairs
    bands = max_distance + 1
    edges = np.linspace(0, 64, bands + 1).astype(int)
    seen: set[tuple[int, int]] = set()
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        key = (unique >> np.uint64(64 - stop)) & np.uint64((1 << (stop - start)) - 1)
        key_order = np.argsort(key, kind="stable")
        sorted_keys = key[key_order]
        splits = np.flatnonzero(np.diff(sorted_keys)) + 1
        for bucket in np.split(key_order, splits):
            if len(bucket) < 2:
                continue
            for r, c, distance in _close_pairs(unique[bucket], max_distance):
                a, b = sorted((int(bucket[r]), int(bucket[c])))
                if (a, b) not in seen:
                    seen.add((a, b))
                    i, j = sorted((int(first[a]), int(first[b])))
                    pairs.append((i, j, distance))
    return pairs


def _close_pairs(values: np.ndarray, max_distance: int, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """Pairs ``(r, c, d)``, ``r < c``, of ``values`` within ``max_distance``, compared ``chunk`` rows at a
    time so that memory stays ``O(chunk * len(values))``."""
    out = []
    for start in range(0, len(values), chunk):
        distances = hamming(values[start:start + chunk, None], values[None, :])
        rows, cols = np.nonzero(distances <= max_distance)
        keep = cols > rows + start
        out += [(int(r) + start, int(c), int(distances[r, c]))
                for r, c in zip(rows[keep], cols[keep], strict=True)]
    return out


def near_duplicate_groups(hashes: Sequence[int] | np.ndarray, max_distance: int = 6) -> list[list[int]]:
    """Connected groups (indices, each sorted; groups ordered by first index) of images linked by
    :func:`near_duplicate_pairs`; members of identical hash values are all included."""
    values = np.asarray(hashes, dtype=np.uint64)
    union = UnionFind(len(values))
    for i, j, _ in near_duplicate_pairs(values, max_distance):
        union.union(i, j)
    # members that share a hash with a linked first member are linked through the distance-0 pairs
    groups: dict[int, list[int]] = {}
    for i in range(len(values)):
        groups.setdefault(union.find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])
