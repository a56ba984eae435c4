r"""Image encoders built on timm.

A :class:`TimmVisionEncoder` wraps any timm classifier without its head, so that

.. math::
    \mathbf{z} = \operatorname{GAP}\big(f_\theta(T(\mathbf{x}))\big) \in \mathbb{R}^{d},

where :math:`T` is timm's preprocessing for the weights (resize, centre crop, normalise),
:math:`f_\theta` the convolutional/transformer trunk, GAP the model's global pooling and :math:`d`
its ``num_features`` (1280 for EfficientNet-Lite0/Lite2). With ``zoom=True`` the features are
:math:`[\mathbf z_{\mathrm{image}}; \mathbf z_{\mathrm{object}}] \in \mathbb{R}^{2d}`, the second
half encoding the object found by the backbone's own activations, cut from a higher-resolution source
(:mod:`fgmm.encoders.zoom`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm.data
import torch

from fgmm.encoders.base import Encoder
from fgmm.encoders.factory import ENCODERS
from fgmm.encoders.pretrained import PREPROCESSING_KEYS, create_timm_model, offline_weights
from fgmm.encoders.zoom import crop_boxes, downscale, object_boxes, object_mask
from fgmm.errors import ConfigError


@ENCODERS.register("vision")
class TimmVisionEncoder(Encoder):
    """A timm model returning pooled image features.

    Args:
        name: an offline name (``efficientnet_lite2`` default, ``efficientnet_lite0``) or any timm model name.
        pretrained: load ImageNet weights (offline where available, else timm's hub).
        frozen: no gradients and fixed batch-norm statistics; :meth:`encode` runs without autograd.
        image_size: input side (int) or ``(height, width)``; default: the size the weights were trained at.
        checkpoint_path: local weights file loaded instead of pretrained weights.
        zoom: append the object-zoom features (:mod:`fgmm.encoders.zoom`): ``dim`` doubles and each image
            costs three backbone passes (image, object crop, its mirror image).
        zoom_margin: the zoom box's margin on each side, as a fraction of the object's extent.
        zoom_source: the source resolution the object is cut from, as a multiple of the input size
            (the preprocessing resizes to it; the whole-image view is downscaled from it).

    Attributes:
        model: the timm model (``num_classes=0``: its forward returns ``[B, dim]`` pooled features).
        data_config: timm data config (input size, mean, std, interpolation, crop) used by :meth:`transform`.

    Example::

        encoder = TimmVisionEncoder()                              # EfficientNet-Lite2 @ 260 px, 1280-d
        x = torch.stack([encoder.transform()(load_image(p)) for p in paths])
        features = encoder.encode(x)                               # [B, 1280]
    """

    modality = "vision"

    def __init__(
        self,
        name: str = "efficientnet_lite2",
        pretrained: bool = True,
        frozen: bool = True,
        image_size: int | tuple[int, int] | None = None,
        checkpoint_path: str | Path | None = None,
        zoom: bool = False,
        zoom_margin: float = 0.1,
        zoom_source: float = 2.0,
    ):
        if zoom and (zoom_margin < 0 or zoom_source < 1):
            raise ConfigError(f"zoom needs zoom_margin >= 0 and zoom_source >= 1, got {zoom_margin} and {zoom_source}")
        model = create_timm_model(name, pretrained=pretrained, num_classes=0, checkpoint_path=checkpoint_path)
        weights = offline_weights(name)
        super().__init__(name=weights.name if weights else name, dim=model.num_features * (2 if zoom else 1),
                         frozen=frozen)
        self.zoom = {"margin": float(zoom_margin), "source": float(zoom_source)} if zoom else None
        self.model = model
        config = timm.data.resolve_data_config({}, model=model)
        if image_size is not None:
            height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
            config["input_size"] = (3, int(height), int(width))
        self.data_config: dict[str, Any] = {key: config[key] for key in PREPROCESSING_KEYS if key in config}
        if frozen:
            self.freeze()
        else:
            self.unfreeze()

    def preprocessing(self) -> dict[str, Any]:
        """The timm data config: input size, interpolation, mean, std, crop fraction and mode (and the zoom
        settings when on)."""
        return {**self.data_config, "zoom": self.zoom} if self.zoom else dict(self.data_config)

    @property
    def input_size(self) -> tuple[int, int]:
        """``(height, width)`` of the backbone's input."""
        return int(self.data_config["input_size"][1]), int(self.data_config["input_size"][2])

    def transform(self, train: bool = False) -> Callable[[Any], torch.Tensor]:
        """timm's transform from a PIL RGB image to a normalised ``[3, H, W]`` tensor.

        ``train=False``: resize + centre crop (evaluation, feature caching);
        ``train=True``: random-resized crop, flip and colour jitter for fine-tuning.
        With ``zoom``, at the source resolution (``zoom_source`` times the input size).
        """
        config = dict(self.data_config)
        if self.zoom:
            height, width = self.input_size
            config["input_size"] = (3, round(height * self.zoom["source"]), round(width * self.zoom["source"]))
        return timm.data.create_transform(**config, is_training=train)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` preprocessed images (any device) -> ``[B, dim]`` features (model's device)."""
        images = images.to(next(self.model.parameters()).device, non_blocking=True)
        forward = self._zoomed if self.zoom else self.model
        if self.frozen:
            with torch.no_grad():
                return forward(images)
        return forward(images)

    def _zoomed(self, source: torch.Tensor) -> torch.Tensor:
        """``[g; z]`` of the module docstring from ``[B, 3, sH, sW]`` source images."""
        size = self.input_size
        feature_map = self.model.forward_features(downscale(source, size))
        if feature_map.ndim != 4:
            raise ConfigError(f"zoom locates the object on a [B, C, h, w] feature map; '{self.name}' gives "
                              f"{tuple(feature_map.shape)} (a transformer's tokens): use a convolutional backbone")
        with torch.no_grad():
            boxes = object_boxes(object_mask(feature_map.float()), margin=self.zoom["margin"])
        crops = crop_boxes(source, boxes, size)
        zoomed = (self.model(crops) + self.model(crops.flip(-1))) / 2
        return torch.cat([self.model.forward_head(feature_map), zoomed], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)
