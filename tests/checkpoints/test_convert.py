"""Converters: checkpoints in each foreign format, written with that format's real key names and shapes, load into
segzoo and give the same logits as the segzoo weights they were made from (or as the reference, for timm)."""

import pytest
import timm
import torch

import segzoo
from segzoo import ConversionError
from segzoo.checkpoints import CONVERTERS, detect_format
from segzoo.checkpoints._convert import adapt_to_model, convert_transformers_segformer, unwrap_checkpoint

from support.checkpoint_formats import randomized, to_mmseg, to_segmenter_official


def same_logits(a, b, size=(48, 64)):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        return (a(x) - b(x)).abs().max().item()


@pytest.mark.parametrize("name", ["segmenter-test-mask", "segmenter-test-linear", "setr-test-naive", "setr-test-pup"])
def test_mmseg_checkpoint(name):
    source = randomized(name)
    checkpoint = {"meta": {"mmseg_version": "1.2.2"}, "state_dict": to_mmseg(source.state_dict())}
    sd = unwrap_checkpoint(checkpoint)
    assert detect_format(sd) == "mmseg"
    target = segzoo.create_model(name, num_classes=5).eval()
    target.load_state_dict(adapt_to_model(CONVERTERS["mmseg"](sd), target), strict=True)
    assert same_logits(source, target) < 1e-5


def test_mmseg_setr_mla_drops_unused_class_token():
    source = randomized("setr-test-mla")
    sd = to_mmseg(source.state_dict())
    dim = sd["backbone.pos_embed"].shape[-1]
    # mmseg's ViT always stores a class token and its position even when with_cls_token=False
    sd["backbone.cls_token"] = torch.randn(1, 1, dim)
    sd["backbone.pos_embed"] = torch.cat([torch.randn(1, 1, dim), sd["backbone.pos_embed"]], dim=1)
    target = segzoo.create_model("setr-test-mla", num_classes=5).eval()
    target.load_state_dict(adapt_to_model(CONVERTERS["mmseg"](sd), target), strict=True)
    assert same_logits(source, target) < 1e-5


@pytest.mark.parametrize("name", ["segmenter-test-mask", "segmenter-test-linear"])
def test_segmenter_official_checkpoint(name):
    source = randomized(name)
    checkpoint = {"model": to_segmenter_official(source.state_dict()), "epoch": 3, "n_cls": 5}
    sd = unwrap_checkpoint(checkpoint)
    assert detect_format(sd) == "segmenter-official"
    target = segzoo.create_model(name, num_classes=5).eval()
    target.load_state_dict(CONVERTERS["segmenter-official"](sd), strict=True)
    assert same_logits(source, target) < 1e-5


def test_segformer_official_checkpoints():
    source = randomized("segformer-test")
    sd = dict(source.state_dict())
    sd["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.bias"] = torch.randn(5, 16, 1, 1), torch.randn(5)
    assert detect_format(sd) == "segformer-official"
    target = segzoo.create_model("segformer-test", num_classes=5).eval()
    target.load_state_dict(CONVERTERS["segformer-official"](sd), strict=True)
    assert same_logits(source, target) < 1e-6
    # ImageNet mit_bX.pth: no prefix, an ImageNet head
    mit = {k[len("backbone.") :]: v for k, v in sd.items() if k.startswith("backbone.")}
    mit["head.weight"], mit["head.bias"] = torch.randn(1000, 32), torch.randn(1000)
    assert detect_format(mit) == "segformer-official"
    encoder = CONVERTERS["segformer-official"](mit)
    assert set(encoder) == {k for k in source.state_dict() if k.startswith("backbone.")}


def test_timm_vit_weights_initialise_the_encoder():
    reference = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=1000).eval()
    sd = reference.state_dict()
    assert detect_format(sd) == "timm"
    model = segzoo.create_model("segmenter-t16-mask", num_classes=5, img_size=224).eval()
    missing, unexpected = model.load_state_dict(adapt_to_model(CONVERTERS["timm"](sd), model), strict=False)
    assert not unexpected and missing and all(k.startswith("decode_head.") for k in missing)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, indices=[11], norm=True, intermediates_only=True)[0]
        assert (model.backbone(x)[0] - expected).abs().max() < 1e-4
    # at another crop the 14×14 position grid is resampled to the model's
    bigger = segzoo.create_model("segmenter-t16-mask", num_classes=5, img_size=320)
    bigger.load_state_dict(adapt_to_model(CONVERTERS["timm"](sd), bigger), strict=False)
    assert bigger.backbone.pos_embed.shape == (1, 1 + 20 * 20, 192)
    assert torch.equal(bigger.backbone.cls_token, reference.cls_token)


def test_leftover_or_unknown_keys_fail_loudly():
    sd = to_mmseg(randomized("segmenter-test-linear").state_dict())
    sd["backbone.unknown_thing.weight"] = torch.zeros(1)
    with pytest.raises(ConversionError, match="unknown_thing"):
        CONVERTERS["mmseg"](sd)
    with pytest.raises(ConversionError, match="no known format"):
        detect_format({"foo.bar": torch.zeros(1)})
    with pytest.raises(ConversionError, match="no mapping"):
        convert_transformers_segformer({"segformer.encoder.mystery.weight": torch.zeros(1)})
