"""Object zoom: SCDA boxes, RoIAlign crops and the zoomed vision encoder."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from fgmm.cache import FeatureCache
from fgmm.encoders import TimmVisionEncoder, create_encoder
from fgmm.encoders.zoom import crop_boxes, downscale, object_boxes, object_mask
from fgmm.errors import ConfigError


def _mask(cells: list[tuple[int, int]], size: int = 8) -> torch.Tensor:
    mask = torch.zeros(1, 1, size, size)
    for row, col in cells:
        mask[0, 0, row, col] = 1.0
    return mask


def test_object_mask_keeps_the_peak_component():
    feature_map = torch.zeros(1, 4, 6, 6)
    feature_map[0, :, 1:3, 1:3] = 5.0  # the object, with the peak
    feature_map[0, 0, 1, 1] = 9.0
    feature_map[0, :, 5, 5] = 4.0  # a separate bright spot
    mask = object_mask(feature_map)[0, 0]
    expected = torch.zeros(6, 6)
    expected[1:3, 1:3] = 1.0
    assert torch.equal(mask, expected)


def test_object_boxes_square_margin_and_inside_the_image():
    # cells rows 2-3, columns 1-4 of 8: x 1/8..5/8, y 2/8..4/8 -> a 0.5 square around (3/8, 3/8), + 10 % each side
    box = object_boxes(_mask([(r, c) for r in (2, 3) for c in range(1, 5)]), margin=0.1)[0]
    assert torch.allclose(box, torch.tensor([0.075, 0.075, 0.675, 0.675]), atol=1e-6)
    # at the corner the box is shifted inside, not cut
    corner = object_boxes(_mask([(0, 0), (0, 1)]), margin=0.5)[0]
    assert torch.allclose(corner, torch.tensor([0.0, 0.0, 0.5, 0.5]))
    # larger than the image: the whole image; an empty mask too
    assert torch.allclose(object_boxes(_mask([(0, 0), (7, 7)]), margin=0.2)[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))
    assert torch.allclose(object_boxes(torch.zeros(1, 1, 8, 8))[0], torch.tensor([0.0, 0.0, 1.0, 1.0]))


def test_crop_boxes_reads_the_box():
    images = torch.zeros(2, 3, 8, 8)
    images[:, :, :, 4:] = 1.0  # right half white
    boxes = torch.tensor([[0.5, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]])
    crops = crop_boxes(images, boxes, (2, 2))
    assert crops.shape == (2, 3, 2, 2)
    assert torch.allclose(crops[0], torch.ones(3, 2, 2)) and torch.allclose(crops[1], torch.zeros(3, 2, 2))
    whole = crop_boxes(images, torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), (8, 8))
    assert torch.allclose(whole, images, atol=1e-6)


def test_zoom_encoder_shapes_halves_and_fingerprint():
    torch.manual_seed(0)
    zoomed = TimmVisionEncoder("test_efficientnet", pretrained=False, image_size=32, zoom=True).eval()
    plain = TimmVisionEncoder("test_efficientnet", pretrained=False, image_size=32).eval()
    plain.model.load_state_dict(zoomed.model.state_dict())
    assert zoomed.dim == 2 * plain.dim
    image = Image.fromarray((torch.rand(40, 56, 3) * 255).byte().numpy())
    source = zoomed.transform()(image)
    assert source.shape == (3, 64, 64)  # zoom_source 2 x the 32-pixel input
    features = zoomed.encode(source[None])
    assert features.shape == (1, 2 * plain.dim)
    # the first half is the whole image, seen at the input size
    assert torch.allclose(features[:, :plain.dim], plain.encode(downscale(source[None], (32, 32))), atol=1e-5)
    assert zoomed.fingerprint() != plain.fingerprint()
    assert zoomed.preprocessing()["zoom"] == {"margin": 0.1, "source": 2.0}
    assert create_encoder("vision", "test_efficientnet", pretrained=False, image_size=32, zoom=True,
                          zoom_margin=0.2).fingerprint() != zoomed.fingerprint()


def test_zoom_encoder_trains_end_to_end_and_caches(tmp_path):
    encoder = TimmVisionEncoder("test_efficientnet", pretrained=False, frozen=False, image_size=32, zoom=True)
    encoder.encode(torch.randn(2, 3, 64, 64)).sum().backward()
    assert encoder.model.conv_stem.weight.grad.abs().sum() > 0
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"bird{i}.png")
        Image.fromarray((torch.rand(48, 48, 3) * 255).byte().numpy()).save(paths[-1])
    frozen = TimmVisionEncoder("test_efficientnet", pretrained=False, image_size=32, zoom=True)
    result = FeatureCache(tmp_path / "cache").encode_images(frozen, paths, progress=False, num_workers=0)
    assert result.features.shape == (3, frozen.dim)


def test_zoom_options_are_checked():
    with pytest.raises(ConfigError, match="zoom_source >= 1"):
        TimmVisionEncoder("test_efficientnet", pretrained=False, zoom=True, zoom_source=0.5)
    vit = TimmVisionEncoder("test_vit", pretrained=False, zoom=True)
    with pytest.raises(ConfigError, match="convolutional backbone"):
        vit.encode(torch.randn(1, 3, 2 * vit.input_size[0], 2 * vit.input_size[1]))


def test_a_zoom_model_fits_saves_and_predicts_from_image_files(tiny_procedural, tmp_path):
    import fgmm

    model = fgmm.create_model("image", dataset=tiny_procedural, vision="test_efficientnet", pretrained=False,
                              image_size=32, zoom=True)
    cache = FeatureCache(tmp_path / "cache")
    model.fit(tiny_procedural.part("train"), cache=cache)
    model.save_pretrained(tmp_path / "model")
    loaded = fgmm.FGModel.from_pretrained(tmp_path / "model")
    assert loaded.config.modalities["image"].encoder_options == {"image_size": 32, "zoom": True, "pretrained": False}
    image = tiny_procedural.part("test")[0].image
    first, again = model.predict(images=[image], k=2), loaded.predict(images=[image], k=2)
    assert [name for name, _ in first[0]] == [name for name, _ in again[0]] and len(first[0]) == 2
