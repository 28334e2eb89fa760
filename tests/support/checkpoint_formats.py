"""Write segzoo weights in foreign checkpoint layouts (the inverse key maps, from those projects' module names), and
serve a transformers SegFormer on the fake Hub as the nvidia/* repos hold it."""

import re

import torch
from safetensors.torch import load_file

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


def to_mmseg_mit(sd):
    """segzoo MiT → mmseg's MixVisionTransformer names (REFERENCE §3.2): layers.{i}.{0,1,2}, in_proj = cat(q, kv),
    1×1-conv FFN."""
    out = {}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[0] != "backbone":
            out[key] = value
            continue
        stage = int(parts[1][-1]) - 1
        if parts[1].startswith("patch_embed"):
            out[f"backbone.layers.{stage}.0.{'projection' if parts[2] == 'proj' else 'norm'}.{parts[3]}"] = value
        elif parts[1].startswith("norm"):
            out[f"backbone.layers.{stage}.2.{parts[2]}"] = value
        else:
            block = f"backbone.layers.{stage}.1.{parts[2]}."
            rest = ".".join(parts[3:])
            if rest.startswith("attn.q."):
                kv = sd[key.replace(".attn.q.", ".attn.kv.")]
                out[block + f"attn.attn.in_proj_{parts[-1]}"] = torch.cat([value, kv])
            elif rest.startswith("attn.kv."):
                continue
            else:
                rest = rest.replace("attn.proj.", "attn.attn.out_proj.").replace("mlp.fc1.", "ffn.layers.0.")
                rest = rest.replace("mlp.dwconv.dwconv.", "ffn.layers.1.").replace("mlp.fc2.", "ffn.layers.4.")
                is_conv = rest.startswith(("ffn.layers.0.w", "ffn.layers.4.w"))
                out[block + rest] = value[..., None, None] if is_conv else value
    return out


def to_setr_official(sd, num_classes=None):
    """segzoo ``setr-*-official`` → the official SETR layout (the inverse of ``convert_setr_official``, written from
    the official module names): conv biases (random) unfolded from the BatchNorm means, the MLA classifier's branches
    in the official order, the class token the official MLA backbone stores, the unused ``conv_seg`` of mmseg 0.x's
    base head."""
    out, gen = {}, torch.Generator().manual_seed(0)
    convs = sorted({int(k.split(".")[2]) for k in sd if re.match(r"decode_head\.up_convs\.\d+\.0\.conv", k)})
    mla = any(k.startswith("neck.") for k in sd)
    for k, v in sd.items():
        if k.startswith("backbone.") or k.startswith("decode_head.norm."):
            out[k] = v
        elif m := re.fullmatch(r"neck\.norm\.(\d)\.(\w+)", k):
            out[f"backbone.norm_{m[1]}.{m[2]}"] = v
        elif m := re.fullmatch(r"neck\.mla\.channel_proj\.(\d)\.(conv|bn)\.(\w+)", k):
            out[f"backbone.mla.mla_p{int(m[1]) + 2}_1x1.{0 if m[2] == 'conv' else 1}.{m[3]}"] = v
        elif m := re.fullmatch(r"neck\.mla\.feat_extract\.(\d)\.(conv|bn)\.(\w+)", k):
            out[f"backbone.mla.mla_p{5 - int(m[1])}.{0 if m[2] == 'conv' else 1}.{m[3]}"] = v
        elif mla and (m := re.fullmatch(r"decode_head\.up_convs\.(\d)\.([01])\.(conv|bn)\.(\w+)", k)):
            index = 3 * int(m[2]) + (0 if m[3] == "conv" else 1)
            out[f"decode_head.mlahead.head{5 - int(m[1])}.{index}.{m[4]}"] = v
        elif mla and k.startswith("decode_head.conv_seg."):
            out[k.replace("conv_seg", "cls")] = torch.cat(v.chunk(4, dim=1)[::-1], dim=1) if v.ndim == 4 else v
        elif m := re.fullmatch(r"decode_head\.up_convs\.(\d)\.0\.conv\.weight", k):
            out[f"decode_head.conv_{m[1]}.weight"] = v
            bias = torch.randn(v.shape[0], generator=gen)
            out[f"decode_head.conv_{m[1]}.bias"] = bias
            mean = sd[f"decode_head.up_convs.{m[1]}.0.bn.running_mean"]
            out[f"decode_head.syncbn_fc_{m[1]}.running_mean"] = mean + bias
        elif m := re.fullmatch(r"decode_head\.up_convs\.(\d)\.0\.bn\.(\w+)", k):
            if m[2] != "running_mean":
                out[f"decode_head.syncbn_fc_{m[1]}.{m[2]}"] = v
        elif k.startswith("decode_head.conv_seg."):
            out[k.replace("conv_seg", f"conv_{len(convs)}")] = v
        elif not k.startswith("auxiliary_head."):
            raise KeyError(f"no official SETR name for {k}")
    classes = num_classes or sd["decode_head.conv_seg.bias"].shape[0]
    out["decode_head.conv_seg.weight"], out["decode_head.conv_seg.bias"] = (
        torch.randn(classes, 512, 1, 1),
        torch.randn(classes),
    )
    if mla:  # the official MLA backbone keeps a class token and its position embedding, then drops both
        dim = sd["backbone.pos_embed"].shape[-1]
        out["backbone.cls_token"] = torch.randn(1, 1, dim)
        out["backbone.pos_embed"] = torch.cat([torch.randn(1, 1, dim), sd["backbone.pos_embed"]], dim=1)
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


def hf_segformer_b0(num_labels=150):
    """A randomly initialised transformers SegFormer-B0 (its BatchNorm statistics moved off their defaults)."""
    import transformers

    model = transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(num_labels=num_labels)).eval()
    with torch.no_grad():
        model.decode_head.batch_norm.running_mean.normal_()
    return model


def serve_hf_model(fake_hub, model, repo_id, tmp_path):
    """Put a transformers model on the fake Hub as ``repo_id``, as the nvidia/* repos hold it; returns its folder."""
    folder = tmp_path / repo_id.replace("/", "_")
    model.save_pretrained(folder)
    # the nvidia/* Hub repos hold pytorch_model.bin (transformers 5 only writes safetensors)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    for name in ("config.json", "pytorch_model.bin"):
        fake_hub.add_file(repo_id, name, (folder / name).read_bytes())
    return folder
