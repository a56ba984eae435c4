"""fgmm.kgtext: the KG-class-embedding space, its export to the retrieval CLI, text-only class ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import typer
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli.retrieve import RETRIEVE_EXAMPLES, index_app, retrieve
from fgmm.kg import KnowledgeGraph
from fgmm.kg.describe import DescribeConfig, Describer
from fgmm.kgtext import KGTextSpace, TextClassRanker, export_retrieval_model, fit_kg_text
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


def test_space_trains_and_exports_as_a_joint_model():
    attributes = torch.eye(3)
    labels = torch.arange(3).repeat(8)
    images = F.one_hot(labels, 3).float() + 0.1 * torch.randn(24, 3, generator=torch.Generator().manual_seed(0))
    texts = torch.eye(3) + 0.05
    config = TrainConfig(epochs=60, batch_size=24, lr=3e-3, progress=False, log_every_steps=10_000)
    model, _ = fit_kg_text(images, texts, [[int(y)] for y in labels], labels, attributes, config, dim=8, hidden=0)
    with torch.no_grad():
        assert model.logits(model.embed("image", images)).argmax(1).tolist() == labels.tolist()
        assert model.logits(model.embed("text", texts)).argmax(1).tolist() == [0, 1, 2]
    joint = model.to_joint({"text": "fp"})
    with torch.no_grad():
        assert torch.allclose(joint.embed("text", texts), model.embed("text", texts))
        assert torch.allclose(F.normalize(joint.classifier.weight, dim=1), model.class_embeddings())
    assert isinstance(model, KGTextSpace) and joint.config.encoders == {"text": "fp"}


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


def test_retrieve_cli_finds_a_class_nobody_captioned(tmp_path, text_encoder):
    """An index over photos of three classes without a single caption: the space is trained on KG
    descriptions only, exported, indexed and queried with `fgmm retrieve --text`."""
    from fgmm.encoders import create_encoder
    from fgmm.retrieval.retriever import image_features

    photos = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        (photos / name).mkdir(parents=True)
        for i in range(3):
            pixels = np.clip(np.array(colour) + rng.normal(0, 20, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(photos / name / f"{name}{i}.jpg")
    vision = create_encoder("vision", "efficientnet_lite0", image_size=64)
    paths = sorted(photos.rglob("*.jpg"))
    describer = Describer(colour_kg(), DescribeConfig(variants=6))
    labels = torch.tensor([describer.classes.index(p.parent.name) for p in paths])  # the index's order too
    images = image_features(vision, paths)
    descriptions = describer.describe_all()
    texts = [t for d in descriptions for t in d.texts()]
    owner = [i for i, d in enumerate(descriptions) for _ in d.texts()]
    rows = {c: [k for k, o in enumerate(owner) if o == c] for c in range(3)}
    config = TrainConfig(epochs=80, batch_size=9, lr=3e-3, progress=False, log_every_steps=10_000)
    space, _ = fit_kg_text(images, text_encoder.encode(texts), [rows[int(y)] for y in labels], labels,
                           torch.as_tensor(describer.matrix, dtype=torch.float32), config, dim=16, hidden=0)
    export_retrieval_model(space, tmp_path / "model", image_fingerprint=vision.fingerprint())
    app = typer.Typer()
    app.add_typer(index_app, name="index")
    app.command("retrieve", epilog=RETRIEVE_EXAMPLES)(retrieve)
    runner = CliRunner()
    built = runner.invoke(app, ["index", "build", "--images", str(photos), "--model", str(tmp_path / "model/joint.pt"),
                                "--vision", "efficientnet_lite0", "--image-size", "64",
                                "--out", str(tmp_path / "index")])
    assert built.exit_code == 0, built.output
    result = runner.invoke(app, ["retrieve", "--index", str(tmp_path / "index"), "--text",
                                 "a finch with a green crown", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["class"] for row in json.loads(result.output)["results"]] == ["green"] * 3
