r"""Multi-view image descriptors from a frozen timm backbone: flipped views and pooling variants.

For an image :math:`x`, views :math:`t_v` (identity, horizontal flip) and poolings :math:`\pi_p`
(average, GeM, max) of the backbone's last feature map :math:`F(\cdot) \in \mathbb{R}^{C \times h \times w}`:

.. math::
    \mathbf{d}_{v,p}(x) = \pi_p\big(F(t_v(x))\big) \in \mathbb{R}^{C}, \qquad
    \pi_{\mathrm{gem}}(F) = \Big(\frac{1}{hw}\sum_{i,j} F_{:,ij}^{\,q}\Big)^{1/q}

(GeM: Radenović et al., *Fine-tuning CNN image retrieval with no human annotation*, TPAMI 2018;
:math:`q = 1` is average pooling, :math:`q \to \infty` max pooling), or the average over SCDA's
unsupervised object mask (``"scda"``: the positions whose summed activation exceeds the mean, Wei et al.
2017), which needs no box or part annotation. :class:`MultiViewEncoder`
returns either the mean over views of the concatenated poolings (``combine="mean"``, the descriptor
a search uses) or every :math:`\mathbf{d}_{v,p}` side by side (``combine="concat"``, what the
benchmark caches once so that variants are computed from the cache without encoding again).

A view costs one backbone forward per image (EfficientNet-Lite2 at 260 px: ~115 ms on 2 CPU cores);
poolings are free. The encoder is an :class:`~fgmm.encoders.base.Encoder` with its own fingerprint
(backbone, preprocessing, views, poolings), so :meth:`fgmm.cache.FeatureCache.encode_images` caches
its rows in their own namespace.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from fgmm.encoders.base import Encoder
from fgmm.encoders.zoom import object_mask
from fgmm.errors import ConfigError
from fgmm.registry import Registry

VIEWS: Registry[torch.Tensor] = Registry("image view")
"""``name -> fn(images [B, 3, H, W]) -> [B, 3, H, W]``: a test-time view of preprocessed images."""

POOLINGS: Registry[torch.Tensor] = Registry("pooling")
"""``name -> fn(feature_map [B, C, h, w], gem_p) -> [B, C]``."""


@VIEWS.register("identity")
def identity_view(images: torch.Tensor) -> torch.Tensor:
    return images


@VIEWS.register("hflip")
def hflip_view(images: torch.Tensor) -> torch.Tensor:
    """Mirror left-right (birds face either way; a flip is label-preserving)."""
    return images.flip(-1)


@POOLINGS.register("avg")
def avg_pool(feature_map: torch.Tensor, gem_p: float = 3.0) -> torch.Tensor:
    return feature_map.mean(dim=(2, 3))


@POOLINGS.register("gem")
def gem_pool(feature_map: torch.Tensor, gem_p: float = 3.0) -> torch.Tensor:
    """Generalised mean pooling with exponent ``gem_p`` (activations clamped at a small positive floor)."""
    return feature_map.clamp(min=1e-6).pow(gem_p).mean(dim=(2, 3)).pow(1.0 / gem_p)


@POOLINGS.register("max")
def max_pool(feature_map: torch.Tensor, gem_p: float = 3.0) -> torch.Tensor:
    return feature_map.amax(dim=(2, 3))


@POOLINGS.register("scda")
def scda_pool(feature_map: torch.Tensor, gem_p: float = 3.0) -> torch.Tensor:
    """Average of the feature map over SCDA's object mask (:func:`object_mask`): background left out."""
    mask = object_mask(feature_map)
    return (feature_map * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)).clamp(min=1.0)


COMBINES = ("mean", "concat")


def concat_part(features: torch.Tensor, views: Sequence[str], poolings: Sequence[str], view: str,
                pooling: str) -> torch.Tensor:
    """The ``[N, C]`` block of ``view`` and ``pooling`` in ``[N, V * P * C]`` features laid out view-major
    (the ``combine="concat"`` output of a :class:`MultiViewEncoder` with these ``views`` and ``poolings``)."""
    if view not in views or pooling not in poolings:
        raise ConfigError(f"no {view}/{pooling} block in features of views {list(views)} and poolings {list(poolings)}")
    width = features.shape[1] // (len(views) * len(poolings))
    block = list(views).index(view) * len(poolings) + list(poolings).index(pooling)
    return features[:, block * width:(block + 1) * width]


class MultiViewEncoder(Encoder):
    """Descriptors of several test-time views and poolings of one frozen timm backbone.

    Args:
        base: a vision encoder exposing its timm model as ``base.model`` (``forward_features``) and
            ``transform()`` (e.g. :class:`fgmm.encoders.TimmVisionEncoder`); its preprocessing is used.
        views: names in :data:`VIEWS`.
        poolings: names in :data:`POOLINGS`.
        combine: ``"mean"``: ``[B, len(poolings) * C]``, the poolings concatenated and averaged over
            views; ``"concat"``: ``[B, len(views) * len(poolings) * C]``, view-major blocks
            (:meth:`part` slices one block out).
        gem_p: the GeM exponent :math:`q`.

    Example::

        encoder = MultiViewEncoder(create_encoder("vision"), views=("identity", "hflip"))
        features = FeatureCache(root).encode_images(encoder, paths).features   # [N, 1280]
    """

    modality = "vision"

    def __init__(self, base: Encoder, views: Sequence[str] = ("identity", "hflip"), poolings: Sequence[str] = ("avg",),
                 combine: str = "mean", gem_p: float = 3.0):
        if not views or not poolings:
            raise ConfigError("a multi-view encoder needs at least one view and one pooling")
        if combine not in COMBINES:
            raise ConfigError(f"unknown combine '{combine}'; choose one of: {', '.join(COMBINES)}")
        if not hasattr(base, "model") or not hasattr(base.model, "forward_features"):
            raise ConfigError(f"encoder '{base.name}' exposes no timm model with forward_features()")
        if getattr(base, "zoom", None):
            raise ConfigError("test-time views take an encoder without zoom (the zoom view already averages the "
                              "object and its mirror image)")
        view_fns = [VIEWS.get(v) for v in views]
        pool_fns = [POOLINGS.get(p) for p in poolings]
        blocks = len(poolings) * (len(views) if combine == "concat" else 1)
        name = f"{base.name}[{'+'.join(views)}|{'+'.join(poolings)}|{combine}]"
        super().__init__(name=name, dim=base.dim * blocks, frozen=base.frozen)
        self.base = base
        self.view_fns: list[Callable[[torch.Tensor], torch.Tensor]] = view_fns
        self.pool_fns = pool_fns
        self.views, self.poolings, self.combine, self.gem_p = list(views), list(poolings), combine, float(gem_p)

    def preprocessing(self) -> dict[str, Any]:
        return {**self.base.preprocessing(), "views": self.views, "poolings": self.poolings,
                "combine": self.combine, "gem_p": self.gem_p}

    def transform(self, train: bool = False) -> Callable[[Any], torch.Tensor]:
        return self.base.transform(train)

    def part(self, features: torch.Tensor, view: str, pooling: str) -> torch.Tensor:
        """The ``[N, C]`` block of ``view`` and ``pooling`` in ``combine="concat"`` features."""
        if self.combine != "concat":
            raise ConfigError("part() needs combine='concat' features")
        return concat_part(features, self.views, self.poolings, view, pooling)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` preprocessed images -> ``[B, dim]`` descriptors (see ``combine``)."""
        model = self.base.model
        images = images.to(next(model.parameters()).device, non_blocking=True)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            per_view = []
            for view in self.view_fns:
                feature_map = model.forward_features(view(images))
                per_view.append(torch.cat([pool(feature_map, self.gem_p) for pool in self.pool_fns], dim=1))
        if self.combine == "concat":
            return torch.cat(per_view, dim=1)
        return torch.stack(per_view).mean(0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode(images)
