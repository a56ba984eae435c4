"""The joint embedding space: class-aware loss, fusion with masks, model, tower locking, persistence."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fgmm.data.sample import Sample
from fgmm.data.torch_dataset import collate_multimodal
from fgmm.errors import ConfigError, DataError
from fgmm.joint import FUSIONS, ClassAwareInfoNCE, JointConfig, JointEmbeddingModel, JointObjective
from fgmm.joint.training import CaptionedFeatures, fit_joint, pooled_texts, text_table
from fgmm.train import TrainConfig


def clip_loss(u: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """CLIP's symmetric InfoNCE, written out independently."""
    logits = scale * u @ v.T
    target = torch.arange(len(u))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def test_targets_are_distributions_over_same_class_items():
    labels = torch.tensor([0, 0, 1, -1, 0])
    q = ClassAwareInfoNCE(instance_weight=0.0).targets(labels)
    assert torch.allclose(q.sum(1), torch.ones(5))
    assert torch.allclose(q[0], torch.tensor([1 / 3, 1 / 3, 0, 0, 1 / 3]))
    assert torch.allclose(q[3], torch.tensor([0.0, 0, 0, 1, 0]))  # unknown label: only itself
    q = ClassAwareInfoNCE(instance_weight=0.5).targets(labels)
    assert torch.allclose(q[0], torch.tensor([0.5 + 0.5 / 3, 0.5 / 3, 0, 0, 0.5 / 3]))


def test_instance_weight_one_is_clip():
    torch.manual_seed(0)
    u, v = F.normalize(torch.randn(6, 8), dim=1), F.normalize(torch.randn(6, 8), dim=1)
    loss = ClassAwareInfoNCE(init_temperature=0.1, instance_weight=1.0)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert torch.allclose(loss(u, v, labels), clip_loss(u, v, 10.0), atol=1e-5)


def test_gradient_is_softmax_minus_target():
    torch.manual_seed(1)
    u = F.normalize(torch.randn(5, 4), dim=1).requires_grad_()
    v = F.normalize(torch.randn(5, 4), dim=1)
    labels = torch.tensor([0, 0, 1, 2, 2])
    module = ClassAwareInfoNCE(init_temperature=0.5)
    module(u, v, labels).backward()
    scores = 2.0 * u.detach() @ v.T
    q = module.targets(labels)
    grad_scores = 0.5 * ((scores.softmax(1) - q) + (scores.T.softmax(1) - q).T) / 5
    assert torch.allclose(u.grad, 2.0 * grad_scores @ v, atol=1e-5)


def score_gradient(instance_weight: float, labels: torch.Tensor) -> torch.Tensor:
    """d loss / d s_ij at a batch where every image matches its own caption best.

    With one-hot image embeddings, s_ij = scale * v_j[i], so the gradient of v holds d loss / d s.
    """
    n = len(labels)
    v = (torch.eye(n) + 0.1).requires_grad_()
    ClassAwareInfoNCE(init_temperature=1.0, instance_weight=instance_weight)(torch.eye(n), v, labels).backward()
    return v.grad.T  # [i, j] = d loss / d s_ij


def test_same_class_pairs_are_pulled_together_not_pushed_apart():
    labels = torch.tensor([0, 0, 1, 1])
    same_class, other_class = (0, 1), (0, 2)
    class_aware = score_gradient(0.0, labels)
    assert class_aware[same_class] < 0  # descending raises the score: pulled together
    assert class_aware[other_class] > 0  # other classes are still negatives
    clip = score_gradient(1.0, labels)
    assert clip[same_class] > 0 and clip[other_class] > 0  # CLIP pushes the classmate away too


def test_class_aware_loss_prefers_collapsed_classes_clip_does_not():
    e = torch.eye(4)
    labels = torch.tensor([0, 0, 1, 1])
    collapsed = torch.stack([e[0], e[0], e[1], e[1]])  # both captions of a class at the same point
    separated = torch.stack([e[0], e[2], e[1], e[3]])  # every pair on its own
    class_aware, clip = ClassAwareInfoNCE(0.1, 0.0), ClassAwareInfoNCE(0.1, 1.0)
    assert class_aware(collapsed, collapsed, labels) < class_aware(separated, separated, labels)
    assert clip(collapsed, collapsed, labels) > clip(separated, separated, labels)


def test_temperature_is_learned_and_clamped():
    module = ClassAwareInfoNCE(init_temperature=0.07)
    assert module.temperature == pytest.approx(0.07)
    u = F.normalize(torch.randn(4, 8), dim=1)
    module(u, u, torch.tensor([0, 1, 2, 3])).backward()
    assert module.log_scale.grad is not None and module.log_scale.grad != 0
    with torch.no_grad():
        module.log_scale.fill_(10.0)
    assert module.temperature == pytest.approx(0.01)


def test_objective_skips_absent_pairs_and_unknown_labels():
    objective = JointObjective([("image", "text")])
    z = F.normalize(torch.randn(4, 8), dim=1)
    masks = {"image": torch.ones(4, dtype=torch.bool), "text": torch.tensor([True, False, False, False]),
             "fused": torch.ones(4, dtype=torch.bool)}
    logits = {"image": torch.randn(4, 3), "fused": torch.randn(4, 3)}
    labels = torch.tensor([0, 1, -1, 2])
    out = objective({"image": z, "text": z}, masks, logits, labels)
    assert "loss_con_image_text" not in out  # only one sample carries both
    expected = 0.5 * (F.cross_entropy(logits["image"][[0, 1, 3]], labels[[0, 1, 3]])
                      + F.cross_entropy(logits["fused"][[0, 1, 3]], labels[[0, 1, 3]]))
    assert torch.allclose(out["loss"], expected)


@pytest.mark.parametrize("name", ["gated", "attention", "mean"])
def test_fusion_ignores_absent_modalities(name):
    torch.manual_seed(3)
    fusion = FUSIONS.create(name, modalities=["image", "text"], dim=8).eval()
    image, text = torch.randn(3, 8), torch.randn(3, 8)
    masks = {"image": torch.ones(3, dtype=torch.bool), "text": torch.tensor([True, False, False])}
    a = fusion({"image": image, "text": text}, masks)
    b = fusion({"image": image, "text": torch.randn(3, 8) * 100}, masks)
    assert torch.allclose(a[1:], b[1:], atol=1e-5)  # rows without text do not see the text rows
    assert not torch.allclose(a[0], b[0])
    if name in ("gated", "mean"):
        assert torch.allclose(a[1:], image[1:], atol=1e-6)  # one modality present: its embedding
    with pytest.raises(DataError, match="carry none of the modalities"):
        fusion({"image": image}, {"image": torch.tensor([True, False, True])})


def toy_features(n: int = 120, classes: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image and text features that both carry the class (plus noise)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    centres_i, centres_t = torch.randn(classes, 12, generator=g), torch.randn(classes, 6, generator=g)
    image = centres_i[labels] + 1.5 * torch.randn(n, 12, generator=g)
    text = centres_t[labels] + 0.3 * torch.randn(n, 6, generator=g)
    return image, text, labels


def test_model_forward_contract():
    model = JointEmbeddingModel(JointConfig({"image": 12, "text": 6}, num_classes=4, dim=8, hidden=16))
    image, text, labels = toy_features(6)
    out = model({"image": image, "text": text, "label": labels, "mask": {"text": torch.tensor([1, 1, 0, 1, 0, 1])}})
    assert out["logits"].shape == (6, 4) and out["loss"].ndim == 0
    assert torch.allclose(out["z_text"].norm(dim=1), torch.ones(6))
    assert {"loss_con_image_text", "loss_ce_image", "loss_ce_text", "loss_ce_fused"} <= set(out)
    image_only = model.eval()({"image": image})
    assert torch.allclose(image_only["logits"], image_only["logits_image"], atol=1e-5)  # gated fusion of one
    with pytest.raises(DataError, match=r"expects \[B, 12\]"):
        model({"image": torch.randn(2, 10)})
    with pytest.raises(ConfigError, match="unknown fusion"):
        JointConfig({"image": 12}, num_classes=2, fusion="nope", pairs=[])


def test_fit_joint_learns_and_fusion_helps(tmp_path, one_thread):
    image, text, labels = toy_features(160)
    rows = [[i] for i in range(160)]
    config = TrainConfig(epochs=15, batch_size=40, lr=5e-3, out_dir=tmp_path, progress=False, device="cpu")
    model, result = fit_joint(image[:120], text, rows[:120], labels[:120], config, dim=16, hidden=32)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    with torch.no_grad():
        image_only = model({"image": image[120:]})["logits"].argmax(1)
        fused = model({"image": image[120:], "text": text[120:]})["logits"].argmax(1)
    image_top1 = float((image_only == labels[120:]).float().mean())
    fused_top1 = float((fused == labels[120:]).float().mean())
    assert fused_top1 > image_top1 and fused_top1 > 0.9


def test_tower_locking():
    tower = nn.Linear(5, 12)
    model = JointEmbeddingModel(JointConfig({"image": 12, "text": 6}, num_classes=3, dim=8, hidden=0),
                                towers={"image": tower}, locked=["image"])
    batch = {"image": torch.randn(4, 5), "text": torch.randn(4, 6), "label": torch.tensor([0, 1, 2, 0])}
    model.train()
    assert not tower.training and model.is_locked("image")
    model(batch)["loss"].backward()
    assert tower.weight.grad is None and model.projections["image"].body.weight.grad is not None
    model.unlock_tower("image")
    model.train()
    model(batch)["loss"].backward()
    assert tower.weight.grad is not None and tower.training
    with pytest.raises(ConfigError, match="has no tower"):
        model.lock_tower("text")


def test_save_load_round_trip(tmp_path):
    model = JointEmbeddingModel(JointConfig({"image": 12, "text": 6}, num_classes=4, dim=8, hidden=16,
                                            fusion="attention", encoders={"text": "abc"})).eval()
    image, text, _ = toy_features(5)
    path = model.save(tmp_path / "joint.pt")
    loaded = JointEmbeddingModel.load(path)
    assert loaded.fingerprint() == model.fingerprint()
    assert loaded.config == model.config
    batch = {"image": image, "text": text}
    assert torch.equal(loaded(batch)["logits"], model(batch)["logits"])
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(DataError, match="cannot read the joint model"):
        JointEmbeddingModel.load(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="does not exist"):
        JointEmbeddingModel.load(tmp_path / "missing.pt")


def test_captioned_features_pool_and_sample_texts():
    samples = [Sample("a", 0, texts=["x", "y"]), Sample("b", 1), Sample("c", 1, texts=["z"])]
    texts, rows = text_table(samples)
    assert texts == ["x", "y", "z"] and rows == [[0, 1], [], [2]]
    feats = torch.eye(3)
    pooled = pooled_texts(feats, rows)
    assert torch.allclose(pooled[0], F.normalize(torch.tensor([1.0, 1.0, 0.0]), dim=0))
    assert torch.equal(pooled[1], torch.zeros(3))
    train = CaptionedFeatures({"image": torch.randn(3, 4)}, feats, rows, [0, 1, 1], train=True)
    batch = collate_multimodal([train[i] for i in range(3)])
    assert batch["mask"]["text"].tolist() == [True, False, True]
    assert batch["text"][0].tolist() in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])  # one of its two captions
    evaluation = CaptionedFeatures({"image": torch.randn(3, 4)}, feats, rows, [0, 1, 1], train=False)
    assert torch.allclose(evaluation[0]["text"], pooled[0])
