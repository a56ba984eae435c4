"""Audio: decoding (wav/flac/ogg/mp3 written here), bad files, windows, log-mel, encoders, cached features,
dev folds, class-level retrieval on toy data with a known answer, spectrogram pictures, the task (on the one
model; the model side itself: tests/test_audio_model.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fgmm.audio.alignment import bhattacharyya_scores, posterior_embedding, restrict, same_class_probability
from fgmm.audio.encoders import AUDIO_MODELS, SpectrogramCNNEncoder
from fgmm.audio.features import encode_recordings
from fgmm.audio.frontend import LogMel, mel_filterbank
from fgmm.audio.io import find_audio, read_audio, resample, scan_audio
from fgmm.audio.plot import Panel, spectrogram_figure
from fgmm.audio.pooling import pool_recordings
from fgmm.audio.protocol import duplicate_recordings, leave_one_out_folds, one_shot_folds
from fgmm.audio.windows import WindowConfig, frame, recording_windows, select_windows, window_count
from fgmm.cache import FeatureCache
from fgmm.encoders import create_encoder
from fgmm.errors import ConfigError, DataError
from fgmm.retrieval.metrics import mean_average_precision

RATE = 16_000


def tone(freq: float, seconds: float, rate: int = RATE, channels: int = 1, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


FORMATS = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("ogg", "OGG", "VORBIS"),
           ("mp3", "MP3", "MPEG_LAYER_III")]


@pytest.mark.parametrize(("suffix", "fmt", "subtype"), FORMATS)
def test_decodes_each_format_to_mono_at_the_wanted_rate(tmp_path: Path, suffix: str, fmt: str, subtype: str):
    if fmt not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write {fmt}")
    path = tmp_path / f"clip.{suffix}"
    sf.write(path, tone(1000, 1.0, 22_050, channels=2), 22_050, format=fmt, subtype=subtype)
    wave = read_audio(path, 32_000)
    assert wave.samples.ndim == 1 and wave.samples.dtype == np.float32
    assert wave.sample_rate == 32_000 and wave.source_rate == 22_050
    assert abs(wave.seconds - 1.0) < 0.1  # mp3/ogg encoders add a few ms of padding
    spectrum = np.abs(np.fft.rfft(wave.samples))
    assert abs(np.argmax(spectrum) * 32_000 / len(wave.samples) - 1000) < 20  # the tone survives resampling


def test_resample_lengths_and_odd_rates():
    assert len(resample(np.zeros(44_100, np.float32), 44_100, 32_000)) == 32_000
    assert len(resample(np.zeros(48_000, np.float32), 48_000, 16_000)) == 16_000
    assert abs(len(resample(np.zeros(44_101, np.float32), 44_101, 32_000)) - 32_000) <= 32  # approximated ratio


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.write_bytes(b"\x00garbage" * 50), "cannot decode audio"),
    (lambda p: sf.write(p, np.zeros((0,), np.float32), RATE), "empty audio file"),
    (lambda p: sf.write(p, np.zeros(RATE, np.float32), RATE), "silent recording"),
    (lambda p: sf.write(p, tone(20, 1.0, 200), 200), "absurd sample rate 200 Hz"),
    (lambda p: sf.write(p, tone(1000, 0.1, 500_000), 500_000), "absurd sample rate 500000 Hz"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path: Path, make, problem: str):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(DataError) as info:
        read_audio(path)
    assert problem in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_truncated_and_scan(tmp_path: Path):
    good = tmp_path / "good.wav"
    sf.write(good, tone(800, 0.5), RATE)
    truncated = tmp_path / "truncated.flac"
    sf.write(truncated, tone(800, 2.0), RATE, format="FLAC")
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match="file not found"):
        read_audio(tmp_path / "absent.mp3")
    scans = scan_audio([good, truncated, tmp_path / "absent.mp3"])
    assert scans[0].problem is None and scans[0].seconds == pytest.approx(0.5)
    assert scans[1].problem is not None and scans[2].problem == "file not found"
    assert find_audio(tmp_path) == [good, truncated]
    assert read_audio(good, max_seconds=0.25).truncated


def test_window_counts_and_padding():
    assert window_count(100, 30, 10) == 8 and window_count(30, 30, 10) == 1 and window_count(5, 30, 10) == 1
    windows = frame(np.arange(1, 6, dtype=np.float32), 8, 4, pad="wrap")
    assert windows.tolist() == [[1, 2, 3, 4, 5, 1, 2, 3]]
    windows = frame(np.arange(1, 11, dtype=np.float32), 6, 3, pad="constant")
    assert windows.shape == (3, 6) and windows[-1].tolist() == [7, 8, 9, 10, 0, 0]
    with pytest.raises(ConfigError):
        WindowConfig(pad="reflect")


def test_energy_selection_keeps_the_singing_windows():
    energy = np.array([-60.0, -20.0, -58.0, -25.0, -70.0])
    assert select_windows(energy, max_windows=16, floor_db=20).tolist() == [1, 3]
    assert select_windows(energy, max_windows=1, floor_db=None).tolist() == [1]
    assert select_windows(energy, max_windows=0, floor_db=None).tolist() == [0, 1, 2, 3, 4]
    rng = np.random.default_rng(0)
    samples = 0.001 * rng.standard_normal(10 * RATE).astype(np.float32)
    samples[6 * RATE:7 * RATE] += tone(3000, 1.0)  # a song between 6 and 7 s
    from fgmm.audio.io import Waveform

    windows = recording_windows(Waveform(samples, RATE, RATE), WindowConfig(seconds=1.0, hop_seconds=1.0,
                                                                            max_windows=2))
    assert windows.total == 10 and windows.starts.tolist() == [6.0]
    assert windows.samples.shape == (1, RATE)


def test_log_mel_shapes_and_range():
    filters = mel_filterbank(32_000, 1024, 64, 50, 14_000)
    assert filters.shape == (64, 513) and (filters >= 0).all() and (filters.sum(1) > 0).all()
    frontend = LogMel(n_mels=64)
    out = frontend(torch.randn(2, 32_000))
    assert out.shape == (2, 1, 64, frontend.frames(32_000)) and out.min() >= 0 and out.max() == 1


def test_default_encoder_shapes_fingerprint_and_registry():
    encoder = create_encoder("audio")
    assert isinstance(encoder, SpectrogramCNNEncoder) and encoder.name == "efficientnet_lite0" and encoder.frozen
    assert encoder.encode(torch.randn(2, 3 * 32_000) * 0.1).shape == (2, 1280)
    other = create_encoder("audio", windows=WindowConfig(max_windows=4))
    assert other.fingerprint() != encoder.fingerprint()
    assert {"efficientnet_lite0", "efficientnet_lite2", "birdnet"} <= set(AUDIO_MODELS.names())
    with pytest.raises(ConfigError, match="unknown audio model 'nope'"):
        create_encoder("audio", "nope")


def test_encoder_fine_tunes_end_to_end():
    encoder = SpectrogramCNNEncoder(pretrained=False, frozen=False, pool="avgmax", n_mels=32,
                                    windows=WindowConfig(seconds=0.5))
    features = encoder.encode(torch.randn(2, 16_000) * 0.1)
    features.sum().backward()
    grads = [p.grad for p in encoder.parameters() if p.grad is not None]
    assert features.shape == (2, encoder.dim) and grads and any(float(g.abs().sum()) > 0 for g in grads)


def _clips(folder: Path, freqs: list[float], seconds: float = 1.0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, freq in enumerate(freqs):
        paths.append(folder / f"clip{i}.wav")
        sf.write(paths[-1], tone(freq, seconds), RATE)
    return paths


SMALL_AUDIO = {"encoder_options": {"n_mels": 64, "windows": {"seconds": 1.0, "hop_seconds": 0.5, "max_windows": 3}}}
"""The audio modality of a model with :func:`small_encoder`'s front end."""


@pytest.fixture(scope="module")
def small_encoder() -> SpectrogramCNNEncoder:
    return SpectrogramCNNEncoder(windows=WindowConfig(seconds=1.0, hop_seconds=0.5, max_windows=3), n_mels=64)


def test_recording_features_are_cached_and_bad_files_listed(tmp_path: Path, small_encoder):
    paths = _clips(tmp_path / "clips", [500, 2000, 4000], seconds=2.0)
    bad = tmp_path / "clips" / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 10)
    cache = FeatureCache(tmp_path / "cache")
    with pytest.raises(DataError, match="bad.mp3: cannot decode audio"):
        encode_recordings(small_encoder, [*paths, bad], cache, progress=False)
    with pytest.warns(UserWarning, match="skipped 1 of 4 recordings"):
        first = encode_recordings(small_encoder, [paths[0], bad, paths[1], paths[2]], cache, skip_bad=True,
                                  progress=False)
    assert first.kept == [0, 2, 3] and first.skipped[0][0] == bad and "cannot decode" in first.skipped[0][1]
    assert [len(w) for w in first.windows] == [3, 3, 3] and first.totals == [3, 3, 3]
    assert first.encoded == 3 and first.windows_encoded == 9  # the failed call committed nothing
    again = encode_recordings(small_encoder, [paths[0], bad, paths[1], paths[2]], cache, skip_bad=True,
                              progress=False)
    assert again.encoded == 0 and again.skipped == first.skipped  # the bad file is remembered, and named
    for cached, fresh in zip(again.windows, first.windows, strict=True):
        assert torch.allclose(cached, fresh)
    with pytest.raises(DataError, match="bad.mp3"):
        encode_recordings(small_encoder, [bad], cache, progress=False)
    uncached = encode_recordings(small_encoder, paths, progress=False)
    assert torch.allclose(uncached.pooled("mean"), again.pooled("mean"), atol=1e-5)
    assert again.pooled("meanmax").shape == (3, 2 * small_encoder.dim)


def test_pooling_duplicates_and_dev_folds():
    rng = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 16, generator=rng)
    windows = [centres[c] + 0.1 * torch.randn(4, 16, generator=rng) for c in (0, 0, 1, 1, 2, 2)]
    windows.append(windows[3] * 2.0)  # the same audio again, louder
    assert pool_recordings(windows, "max").shape == (7, 16)
    assert duplicate_recordings(pool_recordings(windows, "l2mean")) == [6]
    assert len(leave_one_out_folds([0, 0, 1, 2, 2, 2])) == 5
    folds = one_shot_folds([0, 0, 0, 1], seed=0, repeats=2)
    assert len(folds) == 6 and all(len(f.train) == 2 and 3 in f.train for f in folds)


def test_toy_class_level_retrieval_with_known_answer():
    # 3 classes; images and recordings with confident, correct posteriors over classes [0, 1, 2]
    image = torch.log(torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]]))
    audio = torch.log(torch.tensor([[0.1, 0.1, 0.8], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]))
    image_labels, audio_labels = torch.tensor([0, 1, 2, 0]), torch.tensor([2, 0, 1])
    for scores in (bhattacharyya_scores(image, audio), same_class_probability(image, audio)):
        assert mean_average_precision(scores, image_labels, audio_labels) == pytest.approx(1.0)
        assert mean_average_precision(scores.T, audio_labels, image_labels) == pytest.approx(1.0)
    assert torch.allclose(posterior_embedding(image).norm(dim=1), torch.ones(4))
    restricted = restrict(image, [0, 1, 2], [2, 0, 7])
    assert restricted.shape == (4, 3) and torch.isinf(restricted[:, 2]).all()
    assert torch.allclose(restricted[:, :2].exp().sum(1), torch.ones(4))


def test_spectrogram_picture(tmp_path: Path):
    paths = _clips(tmp_path, [1500, 3000, 1400])
    out = spectrogram_figure(Panel(paths[0], "query"), [Panel(paths[2], "1. 0.91 class A", True),
                                                        Panel(paths[1], "2. 0.40 class B", False)],
                             tmp_path / "nearest.png", seconds=1.0)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_procedural_songs_carry_class_signal(tiny_procedural):
    from dataclasses import replace

    from fgmm.space import create_model

    samples = [replace(s, label=s.meta["clean_label"]) for s in tiny_procedural
               if s.audio is not None and s.meta["clean_label"] in (0, 1, 2, 3)]
    model = create_model("audio", classes=tiny_procedural.class_names, modalities={"audio": SMALL_AUDIO})
    model.fit(samples[::2])  # the one model, audio only: its image side is not part of the preset
    predicted = model.predict_proba(samples[1::2]).argmax(1).numpy()
    accuracy = float((predicted == np.array([s.label for s in samples[1::2]])).mean())
    assert accuracy >= 0.6  # chance: 0.25


def _recordings_dataset(tmp_path: Path, held_out: bool):
    """3 classes of tone 'songs' (2-3 recordings each; with ``held_out`` the last of each is ``is_train=0``) and
    4 images per class (features given directly: class-separable vectors)."""
    from fgmm.data.sample import MultiModalDataset, Sample

    freqs = {0: 600.0, 1: 2500.0, 2: 6000.0}
    recordings = []
    for label, freq in freqs.items():
        for k in range(3 if label else 2):
            path = tmp_path / f"song{label}{k}.wav"
            rng = np.random.default_rng(10 * label + k)
            sf.write(path, tone(freq * (1 + 0.02 * k), 1.0) + 0.01 * rng.standard_normal(RATE).astype(np.float32),
                     RATE)
            last = k == (2 if label else 1)
            recordings.append(Sample(id=path.stem, label=label, audio=path,
                                     meta={"is_train": "0" if held_out and last else "1"}))
    recordings.append(Sample(id="copy", label=1, audio=tmp_path / "song10.wav", meta={"is_train": "1"}))
    samples = [Sample(id=f"img{c}{k}", label=c) for c in freqs for k in range(4)]
    dataset = MultiModalDataset(samples=samples, class_names=["low", "mid", "high"],
                                split=["train", "train", "test", "test"] * 3, recordings=recordings)
    centres = torch.eye(3, 8) * 5
    features = torch.stack([centres[s.label] + 0.1 * torch.randn(8) for s in samples])
    return dataset, features


@pytest.mark.parametrize("held_out", [True, False])
def test_audio_task_keys(tmp_path: Path, held_out: bool):
    from fgmm.tasks import TaskContext, run_tasks
    from fgmm.tasks.audio import AudioRun, audio_recordings  # (also registers the audio tasks)

    dataset, features = _recordings_dataset(tmp_path, held_out)
    ctx = TaskContext(dataset=dataset, features={"image": features}, quick=True, cache=FeatureCache(tmp_path / "c"))
    ctx.shared["audio"] = AudioRun(ctx, *audio_recordings(ctx), audio=SMALL_AUDIO)  # a faster test
    metrics = run_tasks(ctx, ["audio_default"])
    assert metrics["audio_path"] == "default" and metrics["audio_skipped"] == []
    if held_out:  # the contract keys, on 3 held-out recordings
        assert metrics["audio_held_out"] == 3
        for key in ("audio_top1", "i2a_mAP", "a2i_mAP", "audio_top1_default"):
            assert 0.0 <= metrics[key] <= 1.0
        assert metrics["audio_top1"] == pytest.approx(1.0) and metrics["i2a_mAP"] == pytest.approx(1.0)
    else:  # the dev keys; the copied recording is dropped before the folds
        assert "audio_top1" not in metrics and metrics["audio_dev_duplicates_dropped"] == 1
        for key in ("audio_top1_dev_loo_default", "audio_top1_dev_1shot_default", "i2a_mAP_dev_1shot_default",
                    "a2i_mAP_dev_1shot_default", "i2a_mAP_dev_chance"):
            assert 0.0 <= metrics[key] <= 1.0
        assert metrics["audio_top1_dev_loo_default"] >= 0.75
