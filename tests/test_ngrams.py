"""The word n-gram text model (no weights) and the product-of-experts preset that uses it."""

from __future__ import annotations

import pytest
import torch

from fgmm.cache import FeatureCache
from fgmm.encoders import create_encoder, list_pretrained
from fgmm.encoders.ngrams import NGRAM_FEATURES
from fgmm.errors import DataError
from fgmm.space import create_model


@pytest.fixture(scope="module")
def ngrams():
    return create_encoder("text", "word-ngrams")


def test_word_ngrams_are_unit_sublinear_counts_of_words_and_word_pairs(ngrams):
    assert "word-ngrams" in list_pretrained("text") and ngrams.analytic and ngrams.dim == NGRAM_FEATURES
    z = ngrams.encode(["yellow crown, black wings", "black crown, yellow wings", "Yellow crown black wings",
                       "a a a bird bird"])
    assert z.shape == (4, NGRAM_FEATURES) and torch.allclose(z.norm(dim=1), torch.ones(4))
    assert torch.allclose(z[0], z[2])  # lower case, punctuation ignored
    # same four words, different pairs: 4 shared unigrams of 7 n-grams each (one-count buckets, no collision)
    assert (z[0] @ z[1]).item() == pytest.approx(4 / 7, abs=1e-6)
    values = z[3][z[3] > 0]  # single letters are not words; "bird" twice, "bird bird" once
    assert len(values) == 2 and values.max() / values.min() == pytest.approx(torch.log1p(torch.tensor(2.0)) /
                                                                               torch.log1p(torch.tensor(1.0)))


def test_word_ngrams_are_deterministic_and_not_cached(ngrams, tmp_path):
    again = create_encoder("text", "word-ngrams")
    assert again.fingerprint() == ngrams.fingerprint() != create_encoder("text").fingerprint()
    cache = FeatureCache(tmp_path / "cache")
    texts = ["a small grey bird", "a red crown"]
    assert torch.equal(ngrams.encode_cached(texts, cache), again.encode(texts))
    assert not any(path.is_file() for path in (tmp_path / "cache").rglob("*"))  # cheaper to recompute than to store
    with pytest.raises(DataError, match="text 1 is empty"):
        ngrams.encode(["a bird", "  "])


def test_the_ngram_product_preset_multiplies_the_image_and_caption_word_experts(ngrams):
    torch.manual_seed(0)
    names = ["cardinal", "goldfinch", "crow"]
    words = ["a bright red bird with a red crest", "a yellow bird with black wings",
             "an all black bird with a thick bill"]
    labels = torch.arange(3).repeat_interleave(8)
    image = torch.randn(24, 16) + 0.3 * torch.nn.functional.one_hot(labels, 16).float()  # weak images
    texts = ngrams.encode([words[i] for i in labels.tolist()])
    model = create_model("image-text-ngrams", classes=names, modalities={"image": {"input_dim": 16},
                                                                            "text": {"input_dim": NGRAM_FEATURES}})
    assert model.config.modalities["text"].encoder == "word-ngrams"
    from fgmm.space import ModalityTable

    model.fit_features({"image": ModalityTable.one_per_sample(image), "text": ModalityTable.one_per_sample(texts)},
                       labels)
    query_image = torch.randn(3, 16)
    query_text = ngrams.encode(["red crest, red bird", "black wings on a yellow bird", "thick bill, black bird"])
    fused = model.logits({"image": query_image, "text": query_text}).argmax(1)
    assert fused.tolist() == [0, 1, 2]  # the words decide where the images cannot


def test_an_ngram_product_model_reads_raw_captions_and_round_trips(tmp_path):
    from fgmm.space import FGModel, ModalityTable

    names = ["cardinal", "goldfinch"]
    captions = ["a bright red bird with a red crest", "a yellow bird with black wings"] * 4
    labels = torch.tensor([0, 1] * 4)
    model = create_model("image-text-ngrams", classes=names, modalities={"image": {"input_dim": 4},
                                                                            "text": {"input_dim": NGRAM_FEATURES}})
    texts = create_encoder("text", "word-ngrams").encode(captions)
    model.fit_features({"image": ModalityTable.one_per_sample(torch.randn(8, 4)),
                        "text": ModalityTable.one_per_sample(texts)}, labels)
    queries = [["red crest"], ["black wings, yellow body"]]
    before = model.predict_proba(texts=queries)
    assert before.argmax(1).tolist() == [0, 1]
    loaded = FGModel.from_pretrained(model.save_pretrained(tmp_path / "model"))
    assert torch.allclose(loaded.predict_proba(texts=queries), before)
