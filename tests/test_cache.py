"""FeatureCache: hits, invalidation, namespaces, info/clear, crash safety and bad images."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from fgmm.cache import FeatureCache
from fgmm.data.images import load_image
from fgmm.encoders import TimmVisionEncoder
from fgmm.errors import ConfigError, DataError


class Counting:
    """A ``compute`` callback returning row ``i`` = ``[i, 2i, value(key)]`` and recording its calls."""

    def __init__(self, keys):
        self.keys = keys
        self.calls: list[list[int]] = []

    def __call__(self, indices):
        self.calls.append(list(indices))
        return torch.tensor([[i, 2 * i, float(len(self.keys[i]))] for i in indices])

    @property
    def computed(self) -> int:
        return sum(len(c) for c in self.calls)


@pytest.fixture(scope="module")
def encoder() -> TimmVisionEncoder:
    torch.manual_seed(0)
    return TimmVisionEncoder("test_efficientnet", pretrained=False, image_size=32)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        paths.append(tmp_path / "images" / f"{i}.jpg")
        paths[-1].parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def test_lookup_computes_missing_keys_once_and_keeps_order(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    keys = ["a", "bb", "ccc", "bb", "dddd"]
    compute = Counting(keys)
    first = cache.lookup("toy", keys, compute, batch_size=2, progress=False)
    assert first.shape == (5, 3) and first.dtype == torch.float32
    assert compute.calls == [[0, 1], [2, 4]]  # the duplicate "bb" is computed once
    assert torch.equal(first[3], first[1]) and first[4].tolist() == [4.0, 8.0, 4.0]

    again = Counting(keys)
    assert torch.equal(cache.lookup("toy", keys, again, progress=False), first) and again.calls == []

    more = ["dddd", "eeeee"]
    partial = Counting(more)
    rows = cache.lookup("toy", more, partial, progress=False)
    assert partial.calls == [[1]] and torch.equal(rows[0], first[4])
    assert len(list((tmp_path / "cache" / "toy").glob("shard-*"))) == 2  # each call's batches merged


def test_lookup_float16_storage_and_dim_mismatch(tmp_path):
    cache = FeatureCache(tmp_path, dtype="float16")
    rows = cache.lookup("half", ["x"], lambda idx: torch.tensor([[1 / 3, 2.0]]), progress=False)
    assert rows.dtype == torch.float32 and rows[0, 0].item() == pytest.approx(1 / 3, abs=1e-3)
    with pytest.raises(ConfigError, match="holds 2-d rows but 3-d rows"):
        cache.lookup("half", ["y"], lambda idx: torch.zeros(1, 3), progress=False)
    with pytest.raises(ConfigError, match=r"expected a \[1, d\] tensor"):
        cache.lookup("half", ["y"], lambda idx: torch.zeros(2, 2), progress=False)
    with pytest.raises(ConfigError, match="dtype"):
        FeatureCache(tmp_path, dtype="int8")
    with pytest.raises(ConfigError, match="invalid feature cache namespace '../up'"):
        cache.lookup("../up", ["y"], lambda idx: torch.zeros(1, 2), progress=False)


def test_interrupted_run_keeps_committed_batches_and_ignores_tmp_files(tmp_path):
    cache = FeatureCache(tmp_path)
    keys = [f"k{i}" for i in range(6)]
    compute = Counting(keys)

    def failing(indices):
        if indices[0] >= 4:
            raise KeyboardInterrupt  # a crash after two committed batches
        return compute(indices)

    with pytest.raises(KeyboardInterrupt):
        cache.lookup("ns", keys, failing, batch_size=2, progress=False)
    (tmp_path / "ns" / ".shard-123.safetensors.99.abcd.tmp").write_bytes(b"half-written garbage")
    resumed = Counting(keys)
    rows = cache.lookup("ns", keys, resumed, batch_size=2, progress=False)
    assert resumed.calls == [[4, 5]] and rows[:, 0].tolist() == [0, 1, 2, 3, 4, 5]


def test_corrupt_shard_gives_a_clear_error(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.lookup("ns", ["a"], lambda idx: torch.ones(1, 4), progress=False)
    (shard,) = (tmp_path / "ns").glob("shard-*.safetensors")
    shard.write_bytes(shard.read_bytes()[:-3])
    expected = "corrupt feature cache file.*fgmm cache clear --namespace ns"
    with pytest.raises(DataError, match=expected) as info:
        cache.lookup("ns", ["a"], lambda idx: torch.ones(1, 4), progress=False)
    assert info.value.path == shard
    assert cache.clear("ns") == ["ns"]
    assert cache.lookup("ns", ["a"], lambda idx: torch.ones(1, 4), progress=False).shape == (1, 4)


def test_encode_images_matches_the_encoder_and_hits_next_time(tmp_path, encoder, images, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    result = cache.encode_images(encoder, images, batch_size=2, num_workers=0, progress=False)
    transform = encoder.transform()
    direct = encoder.encode(torch.stack([transform(load_image(p)) for p in images]))
    assert result.kept == [0, 1, 2, 3, 4] and result.skipped == [] and result.encoded == 5
    assert torch.allclose(result.features, direct, atol=1e-5)

    calls = []
    original = encoder.encode
    monkeypatch.setattr(encoder, "encode", lambda batch: calls.append(len(batch)) or original(batch))
    again = cache.encode_images(encoder, images, num_workers=0, progress=False)
    assert calls == [] and torch.equal(again.features, result.features) and again.encoded == 0

    # editing a file (new content, size and mtime) re-encodes that file only
    Image.new("RGB", (30, 30), (0, 255, 0)).save(images[2])
    os.utime(images[2], ns=(1_000_000_000, 1_000_000_000))
    edited = cache.encode_images(encoder, images, num_workers=0, progress=False)
    assert calls == [1] and edited.encoded == 1
    assert torch.equal(edited.features[[0, 1, 3, 4]], result.features[[0, 1, 3, 4]])
    assert not torch.allclose(edited.features[2], result.features[2])


def test_namespaces_follow_the_fingerprint_and_info_clear(tmp_path, encoder, images):
    cache = FeatureCache(tmp_path / "cache")
    cache.encode_images(encoder, images[:3], num_workers=0, progress=False)
    torch.manual_seed(0)
    bigger = TimmVisionEncoder("test_efficientnet", pretrained=False, image_size=48)
    cache.encode_images(bigger, images, num_workers=0, progress=False)
    info = {row["namespace"]: row for row in cache.info()}
    assert set(info) == {encoder.fingerprint(), bigger.fingerprint()}
    small, large = info[encoder.fingerprint()], info[bigger.fingerprint()]
    assert (small["encoder"], small["modality"], small["dim"], small["entries"]) == (
        "test_efficientnet", "vision", 256, 3)
    assert large["entries"] == 5 and large["bytes"] > 5 * 256 * 4

    assert cache.clear(encoder.fingerprint()) == [encoder.fingerprint()]
    assert [row["namespace"] for row in cache.info()] == [bigger.fingerprint()]
    assert cache.clear() == [bigger.fingerprint()] and cache.info() == []


def test_bad_images_raise_or_are_skipped_and_reported(tmp_path, encoder, images):
    cache = FeatureCache(tmp_path / "cache")
    images[1].write_bytes(images[1].read_bytes()[:200])  # truncated JPEG
    missing = tmp_path / "images" / "gone.jpg"
    with pytest.raises(DataError, match="corrupt or truncated image") as info:
        cache.encode_images(encoder, images, batch_size=2, num_workers=1, progress=False)
    assert info.value.path == images[1]
    with pytest.raises(DataError, match="file not found"):
        cache.encode_images(encoder, [*images, missing], num_workers=0, progress=False)

    with pytest.warns(UserWarning, match="skipped 2 of 6 images"):
        result = cache.encode_images(encoder, [*images, missing], batch_size=2, num_workers=1,
                                     skip_bad=True, progress=False)
    assert result.kept == [0, 2, 3, 4] and result.features.shape == (4, 256)
    assert [(path.name, problem.split(":")[0]) for path, problem in result.skipped] == [
        ("1.jpg", "corrupt or truncated image"), ("gone.jpg", "file not found")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.encode_images(encoder, [images[0]], num_workers=0, progress=False)  # clean: no warning


def test_trainable_encoder_cannot_be_cached(tmp_path, images):
    trainable = TimmVisionEncoder("test_efficientnet", pretrained=False, frozen=False, image_size=32)
    with pytest.raises(ConfigError, match="not frozen"):
        FeatureCache(tmp_path).encode_images(trainable, images, progress=False)
