"""fgmm.kgtext on the one model: attribute class embeddings, a tuned text tower served to the retrieval CLI,
text-only class ranking explained by KG attributes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import typer
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli.retrieve import RETRIEVE_EXAMPLES, index_app, retrieve
from fgmm.data.sample import Sample
from fgmm.errors import DataError
from fgmm.kg import KnowledgeGraph
from fgmm.kg.describe import DescribeConfig, Describer
from fgmm.kgtext import TextClassRanker, save_served_model, tune_text_tower
from fgmm.space import FGModel, create_model
from fgmm.train import TrainConfig

COLOURS = {"red": (200, 30, 30), "blue": (30, 30, 200), "green": (30, 180, 30)}


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def text_encoder():
    from fgmm.encoders import create_encoder

    return create_encoder("text")


def colour_kg() -> KnowledgeGraph:
    """Three birds told apart by crown colour and bill shape; no captions anywhere."""
    kg = KnowledgeGraph("https://example.org/kg/colours/")
    kg.add_class("Fringillidae", rank="family", description="Finches")
    for colour in COLOURS:
        kg.add_class(colour, label=f"{colour.title()}-crowned Finch", parent="Fringillidae", rank="species")
        kg.add_attribute(f"has_crown_color::{colour}", group="has_crown_color")
    kg.add_attribute("has_bill_shape::cone", group="has_bill_shape")
    kg.add_attribute("has_bill_shape::hooked", group="has_bill_shape")
    kg.link_many([(c, f"has_crown_color::{c}", 0.9) for c in COLOURS]
                 + [("red", "has_bill_shape::cone", 0.8), ("blue", "has_bill_shape::hooked", 0.7),
                    ("green", "has_bill_shape::cone", 0.6)])
    return kg


def test_text_only_ranking_explains_with_kg_attributes(text_encoder):
    describer = Describer(colour_kg(), DescribeConfig(variants=4))
    ranker = TextClassRanker.from_descriptions(describer, text_encoder, attribute_weight=0.5)
    matches = ranker.rank("a finch with a bright blue crown and a hooked bill", k=3)
    assert [m.name for m in matches][0] == "blue"
    assert matches[0].attributes == [("has_crown_color::blue", "blue crown", 0.9),
                                     ("has_bill_shape::hooked", "hooked bill", 0.7)]
    assert matches[0].explanation() == "blue crown → crown color: blue 0.90; hooked bill → bill shape: hooked 0.70"
    assert matches[0].score == pytest.approx(matches[0].similarity + 0.5 * 0.8)
    best = ranker.scores(["red crown", "green crown"]).argmax(1).tolist()
    assert [describer.classes[c] for c in best] == ["red", "green"]


@pytest.fixture(scope="module")
def served(tmp_path_factory, text_encoder):
    """Photos of three finches nobody captioned; the one model (image-text-attributes) trained on them with
    the KG's descriptions of their classes as the only texts, its text tower tuned a few steps towards its
    class embeddings, saved for serving."""
    from fgmm.encoders import create_encoder

    root = tmp_path_factory.mktemp("kgtext")
    photos = root / "photos"
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (photos / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(photos / name / f"{name}{i}.jpg")
    kg = colour_kg()
    describer = Describer(kg, DescribeConfig(variants=6))
    texts = {d.name: d.texts() for d in describer.describe_all()}
    samples = [Sample(id=p.stem, label=describer.classes.index(p.parent.name), image=p, texts=texts[p.parent.name])
               for p in sorted(photos.rglob("*.jpg"))]
    model = create_model("image-text-attributes", classes=describer.classes, kg=kg, dim=16,
                         modalities={"image": {"encoder": "efficientnet_lite0", "encoder_options": {"image_size": 64},
                                               "projection": "linear"},
                                     "text": {"projection": "linear"}})
    model.fit(samples, train=TrainConfig(epochs=80, batch_size=9, lr=3e-3, progress=False, log_every_steps=10_000,
                                         out_dir=root / "run"))
    tower = create_encoder("text", frozen=False)
    sentences = [t for d in describer.describe_all() for t in d.texts()]
    owners = [describer.classes.index(d.name) for d in describer.describe_all() for _ in d.texts()]
    with torch.no_grad():
        weights, scale = model.class_embeddings(), float(model.scorer.scale)
    result = tune_text_tower(tower, model.projections["text"], weights, scale, sentences, owners,
                             TrainConfig(epochs=1, batch_size=8, lr=2e-5, max_steps=2, progress=False,
                                         log_every_steps=10_000, out_dir=root / "tune"), train_layers=1)
    assert result.steps == 2 and tower.frozen and tower.fingerprint() != text_encoder.fingerprint()
    out = save_served_model(model, root / "served", tower)
    return {"root": root, "photos": photos, "out": out, "describer": describer, "model": model}


def test_the_served_model_names_its_tuned_text_tower(served):
    folder = served["out"]
    loaded = FGModel.from_pretrained(folder / "model")
    assert loaded.config.class_embeddings.source == "attributes"
    assert loaded.config.modalities["text"].encoder == str((folder / "text-encoder").resolve())
    queries = ["a finch with a red crown", "a finch with a blue crown"]
    # the same text side after loading: the tuned tower is rebuilt from its folder and matches its fingerprint
    assert torch.allclose(loaded.embed_inputs("text", queries), served["model"].embed_inputs("text", queries),
                          atol=1e-5)
    with pytest.raises(DataError, match="not empty"):
        save_served_model(served["model"], folder)


def test_text_only_ranking_on_the_model(served):
    ranker = TextClassRanker.from_model(served["describer"], served["model"])
    matches = ranker.rank("a finch with a green crown", k=3)
    assert [m.name for m in matches][0] == "green" and len(matches) == 3
    assert matches[0].attributes == [("has_crown_color::green", "green crown", 0.9)]
    assert matches[0].score == pytest.approx(matches[0].similarity + 0.5 * 0.9)
    assert [served["describer"].classes[c] for c in ranker.scores(["red crown", "blue crown"]).argmax(1)] == \
        ["red", "blue"]


def test_retrieve_cli_finds_a_class_nobody_captioned(served):
    """`fgmm index build --model` on the served folder (the model's own encoders: the tuned text tower),
    then `fgmm retrieve --text`: the photos of the described class come first."""
    root = served["root"]
    app = typer.Typer()
    app.add_typer(index_app, name="index")
    app.command("retrieve", epilog=RETRIEVE_EXAMPLES)(retrieve)
    runner = CliRunner()
    built = runner.invoke(app, ["index", "build", "--images", str(served["photos"]), "--model", str(served["out"]),
                                "--out", str(root / "index")])
    assert built.exit_code == 0, built.output
    result = runner.invoke(app, ["retrieve", "--index", str(root / "index"), "--text",
                                 "a finch with a green crown", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["class"] for row in json.loads(result.output)["results"]] == ["green"] * 3


def test_predict_cli_ranks_classes_from_a_description_and_explains_them(served):
    """`fgmm predict MODEL --text ...`: the model's own text-only ranking, each class with the attributes the
    description names and that class's strength for them."""
    from fgmm.cli.predict import PREDICT_EXAMPLES, predict

    app = typer.Typer()
    app.command("predict", epilog=PREDICT_EXAMPLES)(predict)
    app.command("noop")(lambda: None)  # a second command keeps `predict` a subcommand
    runner = CliRunner()
    query = "a finch with a green crown and a cone-shaped bill"
    result = runner.invoke(app, ["predict", str(served["out"] / "model"), "--text", query, "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    top = json.loads(result.output)[0]["top"]
    assert top[0]["class"] == "green" and len(top) == 3
    assert top[0]["attributes"] == [{"attribute": "has_crown_color::green", "words": "green crown", "strength": 0.9},
                                    {"attribute": "has_bill_shape::cone", "words": "cone-shaped bill",
                                     "strength": 0.6}]
    blue = next(row for row in top if row["class"] == "blue")
    assert [a["strength"] for a in blue["attributes"]] == [0.0, 0.0]  # blue crowns, hooked bills
    table = runner.invoke(app, ["predict", str(served["out"] / "model"), "--text", query, "-k", "1"])
    assert table.exit_code == 0 and "matching attributes" in table.output
    assert "green crown → crown color: green 0.90" in " ".join(table.output.split())


def test_documents_train_the_tower_on_random_caption_subsets_pooled_as_at_test_time():
    import random

    import torch.nn.functional as F

    from fgmm.errors import ConfigError
    from fgmm.kgtext.tuning import SentenceItems, TokenCollate, pool_documents
    from fgmm.space import ModalityTable

    captions = [f"caption {k}" for k in range(10)]
    items = SentenceItems([captions, "one sentence"], [3, 1], max_texts=4)
    random.seed(0)
    drawn = [items[0]["texts"] for _ in range(200)]
    assert {len(d) for d in drawn} == {1, 2, 3, 4} and all(set(d) <= set(captions) for d in drawn)
    assert items[1] == {"texts": ["one sentence"], "label": 1}
    with pytest.raises(ConfigError, match="no sentence"):
        SentenceItems([[]], [0])

    class Tokens:  # stands in for the encoder's tokenizer: one token per word
        backbone = type("Backbone", (), {"max_length": 8, "tokenizer": staticmethod(
            lambda texts, **_: {"input_ids": torch.tensor([[len(t)] for t in texts])})})

    batch = TokenCollate(Tokens())([{"texts": ["a", "bb", "ccc"], "label": 0}, {"texts": ["dd"], "label": 2}])
    assert batch["owner"].tolist() == [0, 0, 0, 1] and batch["label"].tolist() == [0, 2]
    assert batch["text.input_ids"].shape == (4, 1)
    embeddings = F.normalize(torch.randn(4, 6, generator=torch.Generator().manual_seed(0)), dim=1)
    table = ModalityTable(embeddings, [[0, 1, 2], [3]])
    assert torch.allclose(pool_documents(embeddings, batch["owner"]), table.pooled(), atol=1e-6)


def test_a_diverged_tower_tuning_is_an_error_not_silent_nan_features(tmp_path):
    from fgmm.encoders import create_encoder
    from fgmm.errors import FgmmError

    tower = create_encoder("text", frozen=False)
    classes = torch.eye(2, tower.dim)
    config = TrainConfig(epochs=1, batch_size=2, lr=1e30, max_steps=3, progress=False, log_every_steps=10_000,
                         out_dir=tmp_path)
    with pytest.raises(FgmmError, match="diverged"):
        tune_text_tower(tower, torch.nn.Identity(), classes, 10.0, ["a red bird", "a blue bird"] * 2, [0, 1, 0, 1],
                        config, train_layers=1)
    assert tower.frozen


def test_signed_power_keeps_its_values_and_has_a_finite_gradient_at_zero():
    from fgmm.space.projections import FeatureWhitening, signed_power

    x = torch.tensor([[-4.0, 0.0, 0.25, 1e-30]], requires_grad=True)
    y = signed_power(x, 0.5)
    assert torch.equal(y.detach(), torch.tensor([[-2.0, 0.0, 0.5, 1e-15]]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[0, 1] == 0.0
    whitening = FeatureWhitening(3, shrinkage=1.0).fit(torch.randn(20, 3), torch.arange(20) % 2)
    z = torch.tensor([[0.0, 0.6, 0.8]], requires_grad=True)
    whitening(z).sum().backward()  # a text tower tuned through a whitening sees exact zeros
    assert torch.isfinite(z.grad).all()
