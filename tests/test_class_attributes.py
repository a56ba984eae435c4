"""The "attributes" class-embedding source of FGModel (ALE): strengths from the graph, zero-shot, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgmm.gnn.propagation import ClassGraph
from fgmm.space import FGModel, ModalityTable, create_model
from fgmm.space.class_sources import AttributeClassEmbeddings, class_attribute_strengths, standardized
from fgmm.train import TrainConfig

#: six classes, each a distinct pair of eight binary attributes; class 5 gets no training sample
ATTRIBUTES = np.array([[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 0, 0],
                       [0, 0, 0, 0, 0, 0, 1, 1], [1, 0, 1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1, 0, 0]],
                      dtype=np.float32)
C, PER_CLASS, D_IMAGE = 6, 25, 20
NAMES = [f"class {i}" for i in range(C)]


@pytest.fixture(scope="module")
def toy():
    """Image features are a fixed linear function of the class's attributes plus noise, so a class never
    seen is still where its attributes put it."""
    generator = torch.Generator().manual_seed(0)
    mixing = torch.randn(ATTRIBUTES.shape[1], D_IMAGE, generator=generator)
    labels = torch.arange(C).repeat_interleave(PER_CLASS)
    image = torch.as_tensor(ATTRIBUTES)[labels] @ mixing + 0.3 * torch.randn(len(labels), D_IMAGE,
                                                                              generator=generator)
    return {"image": image, "labels": labels}


def model_config(residual: bool = True) -> dict:
    return {"modalities": {"image": {"projection": "linear", "input_dim": D_IMAGE}}, "dim": 16,
            "class_embeddings": {"source": "attributes", "options": {"residual": residual}}}


def recipe(tmp_path, epochs: int = 60) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=50, lr=1e-2, weight_decay=0.0, progress=False,
                       log_every_steps=10_000, out_dir=tmp_path, seed=0)


def test_strengths_are_read_from_the_graph_and_standardised():
    strengths = np.array([[0.9, 0.0, 0.2], [0.1, 0.5, 0.2], [0.0, 0.7, 0.2]], dtype=np.float32)
    graph = ClassGraph.from_matrix(strengths, ["a", "b", "c"])
    assert torch.allclose(class_attribute_strengths(graph), torch.as_tensor(strengths))
    z = standardized(torch.as_tensor(strengths))
    assert torch.allclose(z[:, :2].mean(0), torch.zeros(2), atol=1e-6)
    assert torch.allclose(z[:, :2].std(0, unbiased=False), torch.ones(2), atol=1e-5)
    assert torch.equal(z[:, 2], torch.zeros(3))  # a constant attribute tells no class apart
    source = AttributeClassEmbeddings(3, 4, graph, residual=False)
    assert source().shape == (3, 4) and source.available().all() and not source.trained.any()


def test_a_class_without_training_samples_is_recognised_through_its_attributes(toy, tmp_path, one_thread):
    model = create_model(model_config(), classes=NAMES, kg=ATTRIBUTES, seed=0)
    seen = toy["labels"] != 5
    result = model.fit_features({"image": ModalityTable.one_per_sample(toy["image"][seen])}, toy["labels"][seen],
                                train=recipe(tmp_path))
    assert result.steps > 0
    assert model.trained_classes().tolist() == [True] * 5 + [False]
    assert model.available_classes().all()
    scores = model.logits({"image": toy["image"][~seen]})
    assert float((scores.argmax(1) == 5).float().mean()) >= 0.8  # zero-shot: the unseen class wins
    kept = model.logits({"image": toy["image"][seen]})
    assert float((kept[:, :5].argmax(1) == toy["labels"][seen]).float().mean()) >= 0.95  # among the trained
    assert float((kept.argmax(1) == toy["labels"][seen]).float().mean()) >= 0.7  # the new class competes (GZSL)
    # the residual of a class never trained on stays out of its embedding
    source = model.class_source
    with torch.no_grad():
        assert torch.allclose(source()[5], source.class_map(source.attributes)[5])


def test_save_and_load_give_identical_predictions(toy, tmp_path, one_thread):
    model = create_model(model_config(), classes=NAMES, kg=ATTRIBUTES, seed=1)
    model.fit_features({"image": ModalityTable.one_per_sample(toy["image"])}, toy["labels"],
                       train=recipe(tmp_path / "run", epochs=5))
    model.save_pretrained(tmp_path / "model")
    loaded = FGModel.from_pretrained(tmp_path / "model")
    assert loaded.config.class_embeddings.source == "attributes"
    assert torch.equal(loaded.logits({"image": toy["image"]}), model.logits({"image": toy["image"]}))
    assert torch.equal(loaded.class_embeddings(), model.class_embeddings())


def test_the_preset_pairs_image_and_text_with_attribute_classes():
    model = create_model("image-text-attributes", classes=NAMES, kg=ATTRIBUTES,
                         modalities={"image": {"input_dim": D_IMAGE}, "text": {"input_dim": 12}})
    assert model.modalities == ["image", "text"]
    assert isinstance(model.class_source, AttributeClassEmbeddings)
