"""mmsegmentation's SegFormer files (``segformer-bN-mmseg``): the checkpoint converter, mmseg's ImageNet MiT files, its
table rows (the head's fast path and the sizes: models/test_segformer_mmseg_head.py).

The logits of these models against mmseg 1.2.2's own code (its configs built with random weights and saved with its
checkpoint layout) are compared by the reference test set under ``reference/``; the tests here need no mmseg.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segzoo
from segzoo import ConversionError
from segzoo.checkpoints import CONVERTERS, detect_format, get_encoder_cfg, get_pretrained_cfg
from segzoo.checkpoints._convert import convert_mmseg, unwrap_checkpoint

# ----------------------------------------------------------------------------------------------- the converter
# Every key of mmseg 1.2.2's segformer_mit-b0_8xb2-160k_ade20k-512x512 model, with its shape, as its state_dict()
# lists them (dumped from the model built in mmseg's venv; num_batches_tracked is a scalar).
MMSEG_B0_KEYS = """
backbone.layers.0.0.projection.weight 32,3,7,7
backbone.layers.0.0.projection.bias 32
backbone.layers.0.0.norm.weight 32
backbone.layers.0.0.norm.bias 32
backbone.layers.0.1.0.norm1.weight 32
backbone.layers.0.1.0.norm1.bias 32
backbone.layers.0.1.0.attn.attn.in_proj_weight 96,32
backbone.layers.0.1.0.attn.attn.in_proj_bias 96
backbone.layers.0.1.0.attn.attn.out_proj.weight 32,32
backbone.layers.0.1.0.attn.attn.out_proj.bias 32
backbone.layers.0.1.0.attn.sr.weight 32,32,8,8
backbone.layers.0.1.0.attn.sr.bias 32
backbone.layers.0.1.0.attn.norm.weight 32
backbone.layers.0.1.0.attn.norm.bias 32
backbone.layers.0.1.0.norm2.weight 32
backbone.layers.0.1.0.norm2.bias 32
backbone.layers.0.1.0.ffn.layers.0.weight 128,32,1,1
backbone.layers.0.1.0.ffn.layers.0.bias 128
backbone.layers.0.1.0.ffn.layers.1.weight 128,1,3,3
backbone.layers.0.1.0.ffn.layers.1.bias 128
backbone.layers.0.1.0.ffn.layers.4.weight 32,128,1,1
backbone.layers.0.1.0.ffn.layers.4.bias 32
backbone.layers.0.1.1.norm1.weight 32
backbone.layers.0.1.1.norm1.bias 32
backbone.layers.0.1.1.attn.attn.in_proj_weight 96,32
backbone.layers.0.1.1.attn.attn.in_proj_bias 96
backbone.layers.0.1.1.attn.attn.out_proj.weight 32,32
backbone.layers.0.1.1.attn.attn.out_proj.bias 32
backbone.layers.0.1.1.attn.sr.weight 32,32,8,8
backbone.layers.0.1.1.attn.sr.bias 32
backbone.layers.0.1.1.attn.norm.weight 32
backbone.layers.0.1.1.attn.norm.bias 32
backbone.layers.0.1.1.norm2.weight 32
backbone.layers.0.1.1.norm2.bias 32
backbone.layers.0.1.1.ffn.layers.0.weight 128,32,1,1
backbone.layers.0.1.1.ffn.layers.0.bias 128
backbone.layers.0.1.1.ffn.layers.1.weight 128,1,3,3
backbone.layers.0.1.1.ffn.layers.1.bias 128
backbone.layers.0.1.1.ffn.layers.4.weight 32,128,1,1
backbone.layers.0.1.1.ffn.layers.4.bias 32
backbone.layers.0.2.weight 32
backbone.layers.0.2.bias 32
backbone.layers.1.0.projection.weight 64,32,3,3
backbone.layers.1.0.projection.bias 64
backbone.layers.1.0.norm.weight 64
backbone.layers.1.0.norm.bias 64
backbone.layers.1.1.0.norm1.weight 64
backbone.layers.1.1.0.norm1.bias 64
backbone.layers.1.1.0.attn.attn.in_proj_weight 192,64
backbone.layers.1.1.0.attn.attn.in_proj_bias 192
backbone.layers.1.1.0.attn.attn.out_proj.weight 64,64
backbone.layers.1.1.0.attn.attn.out_proj.bias 64
backbone.layers.1.1.0.attn.sr.weight 64,64,4,4
backbone.layers.1.1.0.attn.sr.bias 64
backbone.layers.1.1.0.attn.norm.weight 64
backbone.layers.1.1.0.attn.norm.bias 64
backbone.layers.1.1.0.norm2.weight 64
backbone.layers.1.1.0.norm2.bias 64
backbone.layers.1.1.0.ffn.layers.0.weight 256,64,1,1
backbone.layers.1.1.0.ffn.layers.0.bias 256
backbone.layers.1.1.0.ffn.layers.1.weight 256,1,3,3
backbone.layers.1.1.0.ffn.layers.1.bias 256
backbone.layers.1.1.0.ffn.layers.4.weight 64,256,1,1
backbone.layers.1.1.0.ffn.layers.4.bias 64
backbone.layers.1.1.1.norm1.weight 64
backbone.layers.1.1.1.norm1.bias 64
backbone.layers.1.1.1.attn.attn.in_proj_weight 192,64
backbone.layers.1.1.1.attn.attn.in_proj_bias 192
backbone.layers.1.1.1.attn.attn.out_proj.weight 64,64
backbone.layers.1.1.1.attn.attn.out_proj.bias 64
backbone.layers.1.1.1.attn.sr.weight 64,64,4,4
backbone.layers.1.1.1.attn.sr.bias 64
backbone.layers.1.1.1.attn.norm.weight 64
backbone.layers.1.1.1.attn.norm.bias 64
backbone.layers.1.1.1.norm2.weight 64
backbone.layers.1.1.1.norm2.bias 64
backbone.layers.1.1.1.ffn.layers.0.weight 256,64,1,1
backbone.layers.1.1.1.ffn.layers.0.bias 256
backbone.layers.1.1.1.ffn.layers.1.weight 256,1,3,3
backbone.layers.1.1.1.ffn.layers.1.bias 256
backbone.layers.1.1.1.ffn.layers.4.weight 64,256,1,1
backbone.layers.1.1.1.ffn.layers.4.bias 64
backbone.layers.1.2.weight 64
backbone.layers.1.2.bias 64
backbone.layers.2.0.projection.weight 160,64,3,3
backbone.layers.2.0.projection.bias 160
backbone.layers.2.0.norm.weight 160
backbone.layers.2.0.norm.bias 160
backbone.layers.2.1.0.norm1.weight 160
backbone.layers.2.1.0.norm1.bias 160
backbone.layers.2.1.0.attn.attn.in_proj_weight 480,160
backbone.layers.2.1.0.attn.attn.in_proj_bias 480
backbone.layers.2.1.0.attn.attn.out_proj.weight 160,160
backbone.layers.2.1.0.attn.attn.out_proj.bias 160
backbone.layers.2.1.0.attn.sr.weight 160,160,2,2
backbone.layers.2.1.0.attn.sr.bias 160
backbone.layers.2.1.0.attn.norm.weight 160
backbone.layers.2.1.0.attn.norm.bias 160
backbone.layers.2.1.0.norm2.weight 160
backbone.layers.2.1.0.norm2.bias 160
backbone.layers.2.1.0.ffn.layers.0.weight 640,160,1,1
backbone.layers.2.1.0.ffn.layers.0.bias 640
backbone.layers.2.1.0.ffn.layers.1.weight 640,1,3,3
backbone.layers.2.1.0.ffn.layers.1.bias 640
backbone.layers.2.1.0.ffn.layers.4.weight 160,640,1,1
backbone.layers.2.1.0.ffn.layers.4.bias 160
backbone.layers.2.1.1.norm1.weight 160
backbone.layers.2.1.1.norm1.bias 160
backbone.layers.2.1.1.attn.attn.in_proj_weight 480,160
backbone.layers.2.1.1.attn.attn.in_proj_bias 480
backbone.layers.2.1.1.attn.attn.out_proj.weight 160,160
backbone.layers.2.1.1.attn.attn.out_proj.bias 160
backbone.layers.2.1.1.attn.sr.weight 160,160,2,2
backbone.layers.2.1.1.attn.sr.bias 160
backbone.layers.2.1.1.attn.norm.weight 160
backbone.layers.2.1.1.attn.norm.bias 160
backbone.layers.2.1.1.norm2.weight 160
backbone.layers.2.1.1.norm2.bias 160
backbone.layers.2.1.1.ffn.layers.0.weight 640,160,1,1
backbone.layers.2.1.1.ffn.layers.0.bias 640
backbone.layers.2.1.1.ffn.layers.1.weight 640,1,3,3
backbone.layers.2.1.1.ffn.layers.1.bias 640
backbone.layers.2.1.1.ffn.layers.4.weight 160,640,1,1
backbone.layers.2.1.1.ffn.layers.4.bias 160
backbone.layers.2.2.weight 160
backbone.layers.2.2.bias 160
backbone.layers.3.0.projection.weight 256,160,3,3
backbone.layers.3.0.projection.bias 256
backbone.layers.3.0.norm.weight 256
backbone.layers.3.0.norm.bias 256
backbone.layers.3.1.0.norm1.weight 256
backbone.layers.3.1.0.norm1.bias 256
backbone.layers.3.1.0.attn.attn.in_proj_weight 768,256
backbone.layers.3.1.0.attn.attn.in_proj_bias 768
backbone.layers.3.1.0.attn.attn.out_proj.weight 256,256
backbone.layers.3.1.0.attn.attn.out_proj.bias 256
backbone.layers.3.1.0.norm2.weight 256
backbone.layers.3.1.0.norm2.bias 256
backbone.layers.3.1.0.ffn.layers.0.weight 1024,256,1,1
backbone.layers.3.1.0.ffn.layers.0.bias 1024
backbone.layers.3.1.0.ffn.layers.1.weight 1024,1,3,3
backbone.layers.3.1.0.ffn.layers.1.bias 1024
backbone.layers.3.1.0.ffn.layers.4.weight 256,1024,1,1
backbone.layers.3.1.0.ffn.layers.4.bias 256
backbone.layers.3.1.1.norm1.weight 256
backbone.layers.3.1.1.norm1.bias 256
backbone.layers.3.1.1.attn.attn.in_proj_weight 768,256
backbone.layers.3.1.1.attn.attn.in_proj_bias 768
backbone.layers.3.1.1.attn.attn.out_proj.weight 256,256
backbone.layers.3.1.1.attn.attn.out_proj.bias 256
backbone.layers.3.1.1.norm2.weight 256
backbone.layers.3.1.1.norm2.bias 256
backbone.layers.3.1.1.ffn.layers.0.weight 1024,256,1,1
backbone.layers.3.1.1.ffn.layers.0.bias 1024
backbone.layers.3.1.1.ffn.layers.1.weight 1024,1,3,3
backbone.layers.3.1.1.ffn.layers.1.bias 1024
backbone.layers.3.1.1.ffn.layers.4.weight 256,1024,1,1
backbone.layers.3.1.1.ffn.layers.4.bias 256
backbone.layers.3.2.weight 256
backbone.layers.3.2.bias 256
decode_head.conv_seg.weight 150,256,1,1
decode_head.conv_seg.bias 150
decode_head.convs.0.conv.weight 256,32,1,1
decode_head.convs.0.bn.weight 256
decode_head.convs.0.bn.bias 256
decode_head.convs.0.bn.running_mean 256
decode_head.convs.0.bn.running_var 256
decode_head.convs.0.bn.num_batches_tracked
decode_head.convs.1.conv.weight 256,64,1,1
decode_head.convs.1.bn.weight 256
decode_head.convs.1.bn.bias 256
decode_head.convs.1.bn.running_mean 256
decode_head.convs.1.bn.running_var 256
decode_head.convs.1.bn.num_batches_tracked
decode_head.convs.2.conv.weight 256,160,1,1
decode_head.convs.2.bn.weight 256
decode_head.convs.2.bn.bias 256
decode_head.convs.2.bn.running_mean 256
decode_head.convs.2.bn.running_var 256
decode_head.convs.2.bn.num_batches_tracked
decode_head.convs.3.conv.weight 256,256,1,1
decode_head.convs.3.bn.weight 256
decode_head.convs.3.bn.bias 256
decode_head.convs.3.bn.running_mean 256
decode_head.convs.3.bn.running_var 256
decode_head.convs.3.bn.num_batches_tracked
decode_head.fusion_conv.conv.weight 256,1024,1,1
decode_head.fusion_conv.bn.weight 256
decode_head.fusion_conv.bn.bias 256
decode_head.fusion_conv.bn.running_mean 256
decode_head.fusion_conv.bn.running_var 256
decode_head.fusion_conv.bn.num_batches_tracked
"""


def mmseg_b0_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for line in MMSEG_B0_KEYS.strip().splitlines():
        key, _, shape = line.partition(" ")
        dims = tuple(int(d) for d in shape.split(",")) if shape else ()
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(dims, generator=gen) + 0.5
        else:
            sd[key] = torch.randn(dims, generator=gen) * 0.1
    return sd


def test_mmseg_b0_key_list_is_complete():
    sd = mmseg_b0_state_dict()
    assert len(sd) == 192
    # 4 stages × (patch embed conv + norm: 4, stage norm: 2) + 8 blocks × 18 keys (14 in stage 4: no SR conv or norm)
    assert sum(k.startswith("backbone.") for k in sd) == 4 * 6 + 6 * 18 + 2 * 14
    assert sum(k.startswith("decode_head.") for k in sd) == 4 * 6 + 6 + 2


def test_converter_maps_every_key_of_a_real_mmseg_segformer():
    sd = mmseg_b0_state_dict()
    checkpoint = {"meta": {"mmseg_version": "1.2.2"}, "state_dict": sd}
    assert detect_format(unwrap_checkpoint(checkpoint)) == "mmseg"
    converted = CONVERTERS["mmseg"](unwrap_checkpoint(checkpoint))
    model = segzoo.create_model("segformer-b0-mmseg", num_classes=150)
    model.load_state_dict(converted, strict=True)  # every key used, every parameter filled, every shape right
    # q gets the first C rows of in_proj, kv the next 2C (K rows, then V rows, the official layout)
    in_proj = sd["backbone.layers.1.1.0.attn.attn.in_proj_weight"]
    assert torch.equal(converted["backbone.block2.0.attn.q.weight"], in_proj[:64])
    assert torch.equal(converted["backbone.block2.0.attn.kv.weight"], in_proj[64:])
    kv_bias = sd["backbone.layers.2.1.1.attn.attn.in_proj_bias"][160:]
    assert torch.equal(converted["backbone.block3.1.attn.kv.bias"], kv_bias)
    assert converted["backbone.block1.0.mlp.fc1.weight"].shape == (128, 32)
    assert converted["backbone.block4.1.mlp.fc2.weight"].shape == (256, 1024)
    assert torch.equal(converted["decode_head.fusion_conv.conv.weight"], sd["decode_head.fusion_conv.conv.weight"])


def test_leftover_keys_fail():
    sd = mmseg_b0_state_dict()
    sd["backbone.layers.0.1.0.attn.attn.bias_k"] = torch.zeros(1, 1, 32)
    with pytest.raises(ConversionError, match="bias_k"):
        convert_mmseg(sd)
    sd = mmseg_b0_state_dict()
    sd["auxiliary_head.conv_seg.weight"] = torch.zeros(150, 256, 1, 1)
    with pytest.raises(ConversionError, match="auxiliary_head"):
        convert_mmseg(sd)


def _mmseg_block_reference(sd, prefix, x, hw, num_heads, sr_ratio):
    """mmseg's TransformerEncoderLayer written with torch primitives on mmseg's own tensors: efficient attention
    through torch's nn.MultiheadAttention (mmseg's ``attn.attn``), then the 1×1-conv Mix-FFN, LayerNorms eps 1e-6."""
    B, _, C = x.shape
    t = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    mha = nn.MultiheadAttention(C, num_heads, batch_first=True)
    mha.load_state_dict(
        {
            "in_proj_weight": t["attn.attn.in_proj_weight"],
            "in_proj_bias": t["attn.attn.in_proj_bias"],
            "out_proj.weight": t["attn.attn.out_proj.weight"],
            "out_proj.bias": t["attn.attn.out_proj.bias"],
        }
    )
    q = F.layer_norm(x, (C,), t["norm1.weight"], t["norm1.bias"], eps=1e-6)
    kv = q
    if sr_ratio > 1:
        kv = F.conv2d(q.transpose(1, 2).reshape(B, C, *hw), t["attn.sr.weight"], t["attn.sr.bias"], stride=sr_ratio)
        kv = F.layer_norm(kv.flatten(2).transpose(1, 2), (C,), t["attn.norm.weight"], t["attn.norm.bias"], eps=1e-6)
    x = x + mha(q, kv, kv, need_weights=False)[0]
    y = F.layer_norm(x, (C,), t["norm2.weight"], t["norm2.bias"], eps=1e-6).transpose(1, 2).reshape(B, C, *hw)
    y = F.conv2d(y, t["ffn.layers.0.weight"], t["ffn.layers.0.bias"])
    y = F.gelu(F.conv2d(y, t["ffn.layers.1.weight"], t["ffn.layers.1.bias"], padding=1, groups=y.shape[1]))
    y = F.conv2d(y, t["ffn.layers.4.weight"], t["ffn.layers.4.bias"])
    return x + y.flatten(2).transpose(1, 2)


@pytest.mark.parametrize(
    ("stage", "num_heads", "sr_ratio", "hw"), [(0, 1, 8, (16, 24)), (1, 2, 4, (8, 12)), (3, 8, 1, (5, 7))]
)
def test_converted_blocks_compute_what_mmsegs_blocks_compute(stage, num_heads, sr_ratio, hw):
    sd = mmseg_b0_state_dict(seed=stage)
    with torch.no_grad():  # small SR weights: tiny LayerNorm inputs, where eps 1e-6 vs 1e-5 shows
        for k in [k for k in sd if ".attn.sr." in k]:
            sd[k] = sd[k] * 1e-2
    model = segzoo.create_model("segformer-b0-mmseg", num_classes=150).eval()
    model.load_state_dict(convert_mmseg(sd), strict=True)
    block = getattr(model.backbone, f"block{stage + 1}")[1]
    C = block.norm1.normalized_shape[0]
    x = torch.randn(2, hw[0] * hw[1], C)
    with torch.no_grad():
        ours = block(x, *hw)
        ref = _mmseg_block_reference(sd, f"backbone.layers.{stage}.1.1.", x, hw, num_heads, sr_ratio)
    assert (ours - ref).abs().max() < 1e-5


def test_patch_embedding_uses_mmsegs_eps():
    sd = mmseg_b0_state_dict()
    sd["backbone.layers.0.0.projection.weight"] *= 1e-3  # tiny activations: LayerNorm eps decides the output
    sd["backbone.layers.0.0.projection.bias"] *= 1e-3
    model = segzoo.create_model("segformer-b0-mmseg", num_classes=150).eval()
    model.load_state_dict(convert_mmseg(sd), strict=True)
    img = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        tokens, H, W = model.backbone.patch_embed1(img)
        y = (
            F.conv2d(
                img,
                sd["backbone.layers.0.0.projection.weight"],
                sd["backbone.layers.0.0.projection.bias"],
                stride=4,
                padding=3,
            )
            .flatten(2)
            .transpose(1, 2)
        )
        gamma, beta = sd["backbone.layers.0.0.norm.weight"], sd["backbone.layers.0.0.norm.bias"]
        ref = F.layer_norm(y, (32,), gamma, beta, eps=1e-6)
        official_eps = F.layer_norm(y, (32,), gamma, beta, eps=1e-5)
    assert (H, W) == (16, 24)
    assert (tokens - ref).abs().max() < 1e-4 < (official_eps - ref).abs().max()


def test_imagenet_mit_files_initialise_the_mmseg_encoder():
    """mmseg's ``mit_bN_20220624-*.pth`` (mit2mmseg.py output): backbone keys without the ``backbone.`` prefix."""
    imagenet = {k[len("backbone.") :]: v for k, v in mmseg_b0_state_dict().items() if k.startswith("backbone.")}
    converted = CONVERTERS["mmseg"](imagenet)
    model = segzoo.create_model("segformer-b0-mmseg", num_classes=150)
    assert set(converted) == {k for k in model.state_dict() if k.startswith("backbone.")}
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not unexpected and all(k.startswith("decode_head.") for k in missing)
    encoder = get_encoder_cfg("segformer-b3-mmseg")
    assert encoder.name == "mit-b3-mmseg" and encoder.format == "mmseg" and encoder.sha256 == "13b1141c"
    assert encoder.source.url.endswith("/mit_b3_20220624-13b1141c.pth")


def test_pretrained_encoder_reads_mmsegs_imagenet_file(tmp_path, monkeypatch):
    """create_model(..., pretrained_encoder=True) for an mmseg variant: the table's mit-bN-mmseg file (here a local
    stand-in with mit2mmseg.py's layout, served instead of the download) fills the whole encoder."""
    from huggingface_hub import constants

    import segzoo.checkpoints._download as hub

    imagenet = {k[len("backbone.") :]: v for k, v in mmseg_b0_state_dict(seed=3).items() if k.startswith("backbone.")}
    path = tmp_path / "mit_b0_20220624-7e0fe6dd.pth"
    torch.save(imagenet, path)
    asked = []
    monkeypatch.setattr(hub, "download_file", lambda cfg, **kw: asked.append(cfg.name) or path)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    model = segzoo.create_model("segformer-b0-mmseg", num_classes=3, pretrained_encoder=True)
    assert asked == ["mit-b0-mmseg"]
    state = model.state_dict()
    assert torch.equal(state["backbone.patch_embed2.proj.weight"], imagenet["layers.1.0.projection.weight"])
    q = imagenet["layers.3.1.1.attn.attn.in_proj_weight"][:256]
    assert torch.equal(state["backbone.block4.1.attn.q.weight"], q)
    fc2 = imagenet["layers.0.1.0.ffn.layers.4.weight"][:, :, 0, 0]
    assert torch.equal(state["backbone.block1.0.mlp.fc2.weight"], fc2)


# ------------------------------------------------------------------------------------------ loading and the table
def _write_mmseg_file(path, seed=0):
    torch.save({"meta": {"mmseg_version": "1.2.2"}, "state_dict": mmseg_b0_state_dict(seed)}, path)
    return path


@pytest.mark.parametrize("name", ["segformer-b0-mmseg", "segformer-b0-ade-mmseg"])
def test_load_an_mmseg_file(name, tmp_path):
    path = _write_mmseg_file(tmp_path / "segformer_mit-b0.pth")
    model = segzoo.load(name, checkpoint=path)
    assert model.arch_name == "segformer-b0-mmseg" and model.num_classes == 150 and not model.training
    sd = mmseg_b0_state_dict()
    assert torch.equal(model.state_dict()["decode_head.conv_seg.weight"], sd["decode_head.conv_seg.weight"])
    assert torch.equal(model.state_dict()["backbone.norm3.bias"], sd["backbone.layers.2.2.bias"])
    with torch.no_grad():
        assert model(torch.randn(1, 3, 67, 93)).shape == (1, 150, 67, 93)
    if name.endswith("-ade-mmseg"):
        assert model.eval_protocol.mode == "whole" and model.eval_protocol.test_scale == (2048, 512)


def test_table_rows_carry_mmsegs_own_settings():
    ade = get_pretrained_cfg("segformer-b2-ade-mmseg")
    assert ade.arch == "segformer-b2-mmseg" and ade.format == "mmseg" and ade.sha256 == "cbd414ac"
    assert ade.metrics["publisher"] == {"miou_ss": 45.58, "miou_ms": 47.03}
    assert (ade.eval.mode, ade.eval.test_scale, ade.eval.size_divisor) == ("whole", (2048, 512), None)
    big = get_pretrained_cfg("segformer-b5-ade-640-mmseg")
    assert big.crop_size == (640, 640) and big.eval.test_scale == (2048, 640)
    city = get_pretrained_cfg("segformer-b4-cityscapes-mmseg")
    assert (city.eval.mode, city.eval.crop, city.eval.stride, city.eval.test_scale) == (
        "slide",
        (1024, 1024),
        (768, 768),
        (2048, 1024),
    )
    assert city.num_classes == 19 and not city.reduce_zero_label
    names = segzoo.list_pretrained("segformer-*-mmseg")
    assert len(names) == 13
    for name in names:
        cfg = get_pretrained_cfg(name)
        assert cfg.source.url.endswith(f"-{cfg.sha256}.pth") and "/v0.5/segformer/" in cfg.source.url
        assert cfg.license == get_pretrained_cfg("segformer-b0-ade").license
