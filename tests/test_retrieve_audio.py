"""Recordings in the retrieval index: ``Retriever.build("audio", ...)``, ``fgmm index build --audio DIR``,
``fgmm retrieve INDEX --audio clip`` (audio -> recordings, audio -> photos) and images -> recordings, through
the joint space of an FGModel with an audio modality; bad files; a model without audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image
from test_retrieve_cli import invoke, offline  # noqa: F401  (the CLI app; offline: autouse)

from fgmm.data.procedural import synthesize_song
from fgmm.data.sample import Sample
from fgmm.errors import ConfigError, DataError
from fgmm.retrieval import Retriever
from fgmm.space import create_model
from fgmm.space.inputs import model_encoder

RATE = 16_000
CLASSES = ["low", "mid", "high"]
SONGS = [{"pitch_hz": pitch, "rate_hz": rate, "syllable_s": 0.08, "sweep": sweep, "vibrato_hz": 6.0, "harmonics": 2}
         for pitch, rate, sweep in ((700.0, 3.0, 0.0), (2200.0, 6.0, 0.5), (5500.0, 9.0, -0.5))]
COLOURS = [(200, 30, 30), (30, 30, 200), (30, 180, 30)]
SMALL = {"encoder_options": {"n_mels": 64, "windows": {"seconds": 1.0, "hop_seconds": 0.5, "max_windows": 2}}}
"""The small front end of tests/test_audio_model.py: a faster test."""
VISION = {"encoder": "efficientnet_lite0", "projection": "whiten", "projection_options": {"shrinkage": 1.0}}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    """``recordings/<class>/song<k>.wav`` (3 songs a class), ``photos/<class>/photo<k>.jpg`` (2 a class),
    ``query.flac`` (an unheard 'mid' song)."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    for name, song, colour in zip(CLASSES, SONGS, COLOURS, strict=True):
        (root / "recordings" / name).mkdir(parents=True)
        (root / "photos" / name).mkdir(parents=True)
        for k in range(3):
            sf.write(root / "recordings" / name / f"song{k}.wav", synthesize_song(song, rng, seconds=1.5), RATE)
        for k in range(2):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / "photos" / name / f"photo{k}.jpg")
    sf.write(root / "query.flac", synthesize_song(SONGS[1], rng, seconds=1.5), RATE)
    return root


def _samples(root: Path, kind: str, suffix: str) -> list[Sample]:
    return [Sample(id=f"{kind}-{p.parent.name}-{p.stem}", label=CLASSES.index(p.parent.name), **{kind: p})
            for p in sorted((root / ("photos" if kind == "image" else "recordings")).rglob(f"*{suffix}"))]


@pytest.fixture(scope="module")
def models(media: Path) -> dict[str, Path]:
    """Saved models: ``image-audio`` (photos and recordings, never paired) and ``image`` (no audio)."""
    from fgmm.train import TrainConfig

    photos, songs = _samples(media, "image", ".jpg"), _samples(media, "audio", ".wav")
    both = create_model("image-audio", classes=CLASSES, modalities={"image": VISION, "audio": SMALL})
    both.fit(photos + songs, train=TrainConfig(epochs=40, batch_size=8, lr=3e-3, progress=False,
                                               out_dir=media / "run"))
    image_only = create_model("image", classes=CLASSES, modalities={"image": VISION})
    image_only.fit(photos)
    return {"image-audio": both.save_pretrained(media / "image-audio-model"),
            "image": image_only.save_pretrained(media / "image-model")}


def test_api_audio_index_finds_same_class_recordings_and_round_trips(media: Path, models: dict[str, Path],
                                                                    tmp_path: Path):
    from fgmm.space import FGModel

    model = FGModel.from_pretrained(models["image-audio"])
    songs = _samples(media, "audio", ".wav")
    encoders = {m: model_encoder(model, m) for m in ("image", "audio")}
    retriever = Retriever.build("audio", [s.audio for s in songs], [s.id for s in songs], encoders=encoders,
                                model=model, labels=[s.label for s in songs], class_names=CLASSES)
    assert retriever.index.info.modality == "audio" and len(retriever.index) == 9
    top = retriever.search("audio", [media / "query.flac"], k=3).rows(0)
    assert [row["class"] for row in top] == ["mid"] * 3  # an unheard song: its class's recordings first
    by_photo = retriever.search("image", [media / "photos" / "high" / "photo0.jpg"], k=3).rows(0)
    assert [row["class"] for row in by_photo] == ["high"] * 3  # images -> recordings
    retriever.save(tmp_path / "index")
    items = json.loads((tmp_path / "index" / "items.json").read_text())
    assert not any(Path(p).is_absolute() for p in items["paths"])  # relative to the index, as for images
    loaded = Retriever.load(tmp_path / "index", modalities=["audio"])
    again = loaded.search("audio", [media / "query.flac"], k=3).rows(0)
    assert [r["id"] for r in again] == [r["id"] for r in top]
    assert Path(again[0]["path"]).resolve().is_file()


def test_cli_audio_index_audio_and_image_queries_and_spectrograms(media: Path, models: dict[str, Path],
                                                                   tmp_path: Path):
    built = invoke("index", "build", "--audio", media / "recordings", "--model", models["image-audio"],
                   "--out", tmp_path / "songs")
    assert built.exit_code == 0, built.output
    assert "indexed 9 audio items" in built.output
    heard = invoke("retrieve", tmp_path / "songs", "--audio", media / "query.flac", "-k", "3", "--json",
                   "--grid", tmp_path / "spectrograms.png")
    assert heard.exit_code == 0, heard.output
    rows = json.loads(heard.stdout)["results"]
    assert [r["class"] for r in rows] == ["mid"] * 3
    assert (tmp_path / "spectrograms.png").read_bytes()[:4] == b"\x89PNG"
    seen = invoke("retrieve", tmp_path / "songs", "--image", media / "photos" / "low" / "photo1.jpg", "--json")
    assert seen.exit_code == 0, seen.output
    assert json.loads(seen.stdout)["results"][0]["class"] == "low"
    photos = invoke("index", "build", "--images", media / "photos", "--model", models["image-audio"],
                    "--out", tmp_path / "photos")
    assert photos.exit_code == 0, photos.output
    sung = invoke("retrieve", tmp_path / "photos", "--audio", media / "query.flac", "-k", "2", "--json")
    assert sung.exit_code == 0, sung.output
    assert [r["class"] for r in json.loads(sung.stdout)["results"]] == ["mid", "mid"]  # a song -> its photos


def test_model_without_audio_is_a_clear_error(media: Path, models: dict[str, Path], tmp_path: Path):
    refused = invoke("index", "build", "--audio", media / "recordings", "--model", models["image"],
                     "--out", tmp_path / "songs")
    assert refused.exit_code != 0 and "has no 'audio' modality" in refused.output
    assert not (tmp_path / "songs" / "index.json").exists()
    photos = invoke("index", "build", "--images", media / "photos", "--model", models["image"],
                    "--out", tmp_path / "photos")
    assert photos.exit_code == 0, photos.output
    query = invoke("retrieve", tmp_path / "photos", "--audio", media / "query.flac")
    assert query.exit_code != 0 and "no 'audio' modality" in query.output
    from fgmm.space import FGModel

    model = FGModel.from_pretrained(models["image"])
    with pytest.raises(ConfigError, match="the model has no 'audio' modality"):
        Retriever.build("audio", [media / "query.flac"], ["q"], encoders={"image": model_encoder(model, "image")},
                        model=model)


def test_bad_recordings_fail_in_one_line_or_are_skipped_and_listed(media: Path, models: dict[str, Path],
                                                                   tmp_path: Path):
    folder = tmp_path / "recordings"
    (folder / "low").mkdir(parents=True)
    (folder / "low" / "song0.wav").write_bytes((media / "recordings" / "low" / "song0.wav").read_bytes())
    (folder / "mid").mkdir()
    (folder / "mid" / "song0.wav").write_bytes((media / "recordings" / "mid" / "song0.wav").read_bytes())
    (folder / "mid" / "broken.mp3").write_bytes(b"not audio at all" * 10)
    sf.write(folder / "mid" / "silent.ogg", np.zeros(RATE, dtype=np.float32), RATE)
    failed = invoke("index", "build", "--audio", folder, "--model", models["image-audio"], "--out", tmp_path / "a")
    assert failed.exit_code != 0 and "broken.mp3: cannot decode audio" in failed.output
    assert "Traceback" not in failed.output
    skipped = invoke("index", "build", "--audio", folder, "--model", models["image-audio"], "--out", tmp_path / "b",
                     "--skip-bad")
    assert skipped.exit_code == 0, skipped.output
    assert "indexed 2 audio items" in skipped.output and "skipped 2 unreadable audio file(s)" in skipped.output
    assert "broken.mp3" in skipped.output and "silent.ogg: silent recording" in skipped.output
    missing = invoke("retrieve", tmp_path / "b", "--audio", tmp_path / "nothing.mp3")
    assert missing.exit_code != 0 and "nothing.mp3: query audio not found" in missing.output


def test_skip_bad_applies_to_image_folders_too(media: Path, models: dict[str, Path], tmp_path: Path):
    folder = tmp_path / "photos"
    (folder / "low").mkdir(parents=True)
    (folder / "low" / "photo0.jpg").write_bytes((media / "photos" / "low" / "photo0.jpg").read_bytes())
    (folder / "low" / "broken.jpg").write_bytes(b"not a jpeg")
    built = invoke("index", "build", "--images", folder, "--model", models["image"], "--out", tmp_path / "i",
                   "--skip-bad")
    assert built.exit_code == 0, built.output
    assert "indexed 1 image items" in built.output and "broken.jpg" in built.output
    from fgmm.space import FGModel

    model = FGModel.from_pretrained(models["image"])
    with pytest.raises(DataError, match="none of the 1 image inputs could be read"):
        Retriever.build("image", [folder / "low" / "broken.jpg"], ["b"], encoders={"image": model_encoder(
            model, "image")}, model=model, skip_bad=True)
