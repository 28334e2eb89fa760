"""Converters from published checkpoint formats to segzoo state dicts.

Each converter is a table of regex renames plus the few tensor surgeries a format needs (split or fused q-k-v,
transposed projections), and ends by checking that every source key was used: a key left over raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping

import torch

from segzoo._errors import ConversionError

log = logging.getLogger("segzoo")

StateDict = dict[str, torch.Tensor]


def rename_keys(state_dict: Mapping[str, torch.Tensor], rules: list[tuple[str, str | Callable]], fmt: str) -> StateDict:
    """Rename every key by the first matching ``(pattern, replacement)`` rule; a key no rule matches raises."""
    out, unmatched = {}, []
    compiled = [(re.compile(p), r) for p, r in rules]
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            if match := pattern.fullmatch(key):
                out[repl(match) if callable(repl) else match.expand(repl)] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        raise ConversionError(f"{len(unmatched)} keys of this {fmt} checkpoint have no mapping: {unmatched[:8]}")
    return out


def _stage(match: re.Match, group: int = 1) -> str:
    return str(int(match.group(group)) + 1)


# Hugging Face transformers SegFormer (the on-disk layout of the nvidia/* Hub repos and of save_pretrained).
_TRANSFORMERS_SEGFORMER_RULES: list[tuple[str, str | Callable]] = [
    (
        r"segformer\.encoder\.patch_embeddings\.(\d)\.proj\.(weight|bias)",
        lambda m: f"backbone.patch_embed{_stage(m)}.proj.{m.group(2)}",
    ),
    (
        r"segformer\.encoder\.patch_embeddings\.(\d)\.layer_norm\.(weight|bias)",
        lambda m: f"backbone.patch_embed{_stage(m)}.norm.{m.group(2)}",
    ),
    (r"segformer\.encoder\.layer_norm\.(\d)\.(weight|bias)", lambda m: f"backbone.norm{_stage(m)}.{m.group(2)}"),
    (
        r"segformer\.encoder\.block\.(\d)\.(\d+)\.(.+)",
        lambda m: f"backbone.block{_stage(m)}.{m.group(2)}.{_block_part(m.group(3))}",
    ),
    (
        r"decode_head\.linear_c\.(\d)\.proj\.(weight|bias)",
        lambda m: f"decode_head.linear_c{_stage(m)}.proj.{m.group(2)}",
    ),
    (r"decode_head\.linear_fuse\.weight", "decode_head.linear_fuse.conv.weight"),
    (r"decode_head\.batch_norm\.(.+)", r"decode_head.linear_fuse.bn.\1"),
    (r"decode_head\.classifier\.(weight|bias)", r"decode_head.linear_pred.\1"),
]
_TRANSFORMERS_BLOCK_PARTS = {
    "layer_norm_1": "norm1",
    "attention.self.query": "attn.q",
    "attention.self.kv": "attn.kv",  # produced by merging key and value below
    "attention.self.sr": "attn.sr",
    "attention.self.layer_norm": "attn.norm",
    "attention.output.dense": "attn.proj",
    "layer_norm_2": "norm2",
    "mlp.dense1": "mlp.fc1",
    "mlp.dwconv.dwconv": "mlp.dwconv.dwconv",
    "mlp.dense2": "mlp.fc2",
}


def _block_part(rest: str) -> str:
    module, _, param = rest.rpartition(".")
    if module not in _TRANSFORMERS_BLOCK_PARTS:
        raise ConversionError(f"unknown SegFormer block parameter {rest!r}")
    return f"{_TRANSFORMERS_BLOCK_PARTS[module]}.{param}"


def _merge_key_value(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """transformers splits the official ``kv`` projection into ``key`` and ``value``; stack them back (K rows first)."""
    out = dict(state_dict)
    for name in [k for k in state_dict if ".attention.self.key." in k]:
        value_name = name.replace(".attention.self.key.", ".attention.self.value.")
        out[name.replace(".attention.self.key.", ".attention.self.kv.")] = torch.cat(
            [out.pop(name), out.pop(value_name)], dim=0
        )
    return out


def convert_transformers_segformer(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """``SegformerForSemanticSegmentation`` (or ``SegformerModel`` / ``...ForImageClassification``) → segzoo.

    Encoder-only checkpoints (``nvidia/mit-bX``) give ``backbone.*`` keys; their ImageNet ``classifier`` is dropped.
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    sd = {("segformer." + k if k.startswith("encoder.") else k): v for k, v in sd.items()}
    return rename_keys(_merge_key_value(sd), _TRANSFORMERS_SEGFORMER_RULES, "transformers SegFormer")


# mmsegmentation ViT (SETR, Segmenter) and Segmenter's Mask Transformer head, in mmseg 1.x key names.
_MMSEG_TRANSFORMER_LAYER = [
    (r"(.+)\.layers\.(\d+)\.ln1\.(weight|bias)", r"\1.blocks.\2.norm1.\3"),
    (r"(.+)\.layers\.(\d+)\.ln2\.(weight|bias)", r"\1.blocks.\2.norm2.\3"),
    (r"(.+)\.layers\.(\d+)\.attn\.attn\.in_proj_(weight|bias)", r"\1.blocks.\2.attn.qkv.\3"),
    (r"(.+)\.layers\.(\d+)\.attn\.attn\.out_proj\.(weight|bias)", r"\1.blocks.\2.attn.proj.\3"),
    (r"(.+)\.layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", r"\1.blocks.\2.mlp.fc1.\3"),
    (r"(.+)\.layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)", r"\1.blocks.\2.mlp.fc2.\3"),
]
_MMSEG_RULES = _MMSEG_TRANSFORMER_LAYER + [
    (r"backbone\.patch_embed\.projection\.(weight|bias)", r"backbone.patch_embed.proj.\1"),
    (r"backbone\.(cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.ln1\.(weight|bias)", r"backbone.norm.\1"),
    (r"decode_head\.dec_proj\.(weight|bias)", r"decode_head.proj_dec.\1"),
    (r"decode_head\.patch_proj\.weight", "decode_head.proj_patch.weight"),
    (r"decode_head\.classes_proj\.weight", "decode_head.proj_classes.weight"),
    # SETR heads, the MLA neck, Segmenter's linear head and the mask head's remaining parts share mmseg's names
    (r"((?:decode_head|auxiliary_head\.\d+|neck)\..+)", r"\1"),
]


# mmsegmentation SegFormer: its MixVisionTransformer (``backbone.layers.{i}.{0: patch embed, 1: blocks, 2: norm}``,
# nn.MultiheadAttention projections, 1×1-conv FFN) to the official MiT names; its own head's names are ours.
_MMSEG_MIT_BLOCK_PARTS = {
    "norm1": "norm1",
    "attn.attn.in_proj": "attn.in_proj",  # [3C, C] = cat(q, kv): split below
    "attn.attn.out_proj": "attn.proj",
    "attn.sr": "attn.sr",
    "attn.norm": "attn.norm",
    "norm2": "norm2",
    "ffn.layers.0": "mlp.fc1",  # 1×1 conv [4C, C, 1, 1] -> Linear [4C, C]
    "ffn.layers.1": "mlp.dwconv.dwconv",
    "ffn.layers.4": "mlp.fc2",  # 1×1 conv [C, 4C, 1, 1] -> Linear [C, 4C]
}
_MMSEG_SEGFORMER_RULES: list[tuple[str, str | Callable]] = [
    (
        r"backbone\.layers\.(\d)\.0\.projection\.(weight|bias)",
        lambda m: f"backbone.patch_embed{_stage(m)}.proj.{m.group(2)}",
    ),
    (r"backbone\.layers\.(\d)\.0\.norm\.(weight|bias)", lambda m: f"backbone.patch_embed{_stage(m)}.norm.{m.group(2)}"),
    (
        r"backbone\.layers\.(\d)\.1\.(\d+)\.("
        + "|".join(map(re.escape, _MMSEG_MIT_BLOCK_PARTS))
        + r")[._](weight|bias)",
        lambda m: f"backbone.block{_stage(m)}.{m.group(2)}.{_MMSEG_MIT_BLOCK_PARTS[m.group(3)]}.{m.group(4)}",
    ),
    (r"backbone\.layers\.(\d)\.2\.(weight|bias)", lambda m: f"backbone.norm{_stage(m)}.{m.group(2)}"),
    (r"(decode_head\.(?:convs\.\d+|fusion_conv)\.(?:conv\.weight|bn\.\w+))", r"\1"),
    (r"(decode_head\.conv_seg\.(?:weight|bias))", r"\1"),
]


def convert_mmseg_segformer(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An mmsegmentation SegFormer checkpoint (``segformer-bN-mmseg``) → segzoo; also mmseg's ImageNet MiT files
    (``mit_bN_20220624-*.pth``, written by its ``mit2mmseg.py`` without the ``backbone.`` prefix).

    ``in_proj`` holds the official ``q`` rows then ``kv`` (K rows, then V rows), as nn.MultiheadAttention's q, k, v;
    the FFN's 1×1 convs become linear weights.
    """
    if not any(k.startswith("backbone.") for k in state_dict):
        state_dict = {f"backbone.{k}": v for k, v in state_dict.items()}
    out = rename_keys(state_dict, _MMSEG_SEGFORMER_RULES, "mmsegmentation SegFormer")
    for name in [k for k in out if ".attn.in_proj." in k]:
        qkv = out.pop(name)
        dim = qkv.shape[0] // 3
        out[name.replace(".in_proj.", ".q.")], out[name.replace(".in_proj.", ".kv.")] = qkv[:dim], qkv[dim:]
    for name in [k for k in out if k.endswith((".mlp.fc1.weight", ".mlp.fc2.weight"))]:
        out[name] = out[name].flatten(1)
    return out


def convert_mmseg(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An mmsegmentation checkpoint's ``state_dict`` (SETR, Segmenter) → segzoo.

    mmseg ≥ 1.1's ``VisionTransformer`` defaults to ``patch_bias=False``, so the files it writes have no patch
    projection bias, while the zoo's files (trained with mmseg 0.x) have one. The converted weights keep that
    difference: ``segzoo.load`` builds a bias-free patch projection for them (``encoder_args.patch_bias=False``).
    """
    if "backbone.layers.0.0.projection.weight" in state_dict or "layers.0.0.projection.weight" in state_dict:
        return convert_mmseg_segformer(state_dict)  # SegFormer's MiT (a ViT has one patch_embed, no layers.0.0)
    return rename_keys(state_dict, _MMSEG_RULES, "mmsegmentation")


# Official Segmenter (rstrudel/segmenter ``checkpoint.pth['model']``): timm names under ``encoder.``/``decoder.``.
_SEGMENTER_OFFICIAL_RULES = [
    (r"encoder\.(patch_embed\.proj\.(?:weight|bias)|cls_token|pos_embed|norm\.(?:weight|bias))", r"backbone.\1"),
    (r"encoder\.dist_token", "backbone.reg_token"),
    (r"encoder\.blocks\.(.+)", r"backbone.blocks.\1"),
    (r"decoder\.head\.(weight|bias)", r"decode_head.conv_seg.\1"),
    (
        r"decoder\.(proj_dec\.(?:weight|bias)|cls_emb|decoder_norm\.(?:weight|bias)|mask_norm\.(?:weight|bias))",
        r"decode_head.\1",
    ),
    (r"decoder\.blocks\.(.+)", r"decode_head.blocks.\1"),
    (r"decoder\.(proj_patch|proj_classes)", r"decode_head.\1.weight"),
]


def convert_segmenter_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official Segmenter → segzoo: raw [D, D] projections become ``nn.Linear`` weights (transposed), the linear
    decoder becomes a 1×1 conv, the encoder's unused ImageNet classifiers (``head``, DeiT's ``head_dist``) are
    dropped, and DeiT's distillation token becomes the encoder's ``reg_token`` (see ``ViTEncoder``)."""
    sd = {k: v for k, v in state_dict.items() if not k.startswith(("encoder.head.", "encoder.head_dist."))}
    out = rename_keys(sd, _SEGMENTER_OFFICIAL_RULES, "official Segmenter")
    for name in ("decode_head.proj_patch.weight", "decode_head.proj_classes.weight"):
        if name in out:
            out[name] = out[name].t().contiguous()  # x @ P == Linear(weight=Pᵀ)(x)
    if out.get("decode_head.conv_seg.weight") is not None and out["decode_head.conv_seg.weight"].ndim == 2:
        out["decode_head.conv_seg.weight"] = out["decode_head.conv_seg.weight"][:, :, None, None]
    return out


def convert_segformer_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Official SegFormer (NVlabs) → segzoo. Segmentation checkpoints already use our names; the head's unused
    ``conv_seg`` (a leftover of mmseg's base head) is dropped. ImageNet ``mit_bX.pth`` files get the ``backbone.``
    prefix and lose their classifier."""
    if any(k.startswith("backbone.") for k in state_dict):
        return {k: v for k, v in state_dict.items() if not k.startswith("decode_head.conv_seg.")}
    return {f"backbone.{k}": v for k, v in state_dict.items() if not k.startswith("head.")}


def convert_timm_vit(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """timm / AugReg ImageNet ViT (and DeiT) → segzoo encoder keys (``backbone.*``); the classifiers are dropped and
    DeiT's distillation token becomes ``reg_token``."""
    skip = ("head.", "head_dist.", "fc_norm.", "attn_pool.")
    return {
        f"backbone.{'reg_token' if k == 'dist_token' else k}": v
        for k, v in state_dict.items()
        if not k.startswith(skip)
    }


# Official SETR (fudan-zvg/SETR, an mmseg 0.x fork): timm names in the ViT; heads of their own (see
# ``_setr_official_arch`` in the registry). ``mla_p{2..5}`` name the four MLA levels, shallow to deep; segzoo's MLA
# modules index the projections shallow first but the aggregated maps (and the head's branches) deepest first.
_SETR_OFFICIAL_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_SETR_OFFICIAL_RULES: list[tuple[str, str | Callable]] = [
    (r"backbone\.(patch_embed\.proj\.(?:weight|bias)|cls_token|pos_embed)", r"backbone.\1"),
    (r"backbone\.blocks\.(.+)", r"backbone.blocks.\1"),
    (r"backbone\.norm_(\d)\.(weight|bias)", r"neck.norm.\1.\2"),
    (r"backbone\.mla\.mla_p(\d)_1x1\.0\.weight", lambda m: f"neck.mla.channel_proj.{int(m.group(1)) - 2}.conv.weight"),
    (
        r"backbone\.mla\.mla_p(\d)_1x1\.1\." + _SETR_OFFICIAL_BN,
        lambda m: f"neck.mla.channel_proj.{int(m.group(1)) - 2}.bn.{m.group(2)}",
    ),
    (r"backbone\.mla\.mla_p(\d)\.0\.weight", lambda m: f"neck.mla.feat_extract.{5 - int(m.group(1))}.conv.weight"),
    (
        r"backbone\.mla\.mla_p(\d)\.1\." + _SETR_OFFICIAL_BN,
        lambda m: f"neck.mla.feat_extract.{5 - int(m.group(1))}.bn.{m.group(2)}",
    ),
    (
        r"decode_head\.mlahead\.head(\d)\.([03])\.weight",
        lambda m: f"decode_head.up_convs.{5 - int(m.group(1))}.{int(m.group(2)) // 3}.conv.weight",
    ),
    (
        r"decode_head\.mlahead\.head(\d)\.([14])\." + _SETR_OFFICIAL_BN,
        lambda m: f"decode_head.up_convs.{5 - int(m.group(1))}.{int(m.group(2)) // 3}.bn.{m.group(3)}",
    ),
    (r"decode_head\.cls\.(weight|bias)", r"decode_head.conv_seg.\1"),
    (r"decode_head\.norm\.(weight|bias)", r"decode_head.norm.\1"),
    # conv_k + syncbn_fc_k are one conv block; the last conv_k (after the last BatchNorm) is the classifier
    (r"decode_head\.conv_(\d)\.(weight|bias)", r"decode_head.official_conv.\1.\2"),
    (r"decode_head\.syncbn_fc_(\d)\." + _SETR_OFFICIAL_BN, r"decode_head.up_convs.\1.0.bn.\2"),
]


def convert_setr_official(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """An official SETR checkpoint (fudan-zvg/SETR, ``state_dict`` of its mmseg 0.x fork) → segzoo's
    ``setr-{naive,pup,mla}-*-official`` architectures.

    Exact rewrites, no approximation: the bias of each conv followed by a BatchNorm is folded into that
    BatchNorm's running mean (``BN(Wx + b) = BN'(Wx)`` with ``mean' = mean - b``, in training too); the MLA
    classifier's input channels are put in segzoo's branch order. Dropped: the unused ``conv_seg`` every mmseg 0.x
    head builds, and the auxiliary heads (training only, with layers segzoo's heads do not have).
    """
    skip = ("auxiliary_head.", "decode_head.conv_seg.")
    out = rename_keys(
        {k: v for k, v in state_dict.items() if not k.startswith(skip)}, _SETR_OFFICIAL_RULES, "official SETR"
    )
    convs = sorted(
        int(k.split(".")[2]) for k in out if k.startswith("decode_head.official_conv.") and k.endswith(".weight")
    )
    for index in convs:
        weight, bias = (
            out.pop(f"decode_head.official_conv.{index}.weight"),
            out.pop(f"decode_head.official_conv.{index}.bias"),
        )
        if index == convs[-1]:
            out["decode_head.conv_seg.weight"], out["decode_head.conv_seg.bias"] = weight, bias
            continue
        out[f"decode_head.up_convs.{index}.0.conv.weight"] = weight
        mean = f"decode_head.up_convs.{index}.0.bn.running_mean"
        if mean not in out:
            raise ConversionError(f"official SETR head: conv_{index} has no BatchNorm (syncbn_fc_{index}) after it")
        out[mean] = out[mean] - bias
    if "neck.mla.channel_proj.0.conv.weight" in out and "decode_head.conv_seg.weight" in out:
        weight = out["decode_head.conv_seg.weight"]  # [K, 4·C, k, k]: official branches p2..p5, segzoo's p5..p2
        out["decode_head.conv_seg.weight"] = torch.cat(weight.chunk(4, dim=1)[::-1], dim=1).contiguous()
    return out


CONVERTERS: dict[str, Callable[[Mapping[str, torch.Tensor]], StateDict]] = {
    "segzoo": dict,
    "transformers": convert_transformers_segformer,
    "mmseg": convert_mmseg,
    "segmenter-official": convert_segmenter_official,
    "segformer-official": convert_segformer_official,
    "setr-official": convert_setr_official,
    "timm": convert_timm_vit,
}


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the format of an (unwrapped) state dict from the keys it holds."""
    keys = list(state_dict)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if has("segformer.") or has("decode_head.linear_c.") or has("encoder.patch_embeddings."):
        return "transformers"
    if has("encoder.blocks.") and (has("decoder.") or has("encoder.head.")):
        return "segmenter-official"
    if has("backbone.blocks.") and (has("decode_head.syncbn_fc_0.") or has("decode_head.mlahead.")):
        return "setr-official"
    if has("backbone.layers.") or has("backbone.patch_embed.projection."):
        return "mmseg"
    if has("backbone.patch_embed1.") or has("patch_embed1.") or has("block1."):
        return "segformer-official" if not has("backbone.") or has("decode_head.linear_c1.") else "segzoo"
    if has("backbone.") and (has("decode_head.") or has("neck.")):
        return "segzoo"
    if has("blocks.") and has("patch_embed.proj."):
        return "timm"
    raise ConversionError(
        f"this checkpoint matches no known format (segzoo, transformers, mmseg, official Segmenter/SegFormer/SETR, "
        f"timm); "
        f"first keys seen: {keys[:8]}"
    )


def unwrap_checkpoint(obj: object) -> Mapping[str, torch.Tensor]:
    """The state dict inside a loaded checkpoint (``state_dict`` for mmseg/mmengine, ``model`` for Segmenter)."""
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model", "module"):
            if key in obj and isinstance(obj[key], Mapping):
                return unwrap_checkpoint(obj[key])
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        if tensors:
            return tensors
    raise ConversionError(f"no state dict found in this checkpoint (a {type(obj).__name__})")


# The first convolution of each encoder: the one weight that depends on the number of input channels.
INPUT_CONVS = (
    "backbone.patch_embed.proj.weight",
    "backbone.patch_embed1.proj.weight",
    "backbone.patch_embed.backbone.conv1.weight",
)


def adapt_to_model(state_dict: StateDict, model: torch.nn.Module, pos_embed_interp: str = "bicubic") -> StateDict:
    """Fit encoder tokens to ``model``: drop a class token the model does not have (mmseg SETR-MLA stores one it
    never uses), resample position embeddings stored for another grid, and adapt RGB weights of the first
    convolution to a model built with another ``in_chans`` (timm's rule: one channel sums R, G and B; more channels
    repeat R, G, B, R, ... scaled by 3 / in_chans, so extra channels that are zero leave the output unchanged up to
    that factor)."""
    from timm.layers import resample_abs_pos_embed
    from timm.models import adapt_input_conv

    sd = dict(state_dict)
    target = model.state_dict()
    for key in INPUT_CONVS:
        if key in sd and key in target and sd[key].shape[1] != target[key].shape[1]:
            log.info("%s: %d-channel weights adapted to %d input channels", key, sd[key].shape[1], target[key].shape[1])
            sd[key] = adapt_input_conv(target[key].shape[1], sd[key], base_chans=sd[key].shape[1])
    if "backbone.cls_token" in sd and "backbone.cls_token" not in target:
        sd.pop("backbone.cls_token")
        if "backbone.pos_embed" in sd:
            sd["backbone.pos_embed"] = sd["backbone.pos_embed"][:, 1:]
    if "backbone.pos_embed" in sd and "backbone.pos_embed" in target:
        src, dst = sd["backbone.pos_embed"], target["backbone.pos_embed"]
        if src.shape != dst.shape:
            prefix = model.backbone.num_prefix_tokens
            new_grid = model.backbone.patch_embed.grid_size
            old = int(round((src.shape[1] - prefix) ** 0.5))
            sd["backbone.pos_embed"] = resample_abs_pos_embed(
                src,
                new_size=list(new_grid),
                old_size=[old, old],
                num_prefix_tokens=prefix,
                interpolation=pos_embed_interp,
                antialias=False,
            )
    return sd
