"""PyTorch views of a :class:`~fgmm.data.sample.MultiModalDataset` and a collate that builds masks.

* :class:`ImageDataset` decodes images (for encoders and fine-tuning);
* :class:`FeatureDataset` serves cached per-modality features (for heads, fusion and GNNs), with a
  mask per modality;
* :func:`collate_multimodal` stacks item dicts; a modality that is ``None`` for some items becomes
  zeros there and ``batch["mask"][modality]`` says which rows are real.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from fgmm.data.images import load_image
from fgmm.data.sample import MultiModalDataset
from fgmm.errors import DataError

MASK_KEY = "mask"


def _to_float_tensor(image: Image.Image) -> torch.Tensor:
    return pil_to_tensor(image).float().div_(255.0)


class ImageDataset(Dataset):
    """Item ``i`` is ``{"image": transform(image), "label": int, "index": i}``.

    Args:
        dataset: samples whose ``image`` is set (a sample without one raises :class:`DataError`).
        transform: PIL image -> tensor; defaults to a ``[3, H, W]`` float tensor in ``[0, 1]``.

    Raises:
        DataError: from ``__getitem__`` when the image is missing, corrupt or truncated.
    """

    def __init__(self, dataset: MultiModalDataset,
                 transform: Callable[[Image.Image], torch.Tensor] | None = None):
        self.dataset = dataset
        self.transform = transform or _to_float_tensor

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        if sample.image is None:
            raise DataError(self.dataset.root, f"sample '{sample.id}' has no image")
        return {"image": self.transform(load_image(sample.image)), "label": sample.label, "index": index}


class FeatureDataset(Dataset):
    """Cached features of several modalities for the same ``N`` samples.

    Item ``i`` is ``{modality: Tensor[d_m], "mask": {modality: bool Tensor}, "label": int,
    "index": i}``; a modality whose mask is false for ``i`` is served as zeros.

    Args:
        features: ``{modality: Tensor[N, d_m]}``.
        labels: ``N`` class indices.
        masks: ``{modality: bool Tensor[N]}`` (true: present); a modality without one is present
            for every sample.
    """

    def __init__(self, features: Mapping[str, torch.Tensor], labels: Sequence[int] | torch.Tensor,
                 masks: Mapping[str, torch.Tensor] | None = None):
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        n = len(self.labels)
        for name, tensor in features.items():
            if tensor.shape[0] != n:
                raise ValueError(f"features '{name}' have {tensor.shape[0]} rows for {n} labels")
        masks = dict(masks or {})
        unknown = set(masks) - set(features)
        if unknown:
            raise ValueError(f"masks for modalities without features: {sorted(unknown)}")
        self.masks = {name: masks[name].bool() if name in masks else torch.ones(n, dtype=torch.bool)
                      for name in features}
        for name, mask in self.masks.items():
            if mask.shape != (n,):
                raise ValueError(f"mask '{name}' has shape {tuple(mask.shape)}, expected ({n},)")
        self.features = {name: tensor * self.masks[name].view(-1, *[1] * (tensor.dim() - 1))
                         for name, tensor in features.items()}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item: dict[str, Any] = {name: tensor[index] for name, tensor in self.features.items()}
        item[MASK_KEY] = {name: mask[index] for name, mask in self.masks.items()}
        item["label"] = int(self.labels[index])
        item["index"] = index
        return item


def _stack(values: list[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, bool):
        return torch.tensor(values, dtype=torch.bool)
    if isinstance(first, int | float):
        return torch.tensor(values)
    if isinstance(first, Mapping):
        return {key: _stack([value[key] for value in values]) for key in first}
    return list(values)


def collate_multimodal(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Collate item dicts into a batch dict, filling absent modalities and building masks.

    Tensors are stacked, numbers become tensors, nested dicts are collated key by key, anything
    else becomes a list. A key whose value is ``None`` (or absent) in some items is filled with
    zeros shaped like the present values, and ``batch["mask"][key]`` is a bool ``[B]`` tensor
    (true where present), combined with the ``"mask"`` dicts the items carry themselves (as
    :class:`FeatureDataset` items do). A key that is ``None`` in every item gets only an all-false mask.
    """
    keys = list(dict.fromkeys(key for item in items for key in item if key != MASK_KEY))
    batch: dict[str, Any] = {}
    masks: dict[str, torch.Tensor] = {}
    if any(MASK_KEY in item for item in items):
        masks = dict(_stack([item[MASK_KEY] for item in items]))
    for key in keys:
        values = [item.get(key) for item in items]
        present = [value for value in values if value is not None]
        if len(present) < len(values):
            here = torch.tensor([value is not None for value in values])
            masks[key] = masks[key] & here if key in masks else here
            if not present:
                continue
            if not isinstance(present[0], torch.Tensor):
                raise TypeError(f"'{key}' is missing in some items but is not a tensor "
                                f"({type(present[0]).__name__})")
            values = [value if value is not None else torch.zeros_like(present[0]) for value in values]
        batch[key] = _stack(values)
    if masks:
        batch[MASK_KEY] = masks
    return batch
