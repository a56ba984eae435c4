"""Zero-shot and GZSL: metrics, calibrated stacking, protocol, and a tiny KG where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.errors import ConfigError, DataError
from fgmm.gnn import ClassGraph
from fgmm.space import ModalityTable, create_model
from fgmm.space.projections import FeatureWhitening
from fgmm.tasks import TaskContext, run_tasks
from fgmm.train import TrainConfig
from fgmm.zeroshot import (
    calibrated_stacking,
    calibration_split,
    choose_gamma,
    gzsl_accuracy,
    mean_class_accuracy,
    zero_shot_split,
    zsl_accuracy,
)

torch.set_num_threads(1)

# Six classes on a ring of six attributes: class c shows attributes c and c+1 (mod 6). Every
# attribute occurs in the seen classes 0..3, so the unseen classes 4 ({4, 5}) and 5 ({5, 0}) are
# new combinations of known attributes: a KG model must compose them, and chance is 1/2.
RING = np.array([[1.0 if a in (c, (c + 1) % 6) else 0.0 for a in range(6)] for c in range(6)], dtype=np.float32)
SEEN, UNSEEN = [0, 1, 2, 3], [4, 5]


def ring_data(per_class: int = 40, dim: int = 24, noise: float = 0.3, seed: int = 0):
    """Image features = sum of the class' attribute directions + noise."""
    rng = np.random.default_rng(seed)
    directions = np.linalg.qr(rng.normal(size=(dim, 6)))[0].T  # 6 orthonormal attribute directions
    labels = np.repeat(np.arange(6), per_class)
    features = RING[labels] @ directions + noise * rng.normal(size=(len(labels), dim)) / np.sqrt(dim)
    return torch.tensor(features, dtype=torch.float32), torch.tensor(labels)


RING_GRAPH = ClassGraph.from_matrix(RING)


def test_mean_class_accuracy_averages_over_classes():
    labels = torch.tensor([0, 0, 0, 0, 1])
    predictions = torch.tensor([0, 0, 0, 0, 0])
    assert mean_class_accuracy(predictions, labels) == pytest.approx(0.5)  # per-sample accuracy is 0.8


def test_gzsl_accuracy_and_calibrated_stacking():
    # 2 seen classes (0, 1), 1 unseen (2); seen scores are inflated by 0.3
    scores = torch.tensor([[0.9, 0.1, 0.7], [0.2, 0.8, 0.6], [0.6, 0.1, 0.5], [0.1, 0.5, 0.4]])
    labels = torch.tensor([0, 1, 2, 2])
    raw = gzsl_accuracy(scores, labels, seen=[0, 1])
    assert (raw.seen, raw.unseen, raw.h) == (1.0, 0.0, 0.0)
    assert calibrated_stacking(scores, [0, 1], 0.3)[0].tolist() == pytest.approx([0.6, -0.2, 0.7])
    best = choose_gamma(scores, labels, seen=[0, 1])
    assert best.seen == 1.0 and best.unseen == 1.0 and best.h == 1.0
    assert 0.1 < best.gamma < 0.2  # the smallest-magnitude gamma that fixes both unseen samples


def test_zero_shot_split_keeps_every_unseen_sample_out_of_training():
    labels = np.array([0, 0, 1, 1, 2, 2, -1])
    split = ["train", "test", "train", "test", "train", "test", "train"]
    zs = zero_shot_split(labels, split, unseen=[1], num_classes=3)
    assert zs.train.tolist() == [0, 4]
    assert zs.test_seen.tolist() == [1, 5]
    assert zs.test_unseen.tolist() == [2, 3]  # train-split images of an unseen class are test images
    assert (zs.seen, zs.unseen) == ([0, 2], [1])


def test_calibration_split_holds_out_whole_stand_in_classes():
    labels = np.repeat(np.arange(10), 10)
    fit, validation, stand_in_seen = calibration_split(labels, np.arange(100), seen=range(10), fraction=0.2)
    assert len(stand_in_seen) == 8
    assert set(labels[fit]) == set(stand_in_seen)
    stand_in_unseen = set(range(10)) - set(stand_in_seen)
    assert all((labels[validation] == c).sum() == 10 for c in stand_in_unseen)
    assert all((labels[validation] == c).sum() == 2 for c in stand_in_seen)
    assert not set(fit) & set(validation)


def test_feature_whitening_equalises_within_class_scatter():
    rng = np.random.default_rng(0)
    labels = torch.tensor(np.repeat(np.arange(4), 50))
    scale = torch.tensor([5.0, 1.0, 1.0, 0.2] * 4)  # anisotropic within-class noise
    centres = torch.tensor(rng.normal(size=(4, 16)), dtype=torch.float32) * 3
    features = centres[labels] + torch.tensor(rng.normal(size=(200, 16)), dtype=torch.float32) * scale
    whitening = FeatureWhitening(power=1.0, shrinkage=0.01).fit(features, labels)
    z = whitening(features)
    assert torch.allclose(z.norm(dim=1), torch.ones(200), atol=1e-5)
    residual = z - torch.stack([z[labels == c].mean(0) for c in range(4)])[labels]
    spread = torch.linalg.eigvalsh(residual.T @ residual / 200)
    raw = features - centres[labels]
    raw_spread = torch.linalg.eigvalsh(raw.T @ raw / 200)
    # largest / median eigenvalue: 25 for the raw noise, near 1 once whitened
    assert spread[-1] / spread.median() < raw_spread[-1] / raw_spread.median() / 5
    with pytest.raises(ConfigError, match="before fit"):
        FeatureWhitening()(features)


@pytest.mark.parametrize("source, options", [
    ("kg", {"mean_weight": 1.0}),
    ("gnn", {"layer": "gcn", "hidden": 16, "free_weights": False}),
    ("gnn", {"layer": "ggnn", "hidden": 16, "free_weights": False}),
])
def test_graph_class_sources_compose_known_attributes(source, options, tmp_path):
    """Trained on classes 0-3 only, the model names the unseen classes 4 and 5 through the graph."""
    features, labels = ring_data()
    train = torch.isin(labels, torch.tensor(SEEN))
    config = {"modalities": {"image": {"projection": "identity", "input_dim": 24}},
              "class_embeddings": {"source": source, "options": options}}
    model = create_model(config, classes=[f"c{i}" for i in range(6)], kg=RING_GRAPH)
    recipe = TrainConfig(epochs=30, batch_size=32, lr=1e-2, out_dir=tmp_path / "run", progress=False)
    model.fit_features({"image": ModalityTable.one_per_sample(features[train])}, labels[train], train=recipe)
    assert model.trained_classes().tolist() == [True] * 4 + [False] * 2 and model.available_classes().all()
    scores = model.logits({"image": features[~train]})
    assert zsl_accuracy(scores, labels[~train], UNSEEN) >= 0.9  # chance: 0.5
    if source == "kg":  # mean_weight 1: the graph only names the classes without samples
        means = F.normalize(torch.stack([model.embed("image", features[labels == c]).mean(0) for c in SEEN]), dim=1)
        assert torch.allclose(model.class_embeddings()[SEEN], means, atol=1e-4)


def ring_context(tmp_path) -> TaskContext:
    features, labels = ring_data(per_class=20)
    samples = [Sample(id=str(i), label=int(y)) for i, y in enumerate(labels)]
    # as on CUB: every class has train and test images; zsl must ignore the unseen classes' ones
    split = ["test" if i % 4 == 0 else "train" for i in range(len(labels))]
    dataset = MultiModalDataset(samples=samples, class_names=[f"c{i}" for i in range(6)], split=split,
                                attribute_names=[f"has_ring::a{i}" for i in range(6)], class_attributes=RING,
                                root=tmp_path, name="ring")
    return TaskContext(dataset=dataset, features={"image": features}, unseen_classes=UNSEEN, quick=True)


def test_kg_and_zsl_tasks_return_the_benchmark_keys(tmp_path):
    import fgmm.tasks.kg  # noqa: F401  (registers the tasks)

    ctx = ring_context(tmp_path)
    metrics = run_tasks(ctx, ["kg", "zsl", "kg_gnn", "zsl_gnn"])
    assert {"kg_top1", "zsl_unseen50_top1", "gzsl_seen", "gzsl_unseen", "gzsl_h"} <= set(metrics)
    assert {"kg_gnn_top1", "zsl_gnn_unseen50_top1", "gzsl_gnn_h"} <= set(metrics)
    assert metrics["zsl_unseen50_top1"] >= 0.9 and metrics["zsl_gnn_unseen50_top1"] >= 0.9
    assert metrics["kg_top1"] >= 0.9 and metrics["kg_gnn_top1"] >= 0.9
    assert metrics["kg_mean_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert {"kg_top1_nokg", "kg_top1_random", "kg_top1_5shot", "kg_top1_5shot_nokg", "kg_ridge",
            "kg_top1_preset"} <= set(metrics)
    assert ctx.shared["kg_graph"].num_labels == 6


def test_tasks_explain_a_dataset_without_knowledge(tmp_path):
    import fgmm.tasks.kg  # noqa: F401

    ctx = ring_context(tmp_path)
    ctx.dataset.class_attributes = None
    with pytest.raises(DataError, match="neither"):
        run_tasks(ctx, ["kg"])
