"""Write segzoo weights in foreign checkpoint layouts (the inverse key maps, from those projects' module names)."""

import re

import torch

import segzoo


def to_mmseg(sd):
    """segzoo → mmsegmentation 1.x names (the inverse map, written from mmseg's module names)."""
    out = {}
    for k, v in sd.items():
        k = re.sub(r"blocks\.(\d+)\.norm(\d)\.", lambda m: f"layers.{m.group(1)}.ln{m.group(2)}.", k)
        k = re.sub(r"blocks\.(\d+)\.attn\.qkv\.(weight|bias)", r"layers.\1.attn.attn.in_proj_\2", k)
        k = re.sub(r"blocks\.(\d+)\.attn\.proj\.", r"layers.\1.attn.attn.out_proj.", k)
        k = re.sub(r"blocks\.(\d+)\.mlp\.fc1\.", r"layers.\1.ffn.layers.0.0.", k)
        k = re.sub(r"blocks\.(\d+)\.mlp\.fc2\.", r"layers.\1.ffn.layers.1.", k)
        k = k.replace("backbone.patch_embed.proj.", "backbone.patch_embed.projection.")
        k = k.replace("backbone.norm.", "backbone.ln1.").replace("decode_head.proj_dec.", "decode_head.dec_proj.")
        k = k.replace("decode_head.proj_patch.", "decode_head.patch_proj.")
        k = k.replace("decode_head.proj_classes.", "decode_head.classes_proj.")
        out[k] = v
    return out


def to_segmenter_official(sd):
    out = {}
    for k, v in sd.items():
        k = k.replace("backbone.reg_token", "encoder.dist_token")  # DeiT's distillation token
        k = k.replace("backbone.", "encoder.").replace("decode_head.", "decoder.")
        if k in ("decoder.proj_patch.weight", "decoder.proj_classes.weight"):
            k, v = k[: -len(".weight")], v.t()
        if k == "decoder.conv_seg.weight":
            k, v = "decoder.head.weight", v[:, :, 0, 0]
        out[k.replace("decoder.conv_seg.bias", "decoder.head.bias")] = v
    dim = sd["backbone.cls_token"].shape[-1]
    out["encoder.head.weight"], out["encoder.head.bias"] = torch.randn(1000, dim), torch.randn(1000)  # unused
    if "encoder.dist_token" in out:
        out["encoder.head_dist.weight"], out["encoder.head_dist.bias"] = torch.randn(1000, dim), torch.randn(1000)
    return out


def randomized(name, num_classes=5, **kwargs):
    model = segzoo.create_model(name, num_classes=num_classes, **kwargs)
    with torch.no_grad():
        for n, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in n else torch.randn_like(t) * 0.2)
    return model.eval()


