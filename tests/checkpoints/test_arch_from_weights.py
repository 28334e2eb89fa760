"""segzoo.load(path) for a bare weights file: the architecture, classes and crop inferred from the key names and
shapes of every supported format (checked on meta-device state dicts with the real shapes), mmseg's config used to
confirm or decide, clear errors, and end-to-end loads that equal loading by name."""

import dataclasses
import logging

import pytest
import torch
import transformers

import segzoo
import segzoo.models._registry as registry
from segzoo import AmbiguousArchitectureError, ArchitectureNotFoundError, ConversionError
from segzoo.checkpoints import CONVERTERS, detect_format
from segzoo.checkpoints._arch_from_weights import infer_architecture

from support.checkpoint_formats import randomized, to_mmseg, to_mmseg_mit, to_segmenter_official

# the architectures with their own encoder; those on a timm ViT are saved with their config.json (encoder=...); the
# official SETR rows are recognised from the official layout only (tests/checkpoints/test_official_setr.py)
REAL_ARCHS = [
    name
    for name in segzoo.list_models()
    if registry.ARCHS[name].encoder != "timm_vit" and registry.ARCHS[name].checkpoint_format is None
]


def meta_state(name, num_classes=150, **kwargs):
    return segzoo.create_model(name, num_classes=num_classes, device="meta", **kwargs).state_dict()


def infer_file(state, meta=None):
    """What segzoo.load does with a file's (unwrapped) state dict: detect, convert, infer."""
    return infer_architecture(CONVERTERS[detect_format(state)](state), meta)


def mmseg_vit(sd):
    """mmseg names; mmseg's ViT always stores a class token and its position, also for SETR-MLA."""
    out = to_mmseg(sd)
    if "backbone.cls_token" not in out:
        dim = out["backbone.pos_embed"].shape[-1]
        out["backbone.cls_token"] = torch.empty(1, 1, dim, device="meta")
        out["backbone.pos_embed"] = torch.empty(1, out["backbone.pos_embed"].shape[1] + 1, dim, device="meta")
    return out


def nvlabs_segformer(sd):
    """The official SegFormer segmentation checkpoint: our names plus the unused ``conv_seg`` of mmseg's base head."""
    classes = sd["decode_head.linear_pred.weight"].shape[0]
    return sd | {
        "decode_head.conv_seg.weight": torch.empty(classes, 128, 1, 1, device="meta"),
        "decode_head.conv_seg.bias": torch.empty(classes, device="meta"),
    }


def transformers_segformer(size, num_labels):
    """The keys and shapes save_pretrained writes for the real transformers model (built on the meta device;
    transformers 5 renames its weights in memory and reverts the names when saving, as the Hub files have them)."""
    from transformers.core_model_loading import revert_weight_conversion

    row = registry.ARCHS[f"segformer-{size}"]
    config = transformers.SegformerConfig(
        hidden_sizes=list(row.encoder_args["embed_dims"]),
        depths=list(row.encoder_args["depths"]),
        decoder_hidden_size=row.decoder_args["channels"],
        num_labels=num_labels,
    )
    with torch.device("meta"):
        model = transformers.SegformerForSemanticSegmentation(config)
    return revert_weight_conversion(model, model.state_dict())


# ---------------------------------------------------------------------------------------------------------------
# Recognition, format by format


@pytest.mark.parametrize("name", REAL_ARCHS)
def test_every_architecture_is_recognised_from_its_segzoo_keys(name):
    match = infer_file(meta_state(name, num_classes=19))
    assert (match.arch, match.num_classes) == (name, 19)


@pytest.mark.parametrize("name", [n for n in REAL_ARCHS if n.startswith(("setr-naive", "setr-pup", "setr-mla"))])
def test_setr_in_mmseg_names_with_aux_heads_and_mla_neck(name):
    sd = mmseg_vit(meta_state(name, num_classes=150))
    assert any(k.startswith("auxiliary_head.") for k in sd)
    match = infer_file(sd)
    assert (match.arch, match.num_classes, match.img_size) == (name, 150, 512)


def test_setr_without_aux_heads_and_without_the_mmseg_patch_bias_is_recognised():
    sd = mmseg_vit(meta_state("setr-pup-l16", num_classes=19, aux_heads=False, img_size=768))
    del sd["backbone.patch_embed.projection.bias"]  # mmseg >= 1.1
    match = infer_file(sd)
    assert (match.arch, match.num_classes, match.img_size) == ("setr-pup-l16", 19, 768)


SEGMENTERS = [n for n in REAL_ARCHS if n.startswith("segmenter-")]


@pytest.mark.parametrize("name", [n for n in SEGMENTERS if "deit" not in n])  # mmseg has no distillation token
def test_segmenter_every_size_and_patch_in_mmseg_names(name):
    match = infer_file(mmseg_vit(meta_state(name, num_classes=150)))
    assert (match.arch, match.num_classes, match.img_size) == (name, 150, 512)


@pytest.mark.parametrize("name", SEGMENTERS)
def test_segmenter_every_size_and_patch_in_official_names(name):
    sd = to_segmenter_official(meta_state(name, num_classes=60, img_size=640))
    assert detect_format(sd) == "segmenter-official"
    match = infer_file(sd)
    assert (match.arch, match.num_classes, match.img_size) == (name, 60, 640)


@pytest.mark.parametrize("size", list(registry.MIT_SIZES))
def test_segformer_in_transformers_names(size):
    match = infer_file(transformers_segformer(size, num_labels=19))
    assert (match.arch, match.num_classes, match.img_size) == (f"segformer-{size}", 19, None)


@pytest.mark.parametrize("size", list(registry.MIT_SIZES))
def test_segformer_in_nvlabs_names(size):
    sd = nvlabs_segformer(meta_state(f"segformer-{size}"))
    assert detect_format(sd) == "segformer-official"
    assert infer_file(sd).arch == f"segformer-{size}"


@pytest.mark.parametrize("size", list(registry.MIT_SIZES))
def test_segformer_in_mmseg_names_is_the_mmseg_head_architecture(size):
    sd = to_mmseg_mit(meta_state(f"segformer-{size}-mmseg", num_classes=171))
    assert any(k.startswith("decode_head.fusion_conv.") for k in sd) and "backbone.layers.0.1.0.norm1.weight" in sd
    match = infer_file(sd)
    assert (match.arch, match.num_classes) == (f"segformer-{size}-mmseg", 171)


# ---------------------------------------------------------------------------------------------------------------
# mmseg's config and ambiguity

SETR_NAIVE_CONFIG = """
norm_cfg = dict(type='SyncBN', requires_grad=True)
crop_size = (
    512,
    512,
)
model = dict(
    type='EncoderDecoder',
    backbone=dict(
        type='VisionTransformer', img_size=(512, 512), patch_size=16, embed_dims=1024, num_layers=24,
        num_heads=16, out_indices=(9, 14, 19, 23), drop_rate=0.0, with_cls_token=True,
        norm_cfg=dict(type='LN', eps=1e-06), interpolate_mode='bilinear'),
    decode_head=dict(
        type='SETRUPHead', in_channels=1024, channels=256, in_index=3, num_classes=150, dropout_ratio=0,
        norm_cfg=dict(type='SyncBN', requires_grad=True), num_convs={num_convs}, up_scale=4, kernel_size=1,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='Resize', scale=(2048, 512), keep_ratio=True)]
"""


def test_mmseg_config_confirms_the_match():
    sd = mmseg_vit(meta_state("setr-naive-l16"))
    match = infer_file(sd, {"cfg": SETR_NAIVE_CONFIG.format(num_convs=1)})
    assert match.arch == "setr-naive-l16" and match.confirmed_by_config
    assert not infer_file(sd).confirmed_by_config


def test_mmseg_config_that_contradicts_the_weights_is_an_error_naming_the_setting():
    sd = mmseg_vit(meta_state("setr-naive-l16"))
    with pytest.raises(ArchitectureNotFoundError, match=r"num_convs=2 where setr-naive-l16 has num_convs=1"):
        infer_file(sd, {"config": SETR_NAIVE_CONFIG.format(num_convs=2)})  # mmseg 0.x keeps it under "config"


def test_unparsable_mmseg_config_is_ignored():
    sd = mmseg_vit(meta_state("setr-naive-l16"))
    match = infer_file(sd, {"cfg": "model = dict(backbone=dict(num_heads=16)"})
    assert match.arch == "setr-naive-l16" and not match.confirmed_by_config


@pytest.fixture
def twin_architecture(monkeypatch):
    """A registry row whose weights look exactly like segmenter-test-linear's but that reads another block."""
    row = registry.ARCHS["segmenter-test-linear"]
    twin = dataclasses.replace(
        row, name="segmenter-test-linear-twin", encoder_args=dict(row.encoder_args, out_indices=(0,))
    )
    monkeypatch.setitem(registry.ARCHS, twin.name, twin)
    return twin.name


def test_two_fitting_architectures_are_named_with_how_to_choose(twin_architecture):
    with pytest.raises(AmbiguousArchitectureError) as err:
        infer_file(mmseg_vit(meta_state("segmenter-test-linear")))
    assert set(err.value.candidates) == {"segmenter-test-linear", twin_architecture}
    assert "segmenter-test-linear, segmenter-test-linear-twin" in str(err.value)
    assert "segzoo.load('segmenter-test-linear', checkpoint=" in str(err.value)


@pytest.mark.parametrize(("out_indices", "expected"), [("-1", "segmenter-test-linear"), ("(0, )", "twin")])
def test_mmseg_config_decides_between_lookalike_architectures(twin_architecture, out_indices, expected):
    config = f"model = dict(backbone=dict(type='VisionTransformer', out_indices={out_indices}, final_norm=True))"
    match = infer_file(mmseg_vit(meta_state("segmenter-test-linear")), {"cfg": config})
    assert match.arch == (twin_architecture if expected == "twin" else expected) and match.confirmed_by_config


# ---------------------------------------------------------------------------------------------------------------
# Nothing fits


def test_encoder_only_file_says_what_it_found_and_what_to_do():
    # an AugReg ViT-S/16 as timm writes it
    state = meta_state("segmenter-s16-linear")
    sd = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    assert detect_format(sd) == "timm"
    with pytest.raises(ArchitectureNotFoundError, match=r"a ViT-S/16 encoder \(.*\) with no decode head") as err:
        infer_file(sd)
    assert "segmenter-s16-linear, segmenter-s16-mask" in str(err.value) and "create_model" in str(err.value)


def test_unknown_encoder_widths_are_named():
    sd = meta_state("segformer-b0", encoder_args={"embed_dims": (48, 96, 240, 384), "num_heads": (1, 2, 4, 8)})
    with pytest.raises(ArchitectureNotFoundError, match=r"MiT encoder \(widths 48,96,240,384.*no segzoo architecture"):
        infer_file(sd)


def test_unknown_head_width_names_the_closest_architecture():
    sd = meta_state("segformer-b0", decoder_args={"channels": 128})
    with pytest.raises(ArchitectureNotFoundError, match=r"MiT-B0 encoder.*the closest, segformer-b0(-mmseg)?, differs"):
        infer_file(sd)


def test_no_encoder_at_all_is_an_error():
    with pytest.raises(ArchitectureNotFoundError, match="no MiT or ViT encoder"):
        infer_architecture({"decode_head.conv_seg.weight": torch.empty(3, 8, 1, 1)})


# ---------------------------------------------------------------------------------------------------------------
# segzoo.load(path), end to end


def same_as_by_name(path, arch, size=(40, 72), **named_args):
    """segzoo.load(path) and segzoo.load(arch, checkpoint=path) give the same model and logits (at a size that
    needs padding and position resampling)."""
    inferred, named = segzoo.load(str(path)), segzoo.load(arch, checkpoint=path, **named_args)
    assert inferred.arch_name == arch and not inferred.training
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert torch.equal(inferred(x), named(x))
    return inferred


def test_load_mmseg_file_with_meta_infers_the_architecture_and_matches_loading_by_name(tmp_path, caplog):
    source = randomized("setr-test-pup", num_classes=7, img_size=96)
    sd = mmseg_vit(to_mmseg(source.state_dict()))
    del sd["backbone.patch_embed.projection.bias"]  # written by mmseg >= 1.1
    classes = [f"class{i}" for i in range(7)]
    meta = {
        "cfg": "crop_size = (96, 96)\nmodel = dict(decode_head=dict(type='SETRUPHead', num_convs=4))",
        "dataset_meta": {"classes": classes},
    }
    path = tmp_path / "iter_160000.pth"
    torch.save({"state_dict": sd, "meta": meta}, path)
    with caplog.at_level(logging.INFO, logger="segzoo"):
        model = same_as_by_name(path, "setr-test-pup", img_size=96)
    assert "inferred architecture setr-test-pup" in caplog.text and "confirmed by its mmseg config" in caplog.text
    assert model.num_classes == 7 and model.build_args["img_size"] == 96
    assert torch.equal(model.backbone.pos_embed, source.backbone.pos_embed)  # stored grid kept, not resampled
    assert model.pretrained_cfg["class_names"] == classes
    assert len(model.auxiliary_head) == 3  # mmseg's aux heads loaded too


def test_load_official_segmenter_file_keeps_its_numerics(tmp_path):
    source = randomized("segmenter-test-mask", num_classes=4)
    path = tmp_path / "checkpoint.pth"
    torch.save({"model": to_segmenter_official(source.state_dict()), "epoch": 63}, path)
    model = same_as_by_name(path, "segmenter-test-mask")
    assert model.backbone.pos_embed_interp == "bilinear" and model.backbone.blocks[0].norm1.eps == 1e-5


def test_load_transformers_safetensors_without_config(tmp_path):
    reference = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(num_labels=5)).eval()
    reference.save_pretrained(tmp_path / "folder")
    path = tmp_path / "segformer-b0-finetuned.safetensors"  # the weights alone, without config.json
    (tmp_path / "folder" / "model.safetensors").rename(path)
    model = same_as_by_name(path, "segformer-b0")
    assert model.num_classes == 5


def test_load_bare_file_with_new_number_of_classes(tmp_path):
    path = tmp_path / "weights.bin"
    torch.save(randomized("segmenter-test-linear", num_classes=3).state_dict(), path)
    model = segzoo.load(str(path), num_classes=9)
    assert model.arch_name == "segmenter-test-linear" and model.num_classes == 9


def test_load_ambiguous_file_names_the_candidates_and_the_file(tmp_path, twin_architecture):
    path = tmp_path / "weights.pth"
    torch.save(randomized("segmenter-test-linear").state_dict(), path)
    choose = rf"Choose one: segzoo.load\('segmenter-test-linear', checkpoint='{path}'\)"
    with pytest.raises(AmbiguousArchitectureError, match=rf"{path}: .* {choose}"):
        segzoo.load(str(path))


def test_load_a_training_checkpoint_with_its_classes_and_test_pipeline(tmp_path):
    """A .ckpt train.py wrote loads by path: architecture and classes from the module's hyperparameters, mean/std and
    test scale from the DataModule's, evaluation mode from the module's."""
    reference = randomized("segformer-test", num_classes=3).eval()
    path = tmp_path / "last.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in reference.state_dict().items()},
            "hyper_parameters": {
                "model": "segformer-test",
                "num_classes": 3,
                "model_args": {"pretrained_encoder": True},
                "eval_mode": "slide",
                "eval_crop": 64,
                "eval_stride": 48,
                "class_names": ["a", "b", "c"],
            },
            "datamodule_hyper_parameters": {"mean": [127.5] * 3, "std": [127.5] * 3, "eval_scale": [256, 64]},
        },
        path,
    )
    model = segzoo.load(str(path))
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))
    protocol = model.eval_protocol
    assert (protocol.mean, protocol.test_scale, protocol.mode, protocol.crop) == (
        (127.5,) * 3,
        (256, 64),
        "slide",
        (64, 64),
    )
    assert model.pretrained_cfg["class_names"] == ["a", "b", "c"] and model.predict(torch.rand(3, 50, 70)).shape == (
        50,
        70,
    )


def test_training_checkpoint_of_a_module_model_points_to_load_from_checkpoint(tmp_path):
    state = {f"model.{k}": v for k, v in randomized("segformer-test").state_dict().items()}
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"model": None}}, path)
    with pytest.raises(ValueError, match="load_from_checkpoint"):
        segzoo.load(str(path))


def test_load_unknown_keys_is_a_conversion_error(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"whatever.weight": torch.zeros(2)}, path)
    with pytest.raises(ConversionError, match="matches no known format"):
        segzoo.load(str(path))
