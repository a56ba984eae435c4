"""The joint space's building blocks: the class-aware contrastive loss and fusion with presence masks."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fgmm.errors import DataError
from fgmm.space.fusion import FUSIONS
from fgmm.space.losses import ClassAwareInfoNCE


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
