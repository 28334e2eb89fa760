"""The ViT heads on any timm ViT (Segmenter and SETR heads on DINOv2, EVA-02, DeiT, AugReg), on tiny random
versions of the real timm classes built locally; the pretrained path goes through timm's own download from a local
imitation of the Hub."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save

import segzoo
from segzoo.models import KNOWN_TIMM_ENCODERS
from segzoo.models.encoders import TimmViTEncoder
from segzoo.training import param_groups

from support import REPO

# One tiny model per family: registers + patch 14 (DINOv2), RoPE (EVA-02), class + distillation token (DeiT),
# class token (AugReg); each built from the real timm entry point with a small width and depth.
FAMILIES = {
    "dinov2-reg": ("vit_small_patch14_reg4_dinov2.lvd142m", 56),
    "eva02": ("eva02_small_patch14_224.mim_in22k", 56),
    "deit-distilled": ("deit_base_distilled_patch16_224.fb_in1k", 64),
    "augreg": ("vit_base_patch16_224.augreg2_in21k_ft_in1k", 64),
}
HEADS = ("segmenter-linear", "segmenter-mask", "setr-naive", "setr-pup", "setr-mla", "linear-probe", "linear-probe-4")
TIMM_ARCHS = set(HEADS)
TINY_CONFIG = REPO / "configs" / "test" / "tiny.yaml"


def tiny(img_size: int) -> dict:
    return dict(embed_dim=32, depth=4, num_heads=2, img_size=img_size)


def build(arch: str, family: str, **kwargs) -> segzoo.SegmentationModel:
    name, size = FAMILIES[family]
    decoder_args = dict(channels=16) if arch in ("setr-naive", "setr-pup") else None
    return segzoo.create_model(
        arch, encoder=name, num_classes=5, encoder_args=tiny(size), decoder_args=decoder_args, **kwargs
    )


def reference_vit(family: str, model: segzoo.SegmentationModel) -> torch.nn.Module:
    """timm's own model of the same name and size, with our encoder's weights."""
    name, size = FAMILIES[family]
    reference = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True, **tiny(size)).eval()
    reference.load_state_dict(model.backbone.vit.state_dict())
    return reference


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_encoder_maps_equal_timms_own_features(family):
    """The last map (with the final norm) equals timm's forward_features patch tokens, prefix tokens dropped by hand;
    every map equals timm's forward_intermediates."""
    model = build("linear-probe-4", family).eval()  # the normalised tokens of the last four blocks
    reference = reference_vit(family, model)
    patch = model.pad_to_multiple
    x = torch.randn(2, 3, 3 * patch, 5 * patch)
    with torch.no_grad():
        ours = model.backbone(x)
        tokens = reference.forward_features(x)[:, reference.num_prefix_tokens :]
        expected_last = tokens.transpose(1, 2).reshape(2, 32, 3, 5)
        expected = reference.forward_intermediates(x, indices=[0, 1, 2, 3], norm=True, intermediates_only=True)
    assert model.backbone.out_indices == (0, 1, 2, 3)
    torch.testing.assert_close(ours[-1], expected_last, rtol=1e-5, atol=1e-5)
    for mine, theirs in zip(ours, expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("arch", HEADS)
def test_every_head_on_every_family_runs_forward_and_backward_at_odd_sizes(arch, family):
    model = build(arch, family)
    x = torch.randn(2, 3, 61, 83)  # no multiple of 14 or 16: padded to whole patches, logits brought back
    logits, aux = model.forward_with_aux(x)
    assert logits.shape == (2, 5, 61, 83) and all(a.shape == (2, 5, 61, 83) for a in aux)
    (logits.mean() + sum(a.mean() for a in aux)).backward()
    assert model.backbone.vit.blocks[0].attn.qkv.weight.grad is not None
    assert model.decode_head.state_dict() and all(p.grad is not None for p in model.decode_head.parameters())


def test_setr_reads_unnormalised_tokens_and_keeps_no_unused_norm():
    """SETR's heads have their own norms; a final norm the forward never uses would hold parameters without
    gradients, which DDP refuses: every parameter gets a gradient."""
    model = build("setr-pup", "augreg")
    logits, aux = model.forward_with_aux(torch.randn(1, 3, 64, 64))
    (logits.mean() + sum(a.mean() for a in aux)).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_setr_heads_read_the_papers_relative_depths_of_any_encoder():
    on = {
        arch: segzoo.create_model(arch, num_classes=3, device="meta").backbone.out_indices
        for arch in ("setr-naive", "setr-mla")
    }
    assert on == {"setr-naive": (4, 7, 9, 11), "setr-mla": (2, 5, 8, 11)}  # DINOv2-S/14: 12 blocks, as SETR T-Base
    large = segzoo.create_model("setr-mla", encoder="vit_large_patch14_dinov2.lvd142m", num_classes=3, device="meta")
    assert large.backbone.out_indices == (5, 11, 17, 23)  # 24 blocks: SETR-MLA's own layers 6, 12, 18, 24


def test_freezing_leaves_the_encoder_untouched_after_training_steps():
    torch.manual_seed(0)
    model = build("segmenter-mask", "dinov2-reg", freeze_encoder=True)
    encoder_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    groups = param_groups(model)
    assert all(not n.startswith("backbone.") for group in groups for n in group["names"])  # not in the optimizer
    optimizer = torch.optim.AdamW([{"params": g["params"]} for g in groups], lr=1e-2)
    model.train()
    assert not model.backbone.training and model.decode_head.training  # dropout / drop path off in the encoder
    for _ in range(2):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 56, 56)), torch.randint(0, 5, (2, 56, 56)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert all(torch.equal(v, encoder_before[k]) for k, v in model.backbone.state_dict().items())
    assert any(not torch.equal(v, head_before[k]) for k, v in model.decode_head.state_dict().items())
    model.freeze_encoder(False)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_layer_decay_reaches_into_a_timm_encoder():
    model = build("segmenter-linear", "eva02")
    lr = {name: g["lr_mult"] for g in param_groups(model, layer_decay=0.5) for name in g["names"]}
    block = lambda i: next(v for k, v in lr.items() if k.startswith(f"backbone.vit.blocks.{i}."))  # noqa: E731
    assert block(3) == pytest.approx(0.5) and block(0) == pytest.approx(0.5**4)
    assert lr["backbone.vit.patch_embed.proj.weight"] == pytest.approx(0.5**5)
    assert lr["decode_head.conv_seg.weight"] == 1


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = build("segmenter-linear", "augreg")
    x = torch.randn(1, 3, 64, 64)
    model(x).square().mean().backward()
    plain = model.backbone.vit.blocks[1].mlp.fc1.weight.grad.clone()
    model.zero_grad()
    model.set_grad_checkpointing()
    assert model.backbone.grad_checkpointing
    model(x).square().mean().backward()
    torch.testing.assert_close(model.backbone.vit.blocks[1].mlp.fc1.weight.grad, plain)


def test_feature_api_on_every_model():
    model = build("setr-mla", "dinov2-reg").eval()
    x = torch.randn(1, 3, 50, 70)  # padded to 56×70
    with torch.no_grad():
        feats = model.forward_features(x)  # what the decode head reads: the MLA neck's maps
        assert [tuple(f.shape) for f in feats] == [(1, 256, 4, 5)] * 4
        assert torch.allclose(model.decode_head(feats), model.forward_head(x)[0])
        last_two = model.backbone.forward_intermediates(torch.randn(1, 3, 56, 70), indices=2)
    assert [tuple(f.shape) for f in last_two] == [(1, 32, 4, 5)] * 2
    segformer = segzoo.create_model("segformer-test", num_classes=3).eval()
    with torch.no_grad():
        stages = segformer.backbone.forward_intermediates(torch.randn(1, 3, 64, 64), indices=[0, 3])
    assert [tuple(s.shape) for s in stages] == [(1, 8, 16, 16), (1, 32, 2, 2)]


def test_pretrained_encoder_comes_through_timms_download_from_the_hub(fake_hub):
    """pretrained_encoder=True asks the (local) Hub for timm's own file of the model and fills the encoder with it."""
    name, size = FAMILIES["dinov2-reg"]
    source = timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True, **tiny(size))
    fake_hub.add_file(f"timm/{name}", "model.safetensors", save(source.state_dict()))
    model = build("segmenter-linear", "dinov2-reg", pretrained_encoder=True)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.vit.state_dict()[key], value), key
    assert any(f"/timm/{name}/resolve/" in path for _, path in fake_hub.requests)


def test_a_model_that_cannot_serve_is_refused_with_the_models_that_can():
    with pytest.raises(ValueError, match=r"'resnet18' \(ResNet\) cannot serve as a ViT encoder.*vit_small_patch14"):
        segzoo.create_model("segmenter-linear", encoder="resnet18", num_classes=3)
    with pytest.raises(ValueError, match="segformer-b0 has its own encoder"):
        segzoo.create_model("segformer-b0", encoder="vit_small_patch14_dinov2.lvd142m", num_classes=3)


def test_the_listed_encoders_exist_in_timm_with_their_pretrained_tags_and_build():
    assert TIMM_ARCHS <= set(segzoo.list_models())
    pretrained = set(timm.list_pretrained())
    for name in KNOWN_TIMM_ENCODERS:
        assert name in pretrained, name
        encoder = TimmViTEncoder(name, device="meta")
        assert encoder.patch_size in (14, 16) and encoder.out_channels == [encoder.vit.embed_dim]


def test_saved_model_with_a_timm_encoder_loads_back(tmp_path):
    model = build("segmenter-mask", "eva02").eval()
    model.save_pretrained(tmp_path)
    loaded = segzoo.load(str(tmp_path))
    x = torch.randn(1, 3, 60, 60)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded.build_args["encoder"] == FAMILIES["eva02"][0]


def test_a_frozen_timm_encoder_trains_through_the_cli(tmp_path, monkeypatch):
    """The recipes' route: model_args name the timm encoder and freeze it; a fit runs and leaves the encoder as built,
    with only the head in the optimizer."""
    import sys

    from segzoo.training import cli_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    model_args = (
        "{encoder: vit_small_patch14_dinov2.lvd142m, freeze_encoder: true, "
        "encoder_args: {embed_dim: 32, depth: 2, num_heads: 2, img_size: 28}}"
    )
    cli = cli_main(
        [
            "--config",
            str(TINY_CONFIG),
            "--model.model",
            "linear-probe",
            f"--model.model_args={model_args}",
            "--trainer.max_steps=2",
            "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false",
        ],
        run=False,
    )
    encoder_before = {k: v.clone() for k, v in cli.model.model.backbone.state_dict().items()}
    cli.trainer.fit(cli.model, cli.datamodule)
    assert cli.trainer.global_step == 2
    optimized = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group["params"]}
    assert not optimized & {id(p) for p in cli.model.model.backbone.parameters()}
    assert all(torch.equal(v, encoder_before[k]) for k, v in cli.model.model.backbone.state_dict().items())
