"""Print the README's tables: architectures (parameter counts on the meta device, 150 classes, 512 crop) and the
checkpoints of checkpoints.yaml.

Usage: python scripts/arch_table.py   (tests/test_readme.py checks the README holds its output)
"""

import torch

import segzoo
from segzoo.models._registry import ARCHS


def arch_table() -> str:
    rows = ["| architecture | family | encoder | decoder | aux heads | params (M) |", "|---|---|---|---|---|---|"]
    for name in segzoo.list_models():
        arch = ARCHS[name]
        model = segzoo.create_model(name, num_classes=150, device=torch.device("meta"))
        params = sum(p.numel() for p in model.parameters()) / 1e6
        encoder = f"{arch.encoder} " + ",".join(
            f"{k}={v}"
            for k, v in arch.encoder_args.items()
            if k in ("embed_dims", "embed_dim", "depth", "depths", "patch_size")
        ).replace(" ", "")
        if arch.encoder == "timm_vit":
            encoder = f"any timm ViT (`encoder=`; default `{arch.encoder_args['model_name']}`)"
        rows.append(f"| `{name}` | {arch.family} | {encoder} | {arch.decoder} | {len(arch.aux_heads)} | {params:.2f} |")
    return "\n".join(rows)


# Who publishes each format's files, for the table's source column (Hub files show their repository).
PUBLISHERS = {
    "mmseg": "mmsegmentation",
    "segmenter-official": "rstrudel/segmenter",
    "setr-official": "fudan-zvg/SETR (Google Drive: download by hand)",
}


def test_pipeline(ev) -> str:
    """A row's evaluation protocol in a few words: keep-ratio test scale (long×short) and the resizes after it,
    inference mode, and the multi-scale rule of its MS score."""
    resize = f"{ev.test_scale[0]}×{ev.test_scale[1]}" if ev.test_scale else "none"
    if ev.size_divisor:
        resize += f", /{ev.size_divisor}"
    if ev.min_short_side:
        resize += f", short side ≥ {ev.min_short_side} (float)"
    mode = f"slide {ev.crop[0]}/{ev.stride[0]}" if ev.mode == "slide" else "whole"
    return f"{resize}; {mode}; MS {ev.tta_style}"


def checkpoint_table() -> str:
    from segzoo.checkpoints._table import get_pretrained_cfg, list_pretrained

    rows = [
        "| checkpoint | architecture | dataset | crop | test pipeline | mIoU SS / MS (publisher) | source | license |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in list_pretrained():
        cfg = get_pretrained_cfg(name)
        scores = cfg.metrics.get("publisher") or cfg.metrics.get("paper") or {}
        miou = f"{scores.get('miou_ss', '-')} / {scores.get('miou_ms', '-')}"
        source = cfg.source.hf_hub_id or PUBLISHERS[cfg.format]
        rows.append(
            f"| `{name}` | `{cfg.arch}` | {cfg.dataset} | {cfg.crop_size[0]}×{cfg.crop_size[1]} | "
            f"{test_pipeline(cfg.eval)} | {miou} | {source} | {cfg.license} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(arch_table())
    print()
    print(checkpoint_table())
