"""Converters from published checkpoint formats to segzoo state dicts.

Each converter is a table of regex renames plus the few tensor surgeries a format needs (split or fused q-k-v,
transposed projections), and ends by checking that every source key was used: a key left over raises.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import torch

StateDict = dict[str, torch.Tensor]


class ConversionError(ValueError):
    """A checkpoint's keys do not match the format it was read as."""


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
    (r"segformer\.encoder\.patch_embeddings\.(\d)\.proj\.(weight|bias)",
     lambda m: f"backbone.patch_embed{_stage(m)}.proj.{m.group(2)}"),
    (r"segformer\.encoder\.patch_embeddings\.(\d)\.layer_norm\.(weight|bias)",
     lambda m: f"backbone.patch_embed{_stage(m)}.norm.{m.group(2)}"),
    (r"segformer\.encoder\.layer_norm\.(\d)\.(weight|bias)", lambda m: f"backbone.norm{_stage(m)}.{m.group(2)}"),
    (r"segformer\.encoder\.block\.(\d)\.(\d+)\.(.+)",
     lambda m: f"backbone.block{_stage(m)}.{m.group(2)}.{_block_part(m.group(3))}"),
    (r"decode_head\.linear_c\.(\d)\.proj\.(weight|bias)", lambda m: f"decode_head.linear_c{_stage(m)}.proj.{m.group(2)}"),
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
