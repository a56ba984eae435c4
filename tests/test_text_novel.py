"""The held-out-caption protocol (fgmm.tasks.text_novel) on the procedural set, and its fixed class choice."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fgmm.data import generate_procedural
from fgmm.data.cub import CUB_CAPTION_CLASS_IDS
from fgmm.kg.phrases import match_attributes
from fgmm.tasks import TaskContext, run_tasks
from fgmm.tasks.text_novel import choose_novel_classes, evaluate_text_to_image

#: the 40 novel CUB classes (1-based ids) listed in benchmarks/README.md
CUB_NOVEL = [1, 2, 3, 4, 7, 8, 10, 18, 26, 31, 35, 37, 39, 52, 58, 61, 70, 79, 80, 82, 94, 95, 100, 107, 110, 118,
             119, 133, 134, 137, 139, 140, 149, 152, 154, 156, 158, 184, 192, 193]


def test_the_cub_novel_classes_are_fixed():
    chosen = choose_novel_classes(list(range(200)), [c - 1 for c in CUB_CAPTION_CLASS_IDS], 40, 10)
    assert [c + 1 for c in chosen] == CUB_NOVEL
    assert len(set(CUB_NOVEL) & set(CUB_CAPTION_CLASS_IDS)) == 10


def test_class_level_figures_have_a_known_answer():
    images = torch.eye(4)[[0, 0, 1, 2, 3]]  # five images of four classes
    image_labels = torch.tensor([0, 0, 1, 2, 3])
    text = torch.eye(4)[[0, 3]]
    figures = evaluate_text_to_image(text, torch.tensor([0, 3]), images, image_labels)
    assert figures["mAP"] == 1.0 and figures["R@1"] == 1.0
    wrong = evaluate_text_to_image(torch.eye(4)[[1]], torch.tensor([0]), images, image_labels)
    assert wrong["R@1"] == 0.0 and wrong["R@5"] == 1.0 and wrong["medR"] == 2.0
    assert wrong["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)  # relevant images at ranks 2 and 3


class AttributeReader:
    """Stand-in text encoder: the multi-hot of the KG attributes a sentence names (fgmm.kg.phrases)."""

    def __init__(self, attributes: list[str]):
        self.attributes = attributes
        self.dim = len(attributes)

    def fingerprint(self) -> str:
        return "attribute-reader"

    def encode_cached(self, texts, cache=None) -> torch.Tensor:
        out = torch.zeros(len(texts), self.dim)
        for i, text in enumerate(texts):
            for term in match_attributes(text, self.attributes):
                out[i, self.attributes.index(term.attribute)] = 1.0
        return F.normalize(out + 1e-3, dim=1)


@pytest.fixture(scope="module")
def procedural(tmp_path_factory):
    return generate_procedural(tmp_path_factory.mktemp("procedural-text"), num_classes=12, images_per_class=10,
                               image_size=32, unseen_classes=0, noise_rate=0.0, seed=0, with_audio=False)


def test_descriptions_reach_classes_whose_captions_were_withheld(procedural, one_thread):
    """Known answer: images are their class (one-hot + noise) and texts are read as the attributes
    they name, so a novel class's captions land on it exactly when the model learned where the
    attributes of a description point -- which only the KG descriptions teach."""
    labels = torch.as_tensor(procedural.labels)
    noise = torch.randn(len(labels), 12, generator=torch.Generator().manual_seed(0))
    image = F.one_hot(labels, 12).float() + 0.1 * noise
    ctx = TaskContext(dataset=procedural, features={"image": image}, quick=True,
                      shared={"text_encoder": AttributeReader(list(procedural.attribute_names))})
    metrics = run_tasks(ctx, ["text_novel"])
    assert metrics["text_novel_classes"] == [7, 9]
    run = ctx.shared["text_novel"]["data"]
    assert len(run.test) == 36 and sum(len(run.caption_rows[i]) for i in run.test) == 180  # gallery, all queries
    assert metrics["t2i_R@5_novel"] >= 0.9 and metrics["t2i_mAP_novel"] >= 0.6, metrics
    assert metrics["t2i_R@5_novel_nodesc"] <= 0.5
    assert metrics["t2i_R@5_captioned"] >= 0.9
