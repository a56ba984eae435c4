r"""Word n-gram text features: a bag of hashed words and word pairs, no weights.

.. math::
    \mathbf{z}(s) = \frac{\log\big(1 + \mathbf{c}(s)\big)}{\lVert \log\big(1 + \mathbf{c}(s)\big) \rVert_2},
    \qquad c_j(s) = \big|\{g \in \mathrm{ngrams}_{1,2}(s) : h(g) \bmod D = j\}\big|

:math:`\mathrm{ngrams}_{1,2}(s)` are the lower-cased words of *s* (two characters or more) and the pairs of
consecutive words, :math:`h` is MurmurHash3 (scikit-learn's ``HashingVectorizer``, signs off) and
:math:`D` = :data:`NGRAM_FEATURES`. Sublinear counts and unit length as in TF-IDF retrieval; the inverse
document frequency is left to what consumes the vectors (the whitening of
:class:`~fgmm.space.modality_prior.ClassMeansPrior` centres and rescales every direction on the training
texts), so the encoder needs no fitting and its vectors can be cached like any frozen encoder's.

Fine-grained descriptions name parts and colours ("a yellow crown", "black wing bars"): a sentence
encoder such as MiniLM averages them into one meaning, while word pairs keep which colour goes with
which part. As the text expert of the product of experts (preset ``"image-text-ngrams"``) these vectors
recognise more CUB classes from captions alone than MiniLM's (see benchmarks/README.md); MiniLM stays
the encoder of the joint space, where free-text queries need meaning rather than words.

Use it as a text model name: ``create_encoder("text", "word-ngrams")`` (no download, no weights).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fgmm.encoders.text import TEXT_BACKENDS

NGRAM_MODEL = "word-ngrams"
"""The text model name of these features (:data:`fgmm.encoders.text.ANALYTIC_TEXT_MODELS`)."""
NGRAM_FEATURES = 2048
"""Hash buckets :math:`D` (4,096 did no better in a scratch check on an inner validation split of CUB's training
images; the choice of text model itself is ``benchmarks/text_expert.py``)."""
NGRAM_RANGE = (1, 2)
"""Words and pairs of consecutive words."""


class HashedNgramTokenizer:
    """Texts -> ``{"counts": [B, D]}`` hashed n-gram counts (called like a Hugging Face tokenizer)."""

    def __init__(self, n_features: int = NGRAM_FEATURES, ngram_range: tuple[int, int] = NGRAM_RANGE):
        from sklearn.feature_extraction.text import HashingVectorizer

        self.vectorizer = HashingVectorizer(n_features=n_features, ngram_range=ngram_range, alternate_sign=False,
                                            norm=None)

    def __call__(self, texts: Sequence[str], **_: Any) -> dict[str, torch.Tensor]:
        counts = self.vectorizer.transform(list(texts))
        return {"counts": torch.from_numpy(counts.toarray()).float()}


@TEXT_BACKENDS.register(NGRAM_MODEL)
class WordNgramBackbone(nn.Module):
    """Sublinear hashed n-gram counts (module docstring); ``name`` and ``max_length`` are accepted for the
    backend interface and unused (texts are never truncated)."""

    def __init__(self, name: str = NGRAM_MODEL, max_length: int | None = None):
        super().__init__()
        self.tokenizer = HashedNgramTokenizer()
        self.max_length = None
        # the settings live in a buffer so that they enter the encoder's fingerprint (and its device)
        self.register_buffer("settings", torch.tensor([NGRAM_FEATURES, *NGRAM_RANGE]))

    def forward(self, counts: torch.Tensor) -> torch.Tensor:
        return torch.log1p(counts)
