"""The one multi-modal model (fgmm.space): creation, fitting, zero-shot through the KG, masking, persistence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fgmm.errors import ConfigError, DataError
from fgmm.space import FGModel, ModalityTable, create_model, fitting, list_models
from fgmm.space.features import SampleFeatures
from fgmm.train import TrainConfig

C, PER_CLASS, D_IMAGE, D_TEXT = 5, 30, 24, 12


@pytest.fixture(scope="module")
def toy():
    """Five Gaussian classes; a text modality that is a noisy linear view of the class centre."""
    generator = torch.Generator().manual_seed(0)
    centres = 3 * torch.randn(C, D_IMAGE, generator=generator)
    labels = torch.arange(C).repeat_interleave(PER_CLASS)
    image = centres[labels] + torch.randn(len(labels), D_IMAGE, generator=generator)
    text = centres[labels] @ torch.randn(D_IMAGE, D_TEXT, generator=generator) / 3
    text = text + 0.5 * torch.randn(len(labels), D_TEXT, generator=generator)
    attributes = np.array([[1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 1, 1, 0],
                           [0, 0, 0, 0, 1, 1]], dtype=np.float32)
    return {"image": image, "text": text, "labels": labels, "attributes": attributes,
            "names": [f"class {i}" for i in range(C)]}


def image_model(source: str = "free", **overrides):
    config = {"modalities": {"image": {"projection": "whiten", "input_dim": D_IMAGE}},
              "class_embeddings": {"source": source}}
    return config | overrides


def quick(tmp_path, epochs: int = 8) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, out_dir=tmp_path / "run", progress=False)


def accuracy(model: FGModel, features: dict, labels: torch.Tensor) -> float:
    return float((model.logits(features).argmax(1) == labels).float().mean())


def test_presets_are_listed_and_validated():
    names = list_models()
    assert {"image", "image-kg", "image-gnn", "image-text", "image-text-kg"} <= set(names)
    assert list_models("image-text*") == ["image-text", "image-text-attributes", "image-text-kg", "image-text-ngrams",
                                        "image-text-product"]
    with pytest.raises(ConfigError, match="unknown model .imag.; choose one of: .*image-kg"):
        create_model("imag", classes=["a"])
    with pytest.raises(ConfigError, match="did you mean 'fusion'"):
        create_model(image_model() | {"fusoin": "mean"}, classes=["a"])
    with pytest.raises(ConfigError, match="needs a knowledge graph"):
        create_model(image_model("kg"), classes=["a", "b"])


@pytest.mark.parametrize("source, trains", [("free", True), ("means", False), ("kg", False)])
def test_image_sources_classify_the_toy(toy, source, trains):
    kg = toy["attributes"] if source == "kg" else None
    model = create_model(image_model(source), classes=toy["names"], kg=kg)
    result = model.fit_features({"image": ModalityTable.one_per_sample(toy["image"])}, toy["labels"])
    assert (result.steps > 0) == trains
    assert accuracy(model, {"image": toy["image"]}, toy["labels"]) > 0.95
    assert 1.0 <= result.scale <= 100.0


def test_zero_shot_through_the_knowledge_graph(toy):
    """A class without training images is scored through its graph neighbours; gamma comes from seen classes."""
    model = create_model(image_model("kg"), classes=toy["names"], kg=toy["attributes"])
    seen = toy["labels"] != 4
    result = model.fit_features({"image": ModalityTable.one_per_sample(toy["image"][seen])}, toy["labels"][seen])
    assert model.trained_classes().tolist() == [True, True, True, True, False]
    assert model.available_classes().all()
    unseen = ~seen
    scores = model.logits({"image": toy["image"][unseen]})
    # zero-shot: among the classes, the unseen one wins for most of its images
    assert float((scores.argmax(1) == 4).float().mean()) > 0.5
    assert result.gamma == float(model.gamma)

    free = create_model(image_model("free"), classes=toy["names"])
    free.fit_features({"image": ModalityTable.one_per_sample(toy["image"][seen])}, toy["labels"][seen])
    assert free.available_classes().tolist() == [True, True, True, True, False]
    assert torch.isinf(free.logits({"image": toy["image"][:3]})[:, 4]).all()


def test_image_text_model_fuses_and_masks_absent_text(toy, tmp_path):
    config = {"modalities": {"image": {"projection": "mlp", "input_dim": D_IMAGE},
                             "text": {"projection": "mlp", "input_dim": D_TEXT}}, "dim": 16}
    model = create_model(config, classes=toy["names"], seed=3)
    tables = {"image": ModalityTable.one_per_sample(toy["image"]), "text": ModalityTable.one_per_sample(toy["text"])}
    result = model.fit_features(tables, toy["labels"], train=quick(tmp_path))
    assert result.steps > 0 and result.history
    both = model.logits({"image": toy["image"], "text": toy["text"]})
    absent = torch.zeros(len(toy["labels"]), dtype=torch.bool)
    masked = model.logits({"image": toy["image"], "text": torch.randn_like(toy["text"])}, {"text": absent})
    image_only = model.logits({"image": toy["image"]})
    # a masked modality is ignored whatever its rows hold: the same as leaving it out
    assert torch.allclose(masked, image_only, atol=1e-5)
    assert not torch.allclose(both, image_only)
    assert accuracy(model, {"image": toy["image"], "text": toy["text"]}, toy["labels"]) > 0.9


def test_same_seed_same_weights(toy, tmp_path):
    config = {"modalities": {"image": {"projection": "mlp", "input_dim": D_IMAGE}}, "dim": 8}
    weights = []
    for run in range(2):
        model = create_model(config, classes=toy["names"], seed=7)
        model.fit_features({"image": ModalityTable.one_per_sample(toy["image"])}, toy["labels"],
                           train=quick(tmp_path / str(run), epochs=2))
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_save_and_load_give_bit_identical_predictions(toy, tmp_path):
    model = create_model(image_model("kg"), classes=toy["names"], kg=toy["attributes"])
    model.fit_features({"image": ModalityTable.one_per_sample(toy["image"][:120])}, toy["labels"][:120])
    folder = model.save_pretrained(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "graph.safetensors", "model.safetensors"]
    loaded = FGModel.from_pretrained(folder)
    assert loaded.class_names == toy["names"]
    assert torch.equal(loaded.logits({"image": toy["image"]}), model.logits({"image": toy["image"]}))
    assert float(loaded.gamma) == float(model.gamma)
    assert create_model(folder).class_names == toy["names"]  # a folder is accepted where a preset is


def test_save_refuses_foreign_folders_and_needs_overwrite(toy, tmp_path):
    model = create_model(image_model("means"), classes=toy["names"])
    model.fit_features({"image": ModalityTable.one_per_sample(toy["image"])}, toy["labels"])
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.txt").write_text("precious")
    with pytest.raises(DataError, match="holds no fgmm model"):
        model.save_pretrained(foreign)
    assert (foreign / "chapter1.txt").read_text() == "precious"
    model.save_pretrained(tmp_path / "m")
    with pytest.raises(DataError, match="overwrite=True"):
        model.save_pretrained(tmp_path / "m")
    model.save_pretrained(tmp_path / "m", overwrite=True)
    assert not list(tmp_path.glob(".m.*"))  # no staging leftovers


def test_loading_refuses_bad_folders(toy, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FGModel.from_pretrained(tmp_path / "nothing")
    model = create_model(image_model("means"), classes=toy["names"])
    model.fit_features({"image": ModalityTable.one_per_sample(toy["image"])}, toy["labels"])
    folder = model.save_pretrained(tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(DataError, match="cannot read the weights"):
        FGModel.from_pretrained(folder)
    record = json.loads((folder / "config.json").read_text())
    record["config"]["modalities"]["image"]["input_dim"] = D_IMAGE + 1
    (folder / "config.json").write_text(json.dumps(record))
    model.save_pretrained(tmp_path / "ok")
    (tmp_path / "ok" / "config.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match="do not fit the saved config"):
        FGModel.from_pretrained(tmp_path / "ok")


def test_features_of_another_width_are_refused(toy):
    model = create_model(image_model("means"), classes=toy["names"])
    model.fit_features({"image": ModalityTable.one_per_sample(toy["image"])}, toy["labels"])
    with pytest.raises(DataError, match=r"expects \[B, 24\] \(were they made by another image encoder"):
        model.logits({"image": torch.randn(3, D_IMAGE + 1)})
    with pytest.raises(DataError, match="modalities the model does not have"):
        model.fit_features({"audio": ModalityTable.one_per_sample(toy["image"])}, toy["labels"])


def test_a_knowledge_graph_of_other_classes_is_refused(toy):
    with pytest.raises(ConfigError, match="knowledge graph has 4 dataset classes, the model 5"):
        create_model(image_model("kg"), classes=toy["names"], kg=toy["attributes"][:4])


def test_sample_features_draw_subsets_while_training_and_pool_for_evaluation():
    features = torch.eye(4)
    table = ModalityTable(features, [[0, 1, 2], [], [3]])
    train = SampleFeatures({"text": table}, [0, 1, 2], train=True, max_items={"text": 2})
    evaluation = SampleFeatures({"text": table}, [0, 1, 2])
    assert train[1]["text"] is None and evaluation[1]["text"] is None
    assert torch.allclose(evaluation[0]["text"], torch.tensor([1.0, 1.0, 1.0, 0.0]) / 3 ** 0.5)
    drawn = {tuple(train[0]["text"].gt(0).tolist()) for _ in range(50)}
    assert all(1 <= sum(d) <= 2 for d in drawn) and len(drawn) > 2


def test_overriding_a_component_drops_the_options_written_for_the_presets_one():
    from fgmm.space import model_config

    config = model_config("image-kg", modalities={"image": {"projection": "mlp"}},
                          class_embeddings={"source": "free"})
    assert config.modalities["image"].projection_options == {} and config.class_embeddings.options == {}
    kept = model_config("image-kg", modalities={"image": {"projection_options": {"shrinkage": 2.0}}})
    assert kept.modalities["image"].projection == "whiten"
    assert kept.modalities["image"].projection_options == {"shrinkage": 2.0}
    assert kept.class_embeddings.options == {"mean_weight": 0.5, "ridge": 0.3}


def test_image_shortcuts_set_the_image_encoder():
    from fgmm.space import model_config

    config = model_config("image", vision="convnext_tiny", zoom=True, image_size=None, pretrained=True)
    assert config.modalities["image"].encoder == "convnext_tiny"
    assert config.modalities["image"].encoder_options == {"zoom": True}  # defaults add nothing
    merged = model_config("image", modalities={"image": {"encoder_options": {"image_size": 224}}}, zoom=True)
    assert merged.modalities["image"].encoder_options == {"image_size": 224, "zoom": True}
    model = create_model("image", classes=["a", "b"], vision="test_efficientnet", pretrained=False,
                         image_size=32, zoom=True)
    assert model.config.modalities["image"].input_dim == 512  # [image; object] of a 256-d backbone
    from fgmm.experiment import ExperimentConfig  # fgmm train --zoom / model.zoom in a config file

    experiment = ExperimentConfig.from_sources(None, {"model.zoom": True, "model.image_size": 64})
    assert experiment.model.overrides() == {"modalities": {"image": {"encoder_options": {"image_size": 64,
                                                                                         "zoom": True}}}}


def test_metric_losses_are_found_without_importing_the_retrieval_package():
    import subprocess
    import sys

    code = ("from fgmm.space.config import ObjectiveConfig; from fgmm.space.objective import Objective; "
            "print(type(Objective([], ObjectiveConfig(metric='supcon'), num_classes=3, dim=8).metric).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() != "NoneType"


def test_product_of_experts_fits_the_text_classifier_with_the_model(toy, tmp_path):
    """image-text-product: the text's own nearest class mean multiplies the image's; text-less samples keep
    the image prediction; the fitted prior is saved and loaded with the model."""
    weak_image = toy["image"] + 12 * torch.randn(toy["image"].shape, generator=torch.Generator().manual_seed(1))
    model = create_model("image-text-product", classes=toy["names"],
                         modalities={"image": {"input_dim": D_IMAGE}, "text": {"input_dim": D_TEXT}})
    tables = {"image": ModalityTable.one_per_sample(weak_image), "text": ModalityTable.one_per_sample(toy["text"])}
    result = model.fit_features(tables, toy["labels"])
    assert result.steps == 0  # every part is closed form
    prior = model.priors["text"]
    assert prior.present.all() and 1.0 <= float(prior.log_scale.exp()) <= 100.0
    image_only = accuracy(model, {"image": weak_image}, toy["labels"])
    both = {"image": weak_image, "text": toy["text"]}
    assert image_only < 0.8 and accuracy(model, both, toy["labels"]) >= max(0.95, image_only + 0.15)
    no_text = {"image": weak_image, "text": toy["text"]}, {"image": torch.ones(len(weak_image), dtype=torch.bool),
                                                           "text": torch.zeros(len(weak_image), dtype=torch.bool)}
    assert torch.equal(model.logits(*no_text).argmax(1), model.logits({"image": weak_image}).argmax(1))
    model.save_pretrained(tmp_path / "product")
    loaded = FGModel.from_pretrained(tmp_path / "product")
    assert torch.equal(loaded.logits(both), model.logits(both))
    with pytest.raises(ConfigError, match="'text' modality has no embedding"):
        model.embed("text", toy["text"])  # nothing to search with: retrieval needs a joint space


def test_class_aware_scores_have_a_known_answer():
    from fgmm.space.matching import RetrievalKeys, class_aware_scores

    posteriors = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    embeddings = torch.eye(2)
    scores = class_aware_scores(RetrievalKeys(embeddings[:1], posteriors[:1]), RetrievalKeys(embeddings, posteriors),
                                scale=10.0)
    # log P(same class) + s cos: log(0.81 + 0.01) + 10, log(0.18 + 0.08) + 0
    assert torch.allclose(scores, torch.tensor([[float(np.log(0.82)) + 10.0, float(np.log(0.26))]]), atol=1e-5)
    with pytest.raises(ValueError, match="2 embeddings but 1 posteriors"):
        RetrievalKeys(embeddings, posteriors[:1])


def test_a_modality_missing_for_some_classes_gets_its_own_view_and_offset(toy, tmp_path, monkeypatch):
    """Captions withheld for classes 3 and 4: the text view trains among classes 0-2 only and the model
    calibrates a text offset on its training data; text-only logits subtract s·γ_text on the captioned
    classes (that a caption of a withheld class reaches it is checked in tests/test_text_novel.py)."""
    labels = toy["labels"]
    rows = [[i] if int(y) < 3 else [] for i, y in enumerate(labels)]
    tables = {"image": ModalityTable.one_per_sample(toy["image"]), "text": ModalityTable(toy["text"], rows)}
    model = create_model("image-text-attributes", classes=toy["names"], kg=toy["attributes"], seed=0, dim=16,
                         modalities={"image": {"input_dim": D_IMAGE}, "text": {"input_dim": D_TEXT}},
                         objective={"view_classes": "own"})
    calibrated = []
    original = fitting.calibrate_modality_gamma

    def spy(model, data, modality, *args):
        calibrated.append(modality)
        return original(model, data, modality, *args)

    monkeypatch.setattr(fitting, "calibrate_modality_gamma", spy)
    model.fit_features(tables, labels, train=quick(tmp_path, epochs=20))
    assert model.classes_with("image").all() and model.classes_with("text").tolist() == [True] * 3 + [False] * 2
    gamma_text = float(model.modality_gamma[1])
    assert calibrated == ["text"] and model.modality_gamma[0] == model.gamma == 0.0
    with torch.no_grad():
        z = model.embed("text", toy["text"])
        expected = model.scorer.scale * (z @ model.class_embeddings().T - gamma_text * model.classes_with("text"))
    assert torch.allclose(model.logits({"text": toy["text"]}), expected, atol=1e-5)
    posterior = model.class_posterior("text", toy["text"])
    assert torch.allclose(posterior.sum(1), torch.ones(len(labels)))
    # retrieval reads the same posteriors from the embeddings alone (what an index stores)
    assert torch.allclose(model.retrieval_keys("text", toy["text"]).posteriors, posterior, atol=1e-5)
    captioned = labels < 3
    assert (posterior[captioned].argmax(1) == labels[captioned]).float().mean() >= 0.9
    # a sample with both modalities keeps the model's own calibration (every class has images)
    both = model.logits({"image": toy["image"][:4], "text": toy["text"][:4]})
    assert torch.isfinite(both).all()
    with pytest.raises(ConfigError, match="view_classes"):
        create_model("image-text", classes=toy["names"], objective={"view_classes": "some"},
                     modalities={"image": {"input_dim": D_IMAGE}, "text": {"input_dim": D_TEXT}})
