"""The text encoder: offline MiniLM from its PyPI package, HF mean-pooling backend, batching, caching,
clear errors for hub names offline and bad texts, and fine-tuning as a tower of the joint model."""

from __future__ import annotations

import hashlib

import pytest
import torch

from fgmm.cache import FeatureCache
from fgmm.encoders import ENCODERS, create_encoder
from fgmm.encoders.text import TextEncoder, offline_text_model, text_key
from fgmm.errors import ConfigError, DataError, WeightsUnavailableError

CAPTIONS = ["a small bird with a red crown", "this bird has a bright red head and a short beak",
            "a large grey seabird with long narrow wings", "the ship sailed into the harbour at dawn"]


@pytest.fixture(scope="module")
def encoder() -> TextEncoder:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return create_encoder("text")


def test_offline_default_loads_from_the_package(encoder):
    assert "text" in ENCODERS
    assert encoder.name == "all-MiniLM-L6-v2" and encoder.modality == "text" and encoder.dim == 384
    assert encoder.frozen and not any(p.requires_grad for p in encoder.parameters())
    assert offline_text_model("sentence-transformers/all-MiniLM-L6-v2") is offline_text_model("ALL-MINILM-L6-V2")
    assert encoder.preprocessing() == {"backend": "sentence-transformers", "max_length": 256, "normalize": True}


def test_embeddings_are_unit_vectors_with_meaning(encoder):
    vectors = encoder.encode(CAPTIONS)
    assert vectors.shape == (4, 384)
    assert torch.allclose(vectors.norm(dim=1), torch.ones(4), atol=1e-5)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] > similarity[0, 3]  # red-headed birds, then birds, then a ship


def test_batching_does_not_change_vectors(encoder):
    together = encoder.encode(CAPTIONS)
    one_by_one = torch.cat([encoder.encode([c]) for c in CAPTIONS])
    assert torch.allclose(together, one_by_one, atol=1e-5)


def test_hf_backend_mean_pooling_matches_sentence_transformers(encoder):
    hf = create_encoder("text", backend="hf")
    assert hf.fingerprint() != encoder.fingerprint()  # other preprocessing, other cache namespace
    assert torch.allclose(hf.encode(CAPTIONS), encoder.encode(CAPTIONS), atol=1e-4)


def test_cache_reuses_vectors(encoder, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    first = encoder.encode_cached(CAPTIONS, cache)
    calls = []
    monkeypatch.setattr(encoder, "encode", lambda texts: calls.append(texts) or torch.zeros(len(texts), 384))
    again = encoder.encode_cached(CAPTIONS[::-1] + ["a new caption"], cache)
    assert calls == [["a new caption"]]  # only the unseen text is encoded
    assert torch.allclose(again[:4], first.flip(0))
    info = cache.info()
    assert info[0]["namespace"] == encoder.fingerprint() and info[0]["entries"] == 5
    assert text_key("é") == hashlib.sha256("é".encode()).hexdigest()


def test_hub_name_offline_fails_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match=r"'no-such-org/no-such-model'.*all-MiniLM-L6-v2"):
        create_encoder("text", "no-such-org/no-such-model")


def test_local_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(DataError, match="not a sentence-transformers / Hugging Face model folder"):
        create_encoder("text", str(tmp_path))


def test_bad_texts_are_refused(encoder):
    with pytest.raises(DataError, match="text 1 is empty"):
        encoder.encode(["fine", "   "])
    with pytest.raises(DataError, match="text 0 is a bytes"):
        encoder.encode([b"\xff\xfe"])
    with pytest.raises(DataError, match="single string"):
        encoder.encode("a bird")


def test_an_unfrozen_tower_fine_tunes_and_freezes_again():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        tower = create_encoder("text", frozen=False)
    with pytest.raises(ConfigError, match="not frozen"):
        tower.encode_cached(["a bird"], FeatureCache("unused"))
    head = torch.nn.Linear(tower.dim, 2)
    tokens = tower.tokenize(CAPTIONS[:2])
    torch.nn.functional.cross_entropy(head(tower(**tokens)), torch.tensor([0, 1])).backward()
    names = {name for name, _ in tower.named_parameters()}
    trained = {name for name, p in tower.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained == {name for name in names if ".pooler." not in name}  # all but BERT's pooler (unused)
    tower.zero_grad(set_to_none=True)
    tower.requires_grad_(False).eval()  # frozen again: encode() and forward() agree (no dropout)
    with torch.no_grad():
        assert torch.allclose(tower(**tokens), tower.encode(CAPTIONS[:2]), atol=1e-5)
