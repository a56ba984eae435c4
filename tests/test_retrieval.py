"""Retrieval metrics against hand-computed values, indexes (torch/faiss) and their persistence."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from fgmm.encoders.base import Encoder
from fgmm.errors import ConfigError, DataError
from fgmm.retrieval import (
    EmbeddingIndex,
    IndexInfo,
    Retriever,
    average_precision,
    first_relevant_rank,
    mean_average_precision,
    median_rank,
    recall_at_k,
    retrieval_metrics,
)

# 2 queries x 5 items; rankings by score: q0 -> [2, 0, 4, 1, 3], q1 -> [1, 3, 0, 4, 2]
SCORES = torch.tensor([[0.8, 0.2, 0.9, 0.1, 0.5],
                       [0.3, 0.9, 0.0, 0.7, 0.2]])
ITEM_LABELS = torch.tensor([0, 1, 1, 0, 0])
QUERY_LABELS = torch.tensor([0, 1])


def test_average_precision_by_hand():
    # q0 (class 0): relevant items 0, 3, 4 at ranks 2, 5, 3 -> AP = (1/2 + 2/3 + 3/5) / 3
    # q1 (class 1): relevant items 1, 2 at ranks 1, 5 -> AP = (1/1 + 2/5) / 2
    ap = average_precision(SCORES, QUERY_LABELS[:, None] == ITEM_LABELS[None, :])
    assert ap.tolist() == pytest.approx([(1 / 2 + 2 / 3 + 3 / 5) / 3, (1 + 2 / 5) / 2])
    assert mean_average_precision(SCORES, QUERY_LABELS, ITEM_LABELS) == pytest.approx(
        ((1 / 2 + 2 / 3 + 3 / 5) / 3 + (1 + 2 / 5) / 2) / 2)


def test_map_matches_sklearn_and_torchmetrics():
    from sklearn.metrics import average_precision_score
    from torchmetrics.retrieval import RetrievalMAP

    torch.manual_seed(0)
    scores = torch.randn(7, 30)
    query_labels, item_labels = torch.randint(0, 3, (7,)), torch.randint(0, 3, (30,))
    relevant = query_labels[:, None] == item_labels[None, :]
    expected = sum(average_precision_score(relevant[i].numpy(), scores[i].numpy()) for i in range(7)) / 7
    assert mean_average_precision(scores, query_labels, item_labels) == pytest.approx(expected, abs=1e-9)
    # torchmetrics (1.9) counts items scored <= 0 as irrelevant, so compare on positive scores only
    positive = scores.sigmoid()
    reference = RetrievalMAP()(positive.flatten(), relevant.flatten(), torch.arange(7).repeat_interleave(30))
    assert mean_average_precision(positive, query_labels, item_labels) == pytest.approx(float(reference), abs=1e-6)


def test_queries_without_relevant_items_are_left_out_of_map():
    assert mean_average_precision(SCORES, torch.tensor([0, 7]), ITEM_LABELS) == pytest.approx(
        (1 / 2 + 2 / 3 + 3 / 5) / 3)
    with pytest.raises(DataError, match="no query has a relevant item"):
        mean_average_precision(SCORES, torch.tensor([5, 7]), ITEM_LABELS)


def test_instance_recall_and_median_rank_by_hand():
    # q0's own items are 4 and 3 (best at rank 3); q1's own item is 2 (rank 5)
    own = torch.tensor([[False, False, False, True, True], [False, False, True, False, False]])
    assert first_relevant_rank(SCORES, own).tolist() == [3, 5]
    assert recall_at_k(SCORES, own, ks=(1, 3, 5)) == {1: 0.0, 3: 0.5, 5: 1.0}
    assert median_rank(SCORES, own) == 4.0  # mean of the two middle values
    metrics = retrieval_metrics(SCORES, own, QUERY_LABELS, ITEM_LABELS, ks=(1, 5))
    assert metrics["R@1"] == 0.0 and metrics["R@5"] == 1.0 and metrics["medR"] == 4.0
    with pytest.raises(DataError, match="no relevant item"):
        first_relevant_rank(SCORES, torch.zeros(2, 5, dtype=torch.bool))


def test_ties_go_the_querys_way():
    scores = torch.tensor([[0.5, 0.5, 0.5]])
    assert first_relevant_rank(scores, torch.tensor([[False, False, True]])).tolist() == [1]


def make_index(backend: str = "torch", n: int = 50, dim: int = 16, **options) -> tuple[EmbeddingIndex, torch.Tensor]:
    torch.manual_seed(0)
    vectors = torch.randn(n, dim)
    index = EmbeddingIndex(IndexInfo(dim=dim, modality="image", space="s1", space_name="test space",
                                     backend=backend, backend_options=options, class_names=["a", "b", "c"]))
    index.add(vectors, [f"item{i}" for i in range(n)], labels=[i % 3 for i in range(n)],
              paths=[f"img/{i}.jpg" for i in range(n)])
    return index, vectors


def test_exact_search_returns_cosine_neighbours():
    index, vectors = make_index()
    queries = vectors[:3] + 0.01
    result = index.search(queries, k=4, space="s1")
    expected = torch.topk(F.normalize(queries, dim=1) @ F.normalize(vectors, dim=1).T, 4)
    assert torch.equal(result.indices, expected.indices)
    assert torch.allclose(result.scores, expected.values)
    assert result.ids[0][0] == "item0" and result.labels[1, 0] == 1
    row = result.rows(2)[0]
    assert row == {"rank": 1, "id": "item2", "score": pytest.approx(float(expected.values[2, 0])), "label": 2,
                   "class": "c", "path": "img/2.jpg", "text": None}
    assert index.search(queries, k=500).indices.shape == (3, 50)  # k capped at the index size


def test_exact_and_faiss_agree():
    pytest.importorskip("faiss")
    exact, vectors = make_index("torch")
    flat, _ = make_index("faiss", factory="Flat")
    queries = torch.randn(10, 16)
    a, b = exact.search(queries, 5), flat.search(queries, 5)
    assert torch.equal(a.indices, b.indices)
    assert torch.allclose(a.scores, b.scores, atol=1e-5)
    hnsw, _ = make_index("faiss", n=300, factory="HNSW16")
    exact_300, _ = make_index("torch", n=300)
    overlap = (hnsw.search(queries, 10).indices[:, :, None] == exact_300.search(queries, 10).indices[:, None]).any(2)
    assert overlap.float().mean() >= 0.9


@pytest.mark.parametrize("backend", ["torch", "faiss"])
def test_save_load_round_trip(tmp_path, backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    index, vectors = make_index(backend, **({"factory": "IVF2,Flat", "nprobe": 2} if backend == "faiss" else {}))
    index.save(tmp_path / "idx")
    loaded = EmbeddingIndex.load(tmp_path / "idx")
    assert loaded.info.backend == backend and loaded.info.class_names == ["a", "b", "c"]
    assert loaded.ids == index.ids and torch.equal(loaded.labels, index.labels)
    assert loaded.paths == [None if p is None else os.path.abspath(p) for p in index.paths]  # stored relative
    assert torch.equal(loaded.vectors, index.vectors)
    queries = vectors[5:9]
    a, b = index.search(queries, 6), loaded.search(queries, 6)
    assert torch.equal(a.indices, b.indices) and torch.allclose(a.scores, b.scores)
    assert (tmp_path / "idx" / "faiss.index").is_file() == (backend == "faiss")


def test_space_and_dimension_mismatch_are_refused(tmp_path):
    index, _ = make_index()
    with pytest.raises(DataError, match=r"embedding space mismatch.*test space \[s1\].*other encoder \[s2\]"):
        index.search(torch.randn(1, 16), space="s2", space_name="other encoder")
    with pytest.raises(DataError, match=r"dimension mismatch: queries have shape \(1, 8\).*16-d"):
        index.search(torch.randn(1, 8))
    with pytest.raises(DataError, match="already in the index"):
        index.add(torch.randn(1, 16), ["item3"])
    with pytest.raises(DataError, match="NaN"):
        index.add(torch.full((1, 16), float("nan")), ["new"])
    with pytest.raises(ConfigError, match="unknown search backend"):
        EmbeddingIndex(IndexInfo(dim=4, modality="text", space="x", backend="annoy"))
    empty = EmbeddingIndex(IndexInfo(dim=4, modality="text", space="x"))
    with pytest.raises(DataError, match="the index is empty"):
        empty.search(torch.randn(1, 4))


def test_corrupt_or_inconsistent_folders_are_reported(tmp_path):
    with pytest.raises(DataError, match="not an fgmm index folder"):
        EmbeddingIndex.load(tmp_path)
    index, _ = make_index()
    folder = index.save(tmp_path / "idx")
    header = json.loads((folder / "index.json").read_text())
    header["count"] = 49
    (folder / "index.json").write_text(json.dumps(header))
    with pytest.raises(DataError, match="index files disagree"):
        EmbeddingIndex.load(folder)
    (folder / "vectors.pt").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read vectors"):
        EmbeddingIndex.load(folder)


class BagOfWords(Encoder):
    """A tiny deterministic text encoder: words hashed into 32 buckets."""

    modality = "text"

    def __init__(self, salt: str = ""):
        super().__init__(name=f"bag-of-words{salt}", dim=32)
        self.salt = salt

    def preprocessing(self) -> dict:
        return {"salt": self.salt}

    def encode(self, texts):
        out = torch.zeros(len(texts), self.dim)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, self.salt + word)) % self.dim] += 1.0
        return out

    def encode_cached(self, texts, cache=None, progress=False):
        return self.encode(texts)


CAPTIONS = ["red crown small bird", "grey seabird long wings", "yellow breast black wings"]


def test_retriever_searches_through_its_encoder(tmp_path):
    retriever = Retriever.build("text", CAPTIONS, ["a", "b", "c"], encoders={"text": BagOfWords()},
                                labels=[0, 1, 2], class_names=["x", "y", "z"])
    result = retriever.search("text", ["long wings of a seabird", "black wings"], k=2)
    assert result.ids[0][0] == "b" and result.texts[0][0] == CAPTIONS[1] and result.ids[1][0] == "c"
    assert result.rows(0)[0]["class"] == "y"
    with pytest.raises(ConfigError, match="can only be queried with text"):
        retriever.search("image", ["photo.jpg"])
    with pytest.raises(ConfigError, match="class-aware matching needs an index built with a fitted model"):
        retriever.search("text", ["black wings"], match="class")
    folder = retriever.save(tmp_path / "index")
    spec = json.loads((folder / "retriever.json").read_text())
    assert spec["encoders"]["text"]["fingerprint"] == BagOfWords().fingerprint() and spec["model"] is False
    assert not (folder / "model").exists()
    # the index belongs to its encoder's space: another encoder cannot read it
    with pytest.raises(DataError, match="embedding space mismatch"):
        Retriever(EmbeddingIndex.load(folder), {"text": BagOfWords(salt="other")})


def test_retriever_with_a_model_searches_its_joint_space_and_checks_its_encoders(tmp_path):
    from fgmm.space import create_model
    from fgmm.space.pretrained import model_fingerprint

    words = BagOfWords()
    model = create_model({"modalities": {"text": {"projection": "linear", "input_dim": 32},
                                         "image": {"projection": "linear", "input_dim": 8}}, "dim": 16},
                         classes=["x", "y", "z"])
    model.encoder_info["text"] = {"name": words.name, "fingerprint": words.fingerprint()}
    retriever = Retriever.build("text", CAPTIONS, ["a", "b", "c"], encoders={"text": words}, model=model)
    assert retriever.index.info.dim == 16 and retriever.index.info.space == model_fingerprint(model)
    # a model that names no class yet searches by cosine; class-aware matching needs a fitted model
    assert retriever.search("text", [CAPTIONS[2]], k=1).ids[0] == ["c"]
    with pytest.raises(ConfigError, match="needs an index built with a fitted model"):
        retriever.search("text", [CAPTIONS[2]], match="class")
    model.class_source.trained.fill_(True)
    assert retriever.search("text", [CAPTIONS[2]], k=1, match="cosine").ids[0] == ["c"]
    # by default an index with a fitted model ranks by its class-aware match over every stored vector
    queries = retriever.embed("text", [CAPTIONS[2]])
    expected = model.match_scores(model.keys_from_embeddings("text", queries),
                                  model.keys_from_embeddings("text", retriever.index.vectors))
    result = retriever.search("text", [CAPTIONS[2]], k=3)
    assert torch.allclose(result.scores, expected.sort(dim=1, descending=True).values, atol=1e-5)
    with pytest.raises(ConfigError, match="match must be 'cosine' or 'class'"):
        retriever.search("text", [CAPTIONS[2]], match="dot")
    with pytest.raises(ConfigError, match=r"fitted on features of encoder \[.*\], not of 'bag-of-wordsX'"):
        Retriever.build("text", CAPTIONS, ["a", "b", "c"], encoders={"text": BagOfWords("X")}, model=model)
    folder = retriever.save(tmp_path / "index")
    assert json.loads((folder / "retriever.json").read_text())["model"] is True
    assert (folder / "model" / "config.json").is_file()


