"""The procedural dataset: determinism, structure (classes, unseen, noise) and signal in every modality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from fgmm.data import generate_procedural, procedural_class_spec
from fgmm.data.procedural import ATTRIBUTE_GROUPS, ATTRIBUTE_NAMES, GENUS_GROUPS, SAMPLE_RATE, SPECIES_GROUPS
from fgmm.ownership import MARKER


def _files(root: Path) -> dict[str, bytes]:
    """The dataset's files (not the ownership marker, which records when the folder was made)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != MARKER}


def test_same_seed_gives_byte_identical_files(tiny_procedural, tmp_path: Path) -> None:
    again = generate_procedural(tmp_path / "again", num_classes=6, images_per_class=8, image_size=48,
                                unseen_classes=2, noise_rate=0.2, seed=0)
    first, second = _files(tiny_procedural.root), _files(again.root)
    assert len(first) == 1 + 1 + 1 + 1 + 3 * 48  # csv x3, dataset.json, image + wav + texts per sample
    assert first == second
    other = generate_procedural(tmp_path / "other", num_classes=6, images_per_class=8, image_size=48,
                                unseen_classes=2, noise_rate=0.2, seed=1)
    assert _files(other.root)["samples.csv"] != first["samples.csv"]


def test_structure_of_the_generated_set(tiny_procedural) -> None:
    ds = tiny_procedural
    assert (len(ds), ds.num_classes, ds.name, ds.meta["format"]) == (48, 6, "procedural", "folder")
    assert ds.modality_counts() == {"image": 48, "text": 48, "audio": 48, "location": 48, "time": 48}
    assert all(len(s.texts) == 5 for s in ds)
    with Image.open(ds[0].image) as image:
        assert image.size == (48, 48) and image.mode == "RGB"
    info = sf.info(ds[0].audio)
    assert (info.samplerate, info.frames, info.channels) == (SAMPLE_RATE, int(1.5 * SAMPLE_RATE), 1)
    assert len(ds.unseen_classes) == 2
    unseen = set(ds.unseen_classes)
    for s, part in zip(ds, ds.split, strict=True):
        if s.meta["clean_label"] in unseen:
            assert part == "test" and s.label == s.meta["clean_label"]
    seen_test = [s for s, p in zip(ds, ds.split, strict=True) if p == "test" and s.label not in unseen]
    assert len(seen_test) == 4 * 2 and all(s.label == s.meta["clean_label"] for s in seen_test)  # 25% of 8
    train = [s for s, p in zip(ds, ds.split, strict=True) if p == "train"]
    noisy = [s for s in train if s.label != s.meta["clean_label"]]
    assert len(train) == 24 and len(noisy) == round(0.2 * 24)
    assert all(s.label not in unseen for s in noisy)
    assert ds.class_attributes.shape == (6, len(ATTRIBUTE_NAMES)) and ds.attribute_names == ATTRIBUTE_NAMES
    assert ds.meta["class_spec"] == procedural_class_spec(6, 0, unseen_classes=2)
    assert all(name in ds.class_descriptions[i] for i, name in enumerate(ds.class_names))


def test_class_spec_is_fine_grained() -> None:
    spec = procedural_class_spec(20, seed=0, unseen_classes=5)
    assert [c["index"] for c in spec] == list(range(20))
    assert len({c["name"] for c in spec}) == 20
    assert spec[0]["name"].endswith(spec[0]["genus"]) and "-" in spec[0]["name"]
    assert sum(c["unseen"] for c in spec) == 5

    def top(c: dict, group: str) -> str:
        return max(ATTRIBUTE_GROUPS[group], key=lambda v: c["attributes"][f"{group}::{v}"])

    for c in spec:
        for group, values in ATTRIBUTE_GROUPS.items():
            strengths = [c["attributes"][f"{group}::{v}"] for v in values]
            assert all(0.0 <= s <= 1.0 for s in strengths) and sum(strengths) == pytest.approx(1.0, abs=1e-3)
    genera = {c["genus"] for c in spec}
    assert len(genera) == 5
    for genus in genera:
        members = [c for c in spec if c["genus"] == genus]
        assert any(not c["unseen"] for c in members)
        for a in members:
            assert all(top(a, g) == top(members[0], g) for g in GENUS_GROUPS)
            assert all(a["song"]["sweep"] == members[0]["song"]["sweep"] for a in members)
        differing = [sum(top(a, g) != top(b, g) for g in SPECIES_GROUPS)
                     for i, a in enumerate(members) for b in members[i + 1:]]
        assert min(differing) >= 1 and max(differing) <= 4  # each differs from the genus base in 1-2 groups
    assert procedural_class_spec(20, seed=0, unseen_classes=5) == spec
    assert procedural_class_spec(20, seed=1, unseen_classes=5) != spec
    with pytest.raises(ValueError, match="unseen_classes"):
        procedural_class_spec(4, seed=0, unseen_classes=4)


@pytest.fixture(scope="module")
def signal_set(tmp_path_factory: pytest.TempPathFactory):
    return generate_procedural(tmp_path_factory.mktemp("signal"), num_classes=8, images_per_class=30,
                               image_size=48, unseen_classes=0, noise_rate=0.0, seed=3)


def _nearest_centroid_accuracy(ds, features: np.ndarray) -> float:
    labels, train = ds.labels, np.array([p == "train" for p in ds.split])
    x = (features - features[train].mean(0)) / (features[train].std(0) + 1e-9)
    centroids = np.stack([x[train & (labels == c)].mean(0) for c in range(ds.num_classes)])
    predicted = np.argmin(((x[~train, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    return float((predicted == labels[~train]).mean())


def _chroma_histogram(path: Path, bins: int = 8) -> np.ndarray:
    """Brightness-normalised colour histogram of the centre of the image (where the bird is)."""
    pixels = np.asarray(Image.open(path), dtype=np.float32)[8:40, 8:40].reshape(-1, 3)
    total = pixels.sum(1) + 1
    r, g = (np.minimum((pixels[:, c] / total * bins * 1.5).astype(int), bins - 1) for c in (0, 1))
    value = np.minimum((pixels.max(1) / 64).astype(int), 3)
    return np.sqrt(np.bincount((r * bins + g) * 4 + value, minlength=bins * bins * 4) / len(pixels))


def _peak_frequency(path: Path) -> list[float]:
    wave, rate = sf.read(path)
    spectrum, freqs = np.abs(np.fft.rfft(wave)), np.fft.rfftfreq(len(wave), 1 / rate)
    spectrum[freqs < 500] = 0
    return [float(freqs[np.argmax(spectrum)])]


def _bag_of_words(ds) -> np.ndarray:
    words = [[w for t in s.texts for w in t.rstrip(".").replace(",", "").split()] for s in ds]
    vocab = {w: i for i, w in enumerate(sorted({w for ws in words for w in ws}))}
    counts = np.zeros((len(ds), len(vocab)))
    for row, ws in enumerate(words):
        np.add.at(counts[row], [vocab[w] for w in ws], 1)
    return counts


def test_every_modality_carries_class_signal(signal_set) -> None:
    ds = signal_set
    chance = 1 / ds.num_classes
    days = np.array([s.time.timetuple().tm_yday for s in ds]) * 2 * np.pi / 365
    accuracy = {
        "image": _nearest_centroid_accuracy(ds, np.stack([_chroma_histogram(s.image) for s in ds])),
        "text": _nearest_centroid_accuracy(ds, _bag_of_words(ds)),
        "audio": _nearest_centroid_accuracy(ds, np.array([_peak_frequency(s.audio) for s in ds])),
        "location": _nearest_centroid_accuracy(ds, np.array([s.location for s in ds])),
        "time": _nearest_centroid_accuracy(ds, np.stack([np.cos(days), np.sin(days)], 1)),
    }
    assert all(value > 2 * chance for name, value in accuracy.items() if name != "time"), accuracy
    assert accuracy["time"] > 1.5 * chance, accuracy  # seasons overlap more: sibling species share a peak
