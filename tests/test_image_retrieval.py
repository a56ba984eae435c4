"""Image->image retrieval: the class-disjoint protocol's metrics, metric losses and heads, re-ranking,
multi-view descriptors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fgmm.errors import ConfigError, DataError
from fgmm.retrieval.metric import (
    METRIC_LOSSES,
    MetricEmbeddingModel,
    MetricHeadConfig,
    create_metric_loss,
    fit_metric_head,
)
from fgmm.retrieval.protocol import class_split, self_retrieval_metrics
from fgmm.retrieval.rerank import RERANKERS, create_reranker
from fgmm.train import TrainConfig


def _direction(dim: int, toward: dict[int, float]) -> torch.Tensor:
    """Unit vector from e0 rotated by the given angles (degrees) toward other axes (small-angle composition)."""
    v = torch.zeros(dim)
    v[0] = 1.0
    for axis, degrees in toward.items():
        v[axis] = math.tan(math.radians(degrees))
    return F.normalize(v, dim=0)


# ---------------------------------------------------------------------------------------- protocol metrics
def test_self_retrieval_metrics_hand_made():
    # labels 0 0 1 1; the diagonal is ignored (query excluded)
    scores = torch.tensor([[9.0, 0.2, 0.9, 0.1],    # wrong first, right second  -> rank 2, AP 1/2
                           [0.8, 9.0, 0.1, 0.3],    # right first                -> rank 1, AP 1
                           [0.5, 0.4, 9.0, 0.3],    # two wrong, then right      -> rank 3, AP 1/3
                           [0.1, 0.2, 0.7, 9.0]])   # right first                -> rank 1, AP 1
    metrics = self_retrieval_metrics(scores, torch.tensor([0, 0, 1, 1]))
    assert metrics["R@1"] == pytest.approx(0.5)
    assert metrics["R@2"] == pytest.approx(0.75)
    assert metrics["R@4"] == metrics["R@8"] == pytest.approx(1.0)
    assert metrics["mAP"] == pytest.approx((0.5 + 1 + 1 / 3 + 1) / 4)


def test_self_retrieval_metrics_rejects_singleton_class():
    with pytest.raises(DataError, match="alone in their class"):
        self_retrieval_metrics(torch.zeros(3, 3), torch.tensor([0, 0, 1]))


def test_class_split_is_by_label_order():
    train, evaluation = class_split([3, 0, 1, 2, 1, 3])
    assert (train, evaluation) == ([0, 1], [2, 3])
    with pytest.raises(DataError):
        class_split([0, 0])


# ---------------------------------------------------------------------------------------- metric losses
@pytest.mark.parametrize("name", METRIC_LOSSES.names())
def test_every_metric_loss_has_the_uniform_interface(name):
    loss = create_metric_loss(name, num_classes=3, dim=8)
    z = torch.randn(12, 8, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1, 2, -1, -1, 0])
    value = loss(F.normalize(z, dim=1), labels)
    assert value.ndim == 0 and torch.isfinite(value)
    value.backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert float(z.grad[9:11].abs().sum()) == 0.0  # unknown labels are left out
    assert float(loss(F.normalize(z[:1], dim=1), labels[:1]).detach()) == 0.0  # fewer than two labelled rows


def test_unknown_metric_loss_lists_the_choices():
    with pytest.raises(ConfigError, match="proxy_anchor"):
        MetricHeadConfig(in_dim=4, num_classes=2, loss="triplet-ish")


def test_proxy_lr_scale_keeps_the_initial_proxies():
    torch.manual_seed(0)
    plain = create_metric_loss("proxy_anchor", 4, 6, proxy_lr_scale=1.0)
    torch.manual_seed(0)
    scaled = create_metric_loss("proxy_anchor", 4, 6, proxy_lr_scale=100.0)
    assert torch.allclose(plain.loss.proxies, scaled.loss.proxies)
    original = dict(scaled.named_parameters())["loss.parametrizations.proxies.original"]
    assert torch.allclose(original * 100, scaled.loss.proxies)


def _toy(n_per_class: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes that differ in 2 of 16 dimensions; the other 14 carry class-independent noise."""
    labels = torch.arange(4).repeat_interleave(n_per_class)
    centres = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    signal = centres[labels] + 0.15 * torch.randn(len(labels), 2, generator=generator)
    noise = torch.randn(len(labels), 14, generator=generator)
    return torch.cat([signal, noise], dim=1), labels


@pytest.mark.parametrize("loss", ["proxy_anchor", "multi_similarity"])
def test_metric_head_separates_a_toy_dataset(loss):
    generator = torch.Generator().manual_seed(0)
    x_train, y_train = _toy(40, generator)
    x_test, y_test = _toy(20, generator)
    raw = self_retrieval_metrics(F.normalize(x_test, dim=1) @ F.normalize(x_test, dim=1).T, y_test)
    # few epochs of many small batches: the Trainer checkpoints at every epoch end
    model = fit_metric_head(x_train, y_train, train=TrainConfig(epochs=6, batch_size=8, lr=1e-2, progress=False,
                                                                  amp="off"), dim=8, loss=loss)
    z = model.embed_all(x_test)
    learned = self_retrieval_metrics(z @ z.T, y_test)
    assert raw["R@1"] < 0.8
    assert learned["R@1"] > 0.9 and learned["mAP"] > raw["mAP"] + 0.2


def test_metric_head_save_load_roundtrip(tmp_path):
    model = MetricEmbeddingModel(MetricHeadConfig(in_dim=6, num_classes=3, dim=4, hidden=8)).eval()
    x = torch.randn(5, 6)
    path = model.save(tmp_path / "head.pt")
    again = MetricEmbeddingModel.load(path)
    assert torch.allclose(model.embed_all(x), again.embed_all(x))
    out = again({"image": x, "label": torch.tensor([0, 1, 2, 0, 1])})
    assert out["embedding"].shape == (5, 4) and out["loss"].ndim == 0
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt"):
        MetricEmbeddingModel.load(tmp_path / "bad.pt")


def test_metric_model_trains_a_tower_end_to_end():
    """The GPU path: the same module with a trainable tower in front of the head."""
    tower = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 6))
    model = MetricEmbeddingModel(MetricHeadConfig(in_dim=6, num_classes=2, dim=4, loss="supcon"), tower=tower)
    out = model({"image": torch.randn(8, 3, 2, 2), "label": torch.tensor([0, 1] * 4)})
    out["loss"].backward()
    assert tower[1].weight.grad is not None


# ---------------------------------------------------------------------------------------- re-ranking
def test_kreciprocal_fixes_a_non_reciprocal_nearest_neighbour():
    """q's nearest item x belongs to a tight cluster B that does not have q among its neighbours; q's
    own cluster A is slightly farther but mutual. Cosine ranks x first, k-reciprocal an item of A."""
    dim = 12
    q = _direction(dim, {})
    a = [_direction(dim, {i: 12.0}) for i in range(1, 5)]
    x = _direction(dim, {5: 10.0})
    b = [_direction(dim, {5: 14.0, 5 + j: 3.0}) for j in range(1, 5)]
    gallery = torch.stack([q, *a, x, *b])
    labels = torch.tensor([0] * 5 + [1] * 5)
    self_index = torch.tensor([0])
    cosine = create_reranker("none")(q[None], gallery, self_index)
    assert int(cosine.argmax()) == 5 and float(cosine[0, 0]) == -math.inf
    reranked = create_reranker("kreciprocal", k1=4, k2=1, lambda_=0.3)(q[None], gallery, self_index)
    assert int(labels[reranked.argmax()]) == 0
    assert float(reranked[0, 0]) == -math.inf
    # the same answer when the query is not a gallery item
    outside = create_reranker("kreciprocal", k1=4, k2=1, lambda_=0.3)(q[None], gallery[1:])
    assert int(labels[1:][outside.argmax()]) == 0


def test_alpha_query_expansion_pulls_in_the_second_match():
    """q's top-1 a1 is right; a2 lies beyond a1, a little farther from q than the distractor x.
    Expanding q with a1 moves a2 above x."""
    dim = 4
    q = _direction(dim, {})
    a1, a2, x = _direction(dim, {1: 4.0}), _direction(dim, {1: 11.0}), _direction(dim, {2: 10.0})
    gallery = torch.stack([a1, a2, x])
    assert torch.argsort(create_reranker("none")(q[None], gallery), descending=True)[0].tolist() == [0, 2, 1]
    expanded = create_reranker("aqe", k=1, alpha=3.0)(q[None], gallery)
    assert torch.argsort(expanded, descending=True)[0].tolist() == [0, 1, 2]


@pytest.mark.parametrize("name", RERANKERS.names())
def test_every_reranker_excludes_the_query_and_keeps_shapes(name):
    torch.manual_seed(0)
    gallery = torch.randn(30, 5)
    scores = create_reranker(name)(gallery[:7], gallery, torch.arange(7))
    assert scores.shape == (7, 30)
    assert bool((scores[torch.arange(7), torch.arange(7)] == -math.inf).all())
    assert torch.isfinite(scores[:, 7:]).all()


def test_rerankers_without_neighbours_are_cosine():
    torch.manual_seed(0)
    queries, gallery = torch.randn(4, 6), torch.randn(10, 6)
    cosine = create_reranker("none")(queries, gallery)
    assert torch.allclose(create_reranker("aqe", k=0)(queries, gallery), cosine)
    assert torch.allclose(create_reranker("dba", k=0)(queries, gallery), cosine)


def test_reranker_input_errors():
    with pytest.raises(ConfigError, match="kreciprocal"):
        create_reranker("kreciprocal", lambda_=2.0)
    with pytest.raises(DataError, match="same d"):
        create_reranker("none")(torch.randn(2, 3), torch.randn(4, 5))
    with pytest.raises(ConfigError, match="limited"):
        create_reranker("kreciprocal", max_items=5)(torch.randn(2, 3), torch.randn(6, 3))


# ---------------------------------------------------------------------------------------- views, descriptor, CLI
@pytest.fixture(scope="module")
def lite0():
    from fgmm.encoders import create_encoder

    return create_encoder("vision", "efficientnet_lite0")


def test_multiview_encoder_mean_is_the_mean_of_the_concat_parts(lite0):
    from fgmm.retrieval.views import MultiViewEncoder

    images = torch.randn(2, 3, 64, 64)
    parts = MultiViewEncoder(lite0, views=("identity", "hflip"), poolings=("avg", "gem"), combine="concat")
    mean = MultiViewEncoder(lite0, views=("identity", "hflip"), poolings=("gem",))
    features = parts.encode(images)
    assert features.shape == (2, 4 * 1280) and parts.dim == 4 * 1280 and mean.dim == 1280
    assert torch.allclose(parts.part(features, "identity", "avg"), lite0.encode(images), atol=1e-5)
    expected = (parts.part(features, "identity", "gem") + parts.part(features, "hflip", "gem")) / 2
    assert torch.allclose(mean.encode(images), expected, atol=1e-5)
    assert len({lite0.fingerprint(), parts.fingerprint(), mean.fingerprint()}) == 3
    with pytest.raises(ConfigError, match="hflip"):
        MultiViewEncoder(lite0, views=("rotate",))


def test_descriptor_fit_save_load(tmp_path):
    from fgmm.retrieval.descriptor import DescriptorConfig, ImageDescriptor

    generator = torch.Generator().manual_seed(0)
    x, y = _toy(10, generator)
    config = DescriptorConfig(whitening=True, shrinkage=1.0, head={"dim": 4, "loss": "supcon"},
                              train={"epochs": 1, "batch_size": 20, "amp": "off"})
    descriptor = ImageDescriptor(config).fit(x, y, extra_views=[x.flip(1)])
    z = descriptor(x)
    assert z.shape == (40, 4) and torch.allclose(z.norm(dim=1), torch.ones(40))
    again = ImageDescriptor.load(descriptor.save(tmp_path / "d.pt"))
    assert torch.allclose(again(x), z, atol=1e-6) and again.fingerprint() == descriptor.fingerprint()
    with pytest.raises(DataError, match="expects"):
        again(x[:, :5])
    with pytest.raises(ConfigError, match="labelled"):
        ImageDescriptor(DescriptorConfig()).fit(x)


@pytest.fixture(scope="module")
def bird_folders(tmp_path_factory):
    """A gallery of 3 colour classes (3 images each), a labelled training folder of 2 other classes, a query."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("birds")
    rng = np.random.default_rng(0)

    def save(path, colour):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.array(colour) + rng.normal(0, 30, (64, 64, 3)), 0, 255).astype(np.uint8)
        pixels[20:40, 10:30] = 255 - np.array(colour)  # a mark on the left: flips change the view
        Image.fromarray(pixels).save(path)

    for name, colour in (("red", (210, 30, 30)), ("blue", (30, 30, 210)), ("green", (30, 190, 30))):
        for i in range(3):
            save(root / "gallery" / name / f"{name}{i}.jpg", colour)
    for name, colour in (("yellow", (220, 210, 30)), ("grey", (120, 120, 120))):
        for i in range(3):
            save(root / "train" / name / f"{name}{i}.jpg", colour)
    save(root / "query.jpg", (200, 40, 40))
    return root


def test_cli_image_to_image_with_views_whitening_and_reranking(bird_folders, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from fgmm.cli.main import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    index = tmp_path / "index"
    built = runner.invoke(app, ["index", "build", "--images", str(bird_folders / "gallery"), "--out", str(index),
                                "--vision", "efficientnet_lite0", "--views", "identity,hflip",
                                "--whiten-on", str(bird_folders / "train")])
    assert built.exit_code == 0, built.output
    assert "indexed 9 image items" in built.output and "image descriptor" in built.output
    assert (index / "descriptor.pt").is_file()
    grid = tmp_path / "grid.png"
    for extra in (["--rerank", "kreciprocal", "--grid", str(grid)], []):
        result = runner.invoke(app, ["retrieve", "--index", str(index), "--image", str(bird_folders / "query.jpg"),
                                     "-k", "3", "--json", *extra])
        assert result.exit_code == 0, result.output
        rows = json.loads(result.output[:result.output.rindex("}") + 1])["results"]
        assert [r["class"] for r in rows] == ["red"] * 3, (extra, rows)
    assert grid.read_bytes()[:4] == b"\x89PNG"
    bad = runner.invoke(app, ["retrieve", "--index", str(index), "--image", str(bird_folders / "query.jpg"),
                              "--rerank", "magic"])
    assert bad.exit_code != 0 and "kreciprocal" in bad.output
    unlabelled = runner.invoke(app, ["index", "build", "--images", str(bird_folders / "gallery"), "--out",
                                     str(tmp_path / "x"), "--vision", "efficientnet_lite0", "--whiten-on",
                                     str(bird_folders / "gallery" / "red")])
    assert unlabelled.exit_code != 0 and "subfolder per class" in unlabelled.output


# ---------------------------------------------------------------------------------------- the benchmark task
def test_image_retrieval_task_keys_and_protocol(tiny_procedural, monkeypatch):
    """The task trains on the first half of the classes and searches the second half only."""
    from fgmm.tasks import TaskContext
    from fgmm.tasks import image_retrieval as task

    labels = torch.as_tensor(tiny_procedural.labels)
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(len(labels), 32, generator=generator).abs() + 3.0 * F.one_hot(labels.clamp(min=0), 32)
    ctx = TaskContext(dataset=tiny_procedural, features={"image": features})
    split = task.retrieval_split(labels)
    assert set(labels[split.train].tolist()) == set(split.train_classes) == {0, 1, 2}
    assert set(labels[split.evaluation].tolist()) == {3, 4, 5}
    folds = task.validation_splits(labels)
    assert [(f.train_classes, f.evaluation_classes) for f in folds] == [([0, 1], [2]), ([2], [0, 1])]
    assert all(not set(f.evaluation) & set(split.evaluation) for f in folds)
    monkeypatch.setattr(task, "RECIPE", task.Variant("whiten", "kreciprocal"))
    metrics = task.image_retrieval_task(ctx)
    for prefix in ("img_", "img_knn_"):
        assert {f"{prefix}{k}" for k in ("R@1", "R@2", "R@4", "R@8", "mAP")} <= set(metrics)
    assert metrics["img_knn_R@1"] > 0.5 and 0 < metrics["img_mAP"] <= 1
    # a context of object-zoom features runs the zoom recipe: no multi-view features are encoded
    zoomed = TaskContext(dataset=tiny_procedural, features={"image": features},
                         encoder_options={"image": {"zoom": True}})
    monkeypatch.setattr(task, "encode_multiview", lambda *a: pytest.fail("a zoom context encodes no multi-view"))
    monkeypatch.setattr(task, "RECIPE", task.Variant("mirror-gem+whiten", "kreciprocal"))
    assert task.image_retrieval_task(zoomed)["img_R@1"] == metrics["img_R@1"]


def test_view_features_average_the_cached_parts():
    from fgmm.tasks.image_retrieval import CACHED_POOLINGS, CACHED_VIEWS, ViewFeatures

    plain = torch.randn(3, 4)
    blocks = {(v, p): torch.randn(3, 4) for v in CACHED_VIEWS for p in CACHED_POOLINGS}
    blocks[("identity", "avg")] = plain
    multiview = torch.cat([blocks[(v, p)] for v in CACHED_VIEWS for p in CACHED_POOLINGS], dim=1)
    features = ViewFeatures(plain, multiview)
    assert torch.equal(features.get(["identity", "hflip"], "gem"),
                       (blocks[("identity", "gem")] + blocks[("hflip", "gem")]) / 2)
    assert torch.equal(features.single("hflip", "scda"), blocks[("hflip", "scda")])
    with pytest.raises(DataError, match="multi-view"):
        ViewFeatures(plain).get(["hflip"], "avg")


def test_cli_image_index_with_zoom_round_trips_its_encoder(bird_folders, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from fgmm.cli.main import app

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    index = tmp_path / "zoomed"
    built = runner.invoke(app, ["index", "build", "--images", str(bird_folders / "gallery"), "--out", str(index),
                                "--vision", "efficientnet_lite0", "--image-size", "64", "--zoom", "--whiten-on",
                                str(bird_folders / "train")])
    assert built.exit_code == 0, built.output
    spec = json.loads((index / "retriever.json").read_text())
    assert spec["encoders"]["image"]["options"] == {"image_size": 64, "zoom": True}
    found = runner.invoke(app, ["retrieve", "--index", str(index), "--image", str(bird_folders / "query.jpg"),
                                "-k", "3", "--json"])
    assert found.exit_code == 0, found.output
    rows = json.loads(found.output[:found.output.rindex("}") + 1])["results"]
    assert [r["class"] for r in rows] == ["red"] * 3
    views = runner.invoke(app, ["index", "build", "--images", str(bird_folders / "gallery"), "--out",
                                str(tmp_path / "both"), "--vision", "efficientnet_lite0", "--zoom", "--views",
                                "identity,hflip"])
    assert views.exit_code != 0 and "without zoom" in views.output
