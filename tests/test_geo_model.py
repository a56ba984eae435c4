"""Where and when in the one model (fgmm.FGModel): the "geo" featurizer, the "geo_occurrences" class prior of
preset "image-geo" (fitted on occurrence records given as a CSV option or as samples), masking of samples without
a place, save/load round trips without the CSV, the learned fusion, add_geo_prior on a fitted image model, and the
gain on a tiny two-continent set. Everything is generated here; no real data."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from test_geo import one_thread  # noqa: F401  (autouse: these models are tiny, one thread is fastest)

from fgmm.data.sample import Sample
from fgmm.errors import ConfigError
from fgmm.geo.model_prior import OccurrencePrior, add_geo_prior
from fgmm.space import FGModel, ModalityTable, create_model

AMERICA, EUROPE = (40.0, -100.0), (50.0, 10.0)
CLASSES = ["001.Species_A", "002.Species_B"]
RECIPE = {"encoder": "sh8", "hidden": 32, "epochs": 15, "batch_size": 64, "lr": 3e-3, "dropout": 0.0,
          "grid_levels": 0}
"""A tiny prior network (the preset's default recipe is sized for CUB's 22k records)."""
DIM = 8


def birds(n: int, seed: int) -> tuple[list[Sample], torch.Tensor]:
    """Species A lives in America, B in Europe; weak image features; every 5th sample has no place, every 3rd
    no date."""
    rng = np.random.default_rng(seed)
    samples, images = [], []
    for i in range(n):
        label = i % 2
        lat, lon = (AMERICA, EUROPE)[label]
        place = None if i % 5 == 2 else (lat + rng.normal(0, 3), lon + rng.normal(0, 4))
        samples.append(Sample(id=f"{seed}-{i}", label=label, location=place,
                              time=datetime(2020, 7, 1 + i % 28) if i % 3 else None))
        images.append(rng.normal(0, 1, DIM) + 0.35 * label)
    return samples, torch.tensor(np.array(images), dtype=torch.float32)


def tables(model: FGModel, samples: list[Sample], images: torch.Tensor) -> dict[str, ModalityTable]:
    return {"image": ModalityTable.one_per_sample(images), **model.featurize(samples, modalities=["geo"])}


def logits(model: FGModel, table: dict[str, ModalityTable]) -> torch.Tensor:
    return model.logits({m: t.pooled() for m, t in table.items()}, {m: t.present for m, t in table.items()})


def write_records(path: Path, samples: list[Sample]) -> Path:
    rows = [f"{CLASSES[s.label]},{s.location[0]:.4f},{s.location[1]:.4f},{s.time:%Y-%m-%d}" if s.time else
            f"{CLASSES[s.label]},{s.location[0]:.4f},{s.location[1]:.4f}," for s in samples if s.location]
    path.write_text("class,latitude,longitude,date\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="module")
def data() -> dict:
    train, train_images = birds(60, seed=0)
    test, test_images = birds(40, seed=1)
    return {"train": train, "train_images": train_images, "test": test, "test_images": test_images,
            "labels": torch.tensor([s.label for s in train]), "test_labels": torch.tensor([s.label for s in test])}


@pytest.fixture(scope="module")
def fitted(data: dict) -> FGModel:
    model = create_model("image-geo", classes=CLASSES, modalities={"image": {"input_dim": DIM}},
                         priors={"geo": {"options": RECIPE}})
    model.fit_features(tables(model, data["train"], data["train_images"]), data["labels"])
    model.priors["geo"].fit(data["train"])  # the training samples' own places as presence records
    return model


def test_featurizer_gives_rows_only_to_samples_with_a_place(fitted: FGModel, data: dict):
    table = fitted.featurize(data["test"], modalities=["geo"])["geo"]
    places = [s.location is not None for s in data["test"]]
    assert table.present.tolist() == places and table.features.shape == (sum(places), fitted.config.modalities[
        "geo"].input_dim)
    assert fitted.encoder_info["geo"]["name"] == "sh16" and fitted.dim == DIM  # the image side sets the width


def test_prior_masks_samples_without_a_place_and_gains_on_two_continents(fitted: FGModel, data: dict):
    table = tables(fitted, data["test"], data["test_images"])
    fused, image = logits(fitted, table), fitted.logits({"image": data["test_images"]})
    absent = ~table["geo"].present
    assert torch.equal(fused[absent], image[absent])  # no place: the image prediction (both log-probabilities)
    assert torch.allclose(image.exp().sum(1), torch.ones(len(image)))
    y = data["test_labels"]
    fused_top1, image_top1 = ((s.argmax(1) == y).float().mean() for s in (fused, image))
    assert fused_top1 >= 0.9 > image_top1 + 0.1
    alone = fitted.predict(locations=[AMERICA, EUROPE], times=[datetime(2020, 7, 4), None], k=1)
    assert [top[0][0] for top in alone] == CLASSES  # a place alone: the prior's answer


def test_save_load_round_trip_without_the_csv_is_bit_identical(data: dict, tmp_path: Path):
    csv = write_records(tmp_path / "occurrences.csv", data["train"])
    model = create_model("image-geo", classes=CLASSES, modalities={"image": {"input_dim": DIM}},
                         priors={"geo": {"options": {**RECIPE, "records": str(csv)}}})
    model.fit_features(tables(model, data["train"], data["train_images"]), data["labels"])
    model.save_pretrained(tmp_path / "model")  # fits the prior on the records first (once)
    csv.unlink()
    loaded = FGModel.from_pretrained(tmp_path / "model")
    test = tables(loaded, data["test"], data["test_images"])
    assert bool(loaded.priors["geo"].fitted) and torch.equal(logits(loaded, test), logits(model, test))
    placed = [s for s in data["test"] if s.location is not None][:3]
    assert loaded.predict(placed) == model.predict(placed)


def test_learned_fusion_and_add_geo_prior_keep_the_image_model(fitted: FGModel, data: dict, tmp_path: Path):
    image_model = create_model("image", classes=CLASSES, modalities={"image": {"input_dim": DIM}})
    image_model.fit_features({"image": ModalityTable.one_per_sample(data["train_images"])}, data["labels"])
    model = add_geo_prior(image_model, **RECIPE)
    model.priors["geo"].fit(data["train"])
    test = tables(model, data["test"], data["test_images"])
    # the same model as preset image-geo (whose class means come from the fused embeddings: equal up to rounding)
    assert torch.allclose(logits(model, test), logits(fitted, test), atol=1e-5)
    image = test["image"].pooled()
    absent = ~test["geo"].present
    image_only = torch.log_softmax(image_model.logits({"image": image[absent]}), dim=1)
    assert torch.allclose(logits(model, test)[absent], image_only, atol=1e-6)  # the image model's prediction
    with pytest.raises(ConfigError, match="already has a geo modality"):
        add_geo_prior(model)
    prior: OccurrencePrior = model.priors["geo"]
    held_out = tables(model, *birds(30, seed=2))
    prior.fit_fusion(image_model.logits({"image": held_out["image"].pooled()}), held_out["geo"].pooled(),
                     torch.arange(30) % 2)
    assert float(prior.prior_weight) != 1.0 and float(prior.image_weight) > 0
    y = data["test_labels"]
    assert (logits(model, test).argmax(1) == y).float().mean() >= 0.9
    model.save_pretrained(tmp_path / "learned")
    loaded = FGModel.from_pretrained(tmp_path / "learned")
    assert float(loaded.priors["geo"].prior_weight) == float(prior.prior_weight)
    assert torch.equal(logits(loaded, test), logits(model, test))


def test_an_unfitted_prior_without_records_says_how_to_fit_it(data: dict):
    model = create_model("image-geo", classes=CLASSES, modalities={"image": {"input_dim": DIM}})
    model.fit_features(tables(model, data["train"], data["train_images"]), data["labels"])
    with pytest.raises(ConfigError, match=r"priors\['geo'\].fit"):
        model.predict(data["test"][:2])
    with pytest.raises(ConfigError, match="occurrences name 3 classes"):
        from fgmm.geo.occurrences import occurrences_from_samples

        model.priors["geo"].fit(occurrences_from_samples(data["train"], ["a", "b", "c"]))


def test_geo_as_a_modality_of_the_joint_space_trains_a_projection(data: dict, tmp_path: Path):
    """The other path: the place projected into the joint space (a learned MLP) and fused with the image."""
    from fgmm.train import TrainConfig

    config = {"modalities": {"image": {"projection": "whiten", "projection_options": {"shrinkage": 1.0},
                                       "input_dim": DIM},
                             "geo": {"encoder": "sh8", "projection": "mlp", "projection_options": {"hidden": 64}}},
              "fusion": "mean", "class_embeddings": {"source": "means"}, "objective": {"contrastive_weight": 0.0}}
    model = create_model(config, classes=CLASSES)
    result = model.fit_features(tables(model, data["train"], data["train_images"]), data["labels"],
                                train=TrainConfig(epochs=10, batch_size=16, lr=3e-3, progress=False,
                                                  out_dir=tmp_path / "run"))
    test = tables(model, data["test"], data["test_images"])
    assert result.steps > 0 and (logits(model, test).argmax(1) == data["test_labels"]).float().mean() >= 0.85
    z = model.embed("geo", test["geo"].features)
    assert z.shape == (int(test["geo"].present.sum()), model.dim) and torch.allclose(z.norm(dim=1), torch.ones(len(z)))


def test_geo_task_runs_on_the_contexts_image_model(data: dict):
    """The geo task's image model is the image task's FGModel (the same logits as image_top1's)."""
    from fgmm.data.sample import MultiModalDataset
    from fgmm.tasks import TASKS, TaskContext
    from fgmm.tasks.image import image_model

    samples = data["train"] + data["test"]
    dataset = MultiModalDataset(samples=samples, class_names=CLASSES,
                                split=["train"] * len(data["train"]) + ["test"] * len(data["test"]))
    ctx = TaskContext(dataset, {"image": torch.cat([data["train_images"], data["test_images"]])}, quick=True)
    metrics = TASKS.get("geo")(ctx)
    test = torch.arange(len(data["train"]), len(samples))
    image_top1 = float((image_model(ctx).logits({"image": ctx.features["image"][test]}).argmax(1)
                        == data["test_labels"]).float().mean())
    assert metrics["geo_image_top1"] == image_top1
    assert metrics["geo_fused_top1"] > image_top1 and metrics["geo_prior_top1"] >= 0.9
    assert metrics["geo_n_noplace"] == 8 and "geo_fused_top1_kde" in metrics and "geo_fusion" in metrics
