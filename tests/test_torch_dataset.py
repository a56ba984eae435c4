"""Torch views: images, cached features with masks, and the collate that fills absent modalities."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from fgmm.data import load_cub
from fgmm.data.torch_dataset import FeatureDataset, ImageDataset, collate_multimodal
from fgmm.errors import DataError


def test_image_dataset_batches(tiny_cub: Path) -> None:
    dataset = ImageDataset(load_cub(tiny_cub))
    item = dataset[5]
    assert item["image"].shape == (3, 30, 40) and item["image"].dtype == torch.float32
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    assert (item["label"], item["index"]) == (1, 5)
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_multimodal)))
    assert batch["image"].shape == (4, 3, 30, 40) and batch["label"].tolist() == [0, 0, 0, 0]
    assert batch["index"].tolist() == [0, 1, 2, 3] and "mask" not in batch
    resized = ImageDataset(load_cub(tiny_cub), transform=lambda im: torch.zeros(3, 8, 8))
    assert resized[0]["image"].shape == (3, 8, 8)


def test_image_dataset_names_corrupt_and_absent_images(tiny_cub_corrupt: Path) -> None:
    dataset = ImageDataset(load_cub(tiny_cub_corrupt))
    with pytest.raises(DataError, match=r"Red_Test_Bird_0000_10.jpg: corrupt or truncated image"):
        dataset[0]
    without = load_cub(tiny_cub_corrupt)
    without[1].image = None
    with pytest.raises(DataError, match="sample '12' has no image"):
        ImageDataset(without)[1]


def test_feature_dataset_zeros_masked_rows() -> None:
    features = {"image": torch.ones(4, 3), "audio": torch.full((4, 2), 2.0)}
    dataset = FeatureDataset(features, [0, 1, 1, 0], masks={"audio": torch.tensor([True, False, True, False])})
    item = dataset[1]
    assert item["audio"].tolist() == [0.0, 0.0] and item["image"].tolist() == [1.0, 1.0, 1.0]
    assert item["mask"]["audio"].item() is False and item["mask"]["image"].item() is True
    batch = collate_multimodal([dataset[i] for i in range(4)])
    assert batch["image"].shape == (4, 3) and batch["audio"][:, 0].tolist() == [2.0, 0.0, 2.0, 0.0]
    assert batch["mask"]["audio"].tolist() == [True, False, True, False]
    assert batch["mask"]["image"].all() and batch["label"].tolist() == [0, 1, 1, 0]
    assert features["audio"].sum() == 16  # the caller's tensor is not modified
    with pytest.raises(ValueError, match="rows for 3 labels"):
        FeatureDataset(features, [0, 1, 1])
    with pytest.raises(ValueError, match="without features"):
        FeatureDataset(features, [0, 1, 1, 0], masks={"text": torch.ones(4, dtype=torch.bool)})


def test_collate_fills_absent_values_with_zeros_and_masks() -> None:
    items = [{"image": torch.ones(2), "text": None, "label": 3, "id": "a"},
             {"image": torch.ones(2), "text": torch.full((5,), 7.0), "label": 4, "id": "b"},
             {"image": torch.ones(2), "label": 5, "id": "c"}]
    batch = collate_multimodal(items)
    assert batch["text"].shape == (3, 5) and batch["text"].sum() == 35
    assert batch["mask"] == {"text": batch["mask"]["text"]} and batch["mask"]["text"].tolist() == [False, True, False]
    assert batch["label"].tolist() == [3, 4, 5] and batch["id"] == ["a", "b", "c"]
    nothing = collate_multimodal([{"audio": None, "label": 0}, {"audio": None, "label": 1}])
    assert "audio" not in nothing and nothing["mask"]["audio"].tolist() == [False, False]
    with pytest.raises(TypeError, match="'name' is missing in some items but is not a tensor"):
        collate_multimodal([{"name": "x"}, {"name": None}])
