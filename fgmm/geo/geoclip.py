"""GeoCLIP's pretrained location encoder as a position encoding (optional extra ``fgmm[geo]``).

GeoCLIP (Vivanco Cepeda, Nayak, Shah, *GeoCLIP: Clip-Inspired Alignment between Locations and Images
for Effective Worldwide Geo-localization*, NeurIPS 2023) embeds a GPS position with random Fourier
features at three scales over the Equal Earth projection followed by MLPs, trained contrastively
against CLIP image embeddings of 4.7M geotagged photos. The ``geoclip`` wheel on PyPI (MIT) ships the
location encoder's weights (``geoclip/model/weights/location_encoder_weights.pth``, 38 MB), so this
works offline; its *image* encoder downloads CLIP ViT-L/14 from the Hugging Face hub and is not used.
"""

from __future__ import annotations

import torch
from torch import nn

from fgmm.errors import require

GEOCLIP_DIM = 512


class GeoClipPosition(nn.Module):
    """``forward(lat [B], lon [B]) -> [B, 512]`` GeoCLIP location embeddings (frozen, eval mode)."""

    def __init__(self):
        super().__init__()
        geoclip = require("geoclip", "geo")
        self.encoder = geoclip.LocationEncoder().eval()
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)

    def forward(self, lat: torch.Tensor, lon: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder(torch.stack((lat.float(), lon.float()), dim=1))
