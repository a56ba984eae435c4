r"""Object zoom: find the bird with the frozen backbone's own activations, then look again, closer.

Fine-grained detail (a wing bar, an eye ring) is a few pixels wide once a whole photo is resized to the
backbone's input side :math:`S`. The zoom view re-encodes the object at full input resolution, found
without any box or part annotation:

1. the image at source resolution :math:`sS` (:math:`s` = the encoder's ``zoom_source``) is resized to :math:`S` and
   encoded, :math:`F = f_\theta(\downarrow x) \in \mathbb{R}^{C \times h \times w}`,
   :math:`\mathbf g = \operatorname{GAP}(F)`;
2. SCDA's object mask :math:`M` of :math:`F` (:func:`object_mask`: positions whose channel-summed
   activation exceeds its mean, in the peak's connected component; Wei et al., IEEE TIP 2017) gives the
   tight box of :math:`M`, grown to the image's proportions and by ``margin`` on each side, kept inside
   the image (:func:`object_boxes`);
3. that box is cut from the source image and resized to :math:`S` (:func:`crop_boxes`, RoIAlign), and
   :math:`\mathbf z = \tfrac12\big(\operatorname{GAP} f_\theta(x_B)
   + \operatorname{GAP} f_\theta(\operatorname{flip} x_B)\big)`.

``TimmVisionEncoder(zoom=True)`` returns :math:`[\mathbf g; \mathbf z] \in \mathbb{R}^{2C}` (three
backbone passes per image instead of one); what it gains on CUB is measured in ``benchmarks/README.md``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def object_mask(feature_map: torch.Tensor) -> torch.Tensor:
    r"""SCDA's object mask (Wei et al., *Selective Convolutional Descriptor Aggregation for Fine-Grained
    Image Retrieval*, IEEE TIP 2017): positions where the channel sum :math:`A = \sum_c F_c` exceeds its
    mean, restricted to the 8-connected component holding the peak of :math:`A` (the paper keeps the
    largest component; the peak's is found by batched dilation). Returns ``[B, 1, h, w]`` floats in {0, 1}."""
    activation = feature_map.sum(dim=1, keepdim=True)
    above = activation > activation.mean(dim=(2, 3), keepdim=True)
    flat = activation.flatten(1)
    component = torch.zeros_like(flat).scatter_(1, flat.argmax(dim=1, keepdim=True), 1.0).view_as(activation)
    for _ in range(activation.shape[2] * activation.shape[3]):
        grown = F.max_pool2d(component, 3, stride=1, padding=1) * above
        if torch.equal(grown, component):
            break
        component = grown
    return component


def object_boxes(mask: torch.Tensor, margin: float = 0.1) -> torch.Tensor:
    r"""Boxes ``[B, 4]`` (x0, y0, x1, y1 as fractions of the image's width and height) around the cells of
    ``mask`` ``[B, 1, h, w]``, grown to the image's proportions (equal fractions of width and height, so
    the crop resizes to the input without distortion), then by ``margin`` of their size on each side, and
    shifted (shrunk only when larger than the image) to lie inside it. An empty mask gives the image."""
    rows = mask[:, 0].amax(dim=2) > 0  # [B, h]
    cols = mask[:, 0].amax(dim=1) > 0  # [B, w]
    h, w = rows.shape[1], cols.shape[1]

    def extent(hit: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(n, device=hit.device).expand_as(hit)
        first = torch.where(hit, index, n).amin(dim=1)
        last = torch.where(hit, index, -1).amax(dim=1) + 1
        empty = last <= first
        return torch.where(empty, 0, first).float() / n, torch.where(empty, n, last).float() / n

    x0, x1 = extent(cols, w)
    y0, y1 = extent(rows, h)
    width, height = x1 - x0, y1 - y0
    width = height = torch.maximum(width, height)
    scale = (1 + 2 * margin) / torch.clamp(torch.maximum(width, height) * (1 + 2 * margin), min=1.0)
    width, height = width * scale, height * scale
    cx = ((x0 + x1) / 2).clamp(width / 2, 1 - width / 2)
    cy = ((y0 + y1) / 2).clamp(height / 2, 1 - height / 2)
    return torch.stack([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2], dim=1)


def crop_boxes(images: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, 3, *size]`` crops of ``images`` ``[B, 3, H, W]`` at ``boxes`` ``[B, 4]`` (fractions, as from
    :func:`object_boxes`), resampled with RoIAlign: bilinear, with ``ceil(box / output)`` samples per
    output pixel and axis, so that a downscaled crop is averaged rather than aliased."""
    height, width = images.shape[-2:]
    pixels = boxes.to(images.dtype) * torch.tensor([width, height, width, height], dtype=images.dtype,
                                                   device=images.device)
    indexed = torch.cat([torch.arange(len(boxes), dtype=images.dtype, device=images.device)[:, None], pixels], 1)
    return roi_align(images, indexed, output_size=size, spatial_scale=1.0, sampling_ratio=0, aligned=True)


def downscale(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images`` resized to ``size`` (bicubic with antialiasing, as a PIL resize would)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)
