"""Shared fixtures: a tiny CUB-200-2011 tree and a tiny procedural dataset.

* ``tiny_cub`` -> Path: 3 classes x 4 JPEGs (40x30) in the official layout, with boxes (one past
  the border), 3 parts, 4 class attributes, captions for class 1 and one recording of class 2.
  Every image lands in train; the loader's seeded holdout puts one per class in test.
* ``make_tiny_cub(**options)`` -> Path: the same tree with variations (see :func:`build_tiny_cub`).
* ``tiny_cub_corrupt`` -> Path: ``tiny_cub`` whose first image (id 10) is a truncated JPEG.
* ``tiny_procedural`` -> MultiModalDataset (session-scoped): 6 classes x 8 images of 48 px,
  2 unseen classes, 20% label noise; its files are under ``tiny_procedural.root``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tiny_cub import build_tiny_cub  # tests/tiny_cub.py (pytest puts tests/ on sys.path)

from fgmm.data.procedural import generate_procedural
from fgmm.data.sample import MultiModalDataset


@pytest.fixture(scope="session", autouse=True)
def _private_feature_cache(tmp_path_factory: pytest.TempPathFactory):
    """Commands default to $FGMM_CACHE (else ~/.cache/fgmm/features): point it into the test session, so that
    no test writes into the user's cache."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FGMM_CACHE", str(tmp_path_factory.mktemp("fgmm-cache")))
    yield
    patch.undo()


@pytest.fixture
def make_tiny_cub(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_tiny_cub(test_ids=..., missing=..., corrupt=..., duplicate=...)`` -> root."""
    counter = iter(range(1000))
    return lambda **options: build_tiny_cub(tmp_path / f"cub{next(counter)}", **options)


@pytest.fixture
def tiny_cub(make_tiny_cub: Callable[..., Path]) -> Path:
    return make_tiny_cub()


@pytest.fixture
def tiny_cub_corrupt(make_tiny_cub: Callable[..., Path]) -> Path:
    return make_tiny_cub(corrupt=True)


@pytest.fixture(scope="session")
def tiny_procedural(tmp_path_factory: pytest.TempPathFactory) -> MultiModalDataset:
    return generate_procedural(tmp_path_factory.mktemp("procedural"), num_classes=6, images_per_class=8,
                               image_size=48, unseen_classes=2, noise_rate=0.2, seed=0)


@pytest.fixture
def one_thread():
    """Tiny models train faster on one thread than on contended ones."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
