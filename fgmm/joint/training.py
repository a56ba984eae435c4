"""Training the joint model: per-sample features plus the features of 0..n texts each.

A sample may carry several descriptions (CUB: 10 captions per image) or none. Texts are encoded
once, flat (:func:`text_table`); :class:`CaptionedFeatures` serves each sample's text modality as
the renormalised mean of some of its texts: a random subset of at most ``max_texts`` while
training (a different one every epoch, so each caption is seen with its image), all of them for
evaluation. A sample without text gets ``None`` there, which
:func:`~fgmm.data.torch_dataset.collate_multimodal` turns into a zero row with a false mask.
:func:`fit_joint` trains a :class:`~fgmm.joint.JointEmbeddingModel` on such data with
:class:`fgmm.train.Trainer`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from fgmm.data.sample import Sample
from fgmm.data.torch_dataset import collate_multimodal
from fgmm.joint.model import JointConfig, JointEmbeddingModel
from fgmm.train import TrainConfig, Trainer, TrainResult


def text_table(samples: Sequence[Sample]) -> tuple[list[str], list[list[int]]]:
    """All texts of ``samples`` in one list, and for each sample the positions of its texts."""
    texts: list[str] = []
    rows: list[list[int]] = []
    for sample in samples:
        rows.append(list(range(len(texts), len(texts) + len(sample.texts))))
        texts.extend(sample.texts)
    return texts, rows


def pooled_texts(text_features: torch.Tensor, rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """``[len(rows), d]``: the renormalised mean of the text features of each sample (zeros if none)."""
    out = torch.zeros(len(rows), text_features.shape[1])
    for i, positions in enumerate(rows):
        if positions:
            out[i] = F.normalize(text_features[list(positions)].mean(0), dim=0)
    return out


class CaptionedFeatures(Dataset):
    """Items ``{<modality>: features, "text": pooled text features or None, "label", "index"}``.

    Args:
        features: ``{modality: Tensor[N, d_m]}`` of the non-text modalities (e.g. ``"image"``).
        text_features: ``[T, d_t]`` features of all texts (rows of :func:`text_table`).
        text_rows: for each of the ``N`` samples, its rows in ``text_features`` (may be empty).
        labels: ``N`` class indices.
        train: draw a random subset of each sample's texts per access; otherwise use all.
        max_texts: largest subset drawn while training (the size is uniform in ``1..min(n, max_texts)``).
    """

    def __init__(self, features: Mapping[str, torch.Tensor], text_features: torch.Tensor,
                 text_rows: Sequence[Sequence[int]], labels: Sequence[int] | torch.Tensor, train: bool = True,
                 max_texts: int = 1):
        self.features = dict(features)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        if len(text_rows) != len(self.labels) or any(len(f) != len(self.labels) for f in self.features.values()):
            raise ValueError("features, text rows and labels must describe the same samples")
        self.text_features = text_features
        self.text_rows = [list(r) for r in text_rows]
        self.train = train
        self.max_texts = max_texts
        self.pooled = None if train else pooled_texts(text_features, self.text_rows)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {m: f[index] for m, f in self.features.items()}
        rows = self.text_rows[index]
        if not rows:
            item["text"] = None
        elif self.pooled is not None:
            item["text"] = self.pooled[index]
        else:
            # Python's RNG: seeded by the Trainer (and per DataLoader worker), and far cheaper per item
            chosen = random.sample(rows, random.randint(1, min(len(rows), self.max_texts)))
            item["text"] = F.normalize(self.text_features[chosen].mean(0), dim=0)
        item["label"] = int(self.labels[index])
        item["index"] = index
        return item


def fit_joint(image_features: torch.Tensor, text_features: torch.Tensor, text_rows: Sequence[Sequence[int]],
              labels: Sequence[int] | torch.Tensor, train_config: TrainConfig, *, max_texts: int = 1,
              seed: int = 0, **config: Any) -> tuple[JointEmbeddingModel, TrainResult]:
    """Train an image+text :class:`JointEmbeddingModel` on cached features.

    Args:
        image_features: ``[N, d_i]`` features of the training images.
        text_features: ``[T, d_t]`` features of all texts.
        text_rows: for each image, its rows in ``text_features`` (may be empty).
        labels: ``N`` class indices in ``0..C-1`` (``C`` = ``max(labels) + 1`` unless ``num_classes`` is given).
        train_config: the Trainer's config (epochs, batch size, learning rate, ``out_dir``, ...).
        max_texts: see :class:`CaptionedFeatures`.
        seed: seed of the model's initialisation.
        **config: further :class:`JointConfig` fields (``dim``, ``fusion``, ``instance_weight``, ``encoders``...).

    Returns:
        The trained model (on CPU, eval mode) and the Trainer's result.
    """
    labels = torch.as_tensor(labels, dtype=torch.long)
    config.setdefault("num_classes", int(labels.max()) + 1)
    joint_config = JointConfig(input_dims={"image": image_features.shape[1], "text": text_features.shape[1]},
                               **config)
    torch.manual_seed(seed)
    model = JointEmbeddingModel(joint_config)
    data = CaptionedFeatures({"image": image_features}, text_features, text_rows, labels, max_texts=max_texts)
    result = Trainer(model, train_config, data, collate_fn=collate_multimodal).fit(resume=False)
    return model.cpu().eval(), result
