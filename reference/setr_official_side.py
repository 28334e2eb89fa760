"""Record the module layout and the logits of the official SETR code (fudan-zvg/SETR), for
``tests/checkpoints/test_official_setr.py``. Run once, by hand, where the official code is checked out; never in
CI, and the official code is never a segzoo dependency.

The official code is an mmsegmentation 0.x fork that needs mmcv <= 1.2.7 with compiled ops to import as a package.
Only its SETR modules are loaded here, from their own files (``mmseg/models/backbones/{vit,vit_mla}.py``,
``mmseg/models/decode_heads/{decode_head,vit_up_head,vit_mla_head,vit_mla_auxi_head}.py``) under the package name
``setr_fork``; what they import from the rest of the fork is stood in for by the nearest real thing: the registries
by ``mmcv.utils.Registry``, ``build_loss`` by a module without parameters (no loss has any), ``torch._six`` (gone
from torch 2) by ``collections.abc``; ``mmseg.core`` and ``mmseg.ops`` are mmsegmentation 0.14.1's. Models are built
from the fork's released configs (``configs/SETR/*.py``, read with ``mmcv.Config``; SyncBN as BN), assembled under
the names mmseg 0.x's ``EncoderDecoder`` gives them (``backbone``, ``decode_head``, ``auxiliary_head.{i}``).

Outputs in ``--out``:
- ``layouts.json.gz``: for each released file's config, every key name and shape (the layout of the files on Google
  Drive);
- one recipe per tiny model (``<head>.json``, ``tests/support/official_weights.py``) and ``logits.npz``: what the
  official modules compute (backbone, head, then ``mmseg.ops.resize`` to the input as
  ``EncoderDecoder.encode_decode`` does) for a seeded input at the model's own crop (their patch embedding accepts no
  other size).

Environment used (2026-12): Python 3.11, torch 2.14.1 (CPU), mmcv 1.3.8 (no ops), mmsegmentation 0.14.1;
fudan-zvg/SETR at commit 1361561:

    python reference/setr_official_side.py --setr /tmp/zoo/setr --out tests/assets/official_setr
"""

from __future__ import annotations

import argparse
import collections.abc
import copy
import gzip
import importlib
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]

# The released files (fudan-zvg/SETR README) and their configs.
RELEASED = {
    "setr-naive-ade-official": "SETR_Naive_512x512_160k_ade20k_bs_16.py",
    "setr-mla-ade-bs8-official": "SETR_MLA_512x512_160k_ade20k_bs_8.py",
    "setr-pup-ade-official": "SETR_PUP_512x512_160k_ade20k_bs_16.py",
    "setr-naive-cityscapes-40k-official": "SETR_Naive_768x768_40k_cityscapes_bs_8.py",
    "setr-naive-cityscapes-official": "SETR_Naive_768x768_80k_cityscapes_bs_8.py",
    "setr-mla-cityscapes-40k-official": "SETR_MLA_768x768_40k_cityscapes_bs_8.py",
    "setr-mla-cityscapes-official": "SETR_MLA_768x768_80k_cityscapes_bs_8.py",
    "setr-pup-cityscapes-40k-official": "SETR_PUP_768x768_40k_cityscapes_bs_8.py",
    "setr-pup-cityscapes-official": "SETR_PUP_768x768_80k_cityscapes_bs_8.py",
    "setr-naive-b16-cityscapes-40k-official": "SETR_Naive_Base_768x768_40k_cityscapes_bs_8.py",
    "setr-naive-b16-cityscapes-official": "SETR_Naive_Base_768x768_80k_cityscapes_bs_8.py",
    "setr-naive-pascal-context-official": "SETR_Naive_480x480_80k_pascal_context_bs_16.py",
    "setr-mla-pascal-context-bs8-official": "SETR_MLA_480x480_80k_pascal_context_bs_8.py",
    "setr-mla-pascal-context-official": "SETR_MLA_480x480_80k_pascal_context_bs_16.py",
    "setr-pup-pascal-context-official": "SETR_PUP_480x480_80k_pascal_context_bs_16.py",
}

# Tiny models with the released topologies (24 blocks for the L configs, 12 for Naive-Base; the heads' own widths),
# narrow enough to record in seconds: config, crop, classes, ViT width, MLA widths, seed.
TINY = {
    "naive": dict(config="SETR_Naive_512x512_160k_ade20k_bs_16.py", seed=201),
    "pup": dict(config="SETR_PUP_512x512_160k_ade20k_bs_16.py", seed=202),
    "mla": dict(config="SETR_MLA_512x512_160k_ade20k_bs_8.py", seed=203),
    "naive-base": dict(config="SETR_Naive_Base_768x768_40k_cityscapes_bs_8.py", seed=204),
}
TINY_CROP, TINY_CLASSES, TINY_WIDTH, TINY_HEADS, TINY_MLA, TINY_MLA_HEAD = 48, 4, 32, 2, 16, 8

# How each parameter is drawn, by its official name (first match wins): BatchNorm statistics random so that their
# folding shows, every conv bias non-zero.
DRAWS = [
    (r".*running_var", "uniform", 0.5, 1.5),
    (r".*running_mean", "normal", 0.0, 0.3),
    (r".*num_batches_tracked", "zeros", 0.0, 0.0),
    (r"backbone\.(pos_embed|cls_token)", "normal", 0.0, 1.0),
]


def draw_of(name: str, shape: tuple[int, ...], module_types: dict[str, type]) -> tuple[str, float, float]:
    import re

    for pattern, kind, a, b in DRAWS:
        if re.fullmatch(pattern, name):
            return kind, a, b
    owner = module_types.get(name.rsplit(".", 1)[0])
    if owner is not None and issubclass(owner, (nn.LayerNorm, nn.BatchNorm2d)):
        return ("normal", 1.0, 0.2) if name.endswith(".weight") else ("normal", 0.0, 0.2)
    if name.endswith(".bias"):
        return "normal", 0.0, 0.2
    fan_in = int(np.prod(shape[1:]))
    gain = 0.5 if re.fullmatch(r"backbone\.blocks\.\d+\.(attn\.proj|mlp\.fc2)\.weight", name) else 1.0
    return "normal", 0.0, gain / fan_in**0.5


def install_fork(setr_root: Path):
    """Make the fork's SETR module files importable as ``setr_fork.models.*`` with stand-ins for the rest."""
    from mmcv.utils import Registry

    six = types.ModuleType("torch._six")
    six.container_abcs, six.string_classes, six.int_classes = collections.abc, (str, bytes), int
    sys.modules["torch._six"] = six

    def package(name: str, path: Path | None) -> types.ModuleType:
        module = types.ModuleType(name)
        module.__path__ = [str(path)] if path else []
        sys.modules[name] = module
        return module

    package("setr_fork", setr_root / "mmseg")
    package("setr_fork.models", setr_root / "mmseg" / "models")
    package("setr_fork.models.backbones", setr_root / "mmseg" / "models" / "backbones")
    package("setr_fork.models.decode_heads", setr_root / "mmseg" / "models" / "decode_heads")
    builder = types.ModuleType("setr_fork.models.builder")
    builder.BACKBONES, builder.HEADS = Registry("backbone"), Registry("head")
    builder.build_loss = lambda cfg: nn.Module()  # losses hold no parameters
    sys.modules["setr_fork.models.builder"] = builder
    losses = types.ModuleType("setr_fork.models.losses")
    losses.accuracy = lambda *a, **k: None
    sys.modules["setr_fork.models.losses"] = losses
    for name in (
        "backbones.vit",
        "backbones.vit_mla",
        "decode_heads.vit_up_head",
        "decode_heads.vit_mla_head",
        "decode_heads.vit_mla_auxi_head",
    ):
        importlib.import_module(f"setr_fork.models.{name}")
    return builder


def no_sync_bn(cfg):
    if isinstance(cfg, dict):
        return {
            k: (dict(v, type="BN") if k == "norm_cfg" and isinstance(v, dict) else no_sync_bn(v))
            for k, v in cfg.items()
        }
    if isinstance(cfg, list):
        return [no_sync_bn(v) for v in cfg]
    return cfg


class EncoderDecoder(nn.Module):
    """mmseg 0.x's attribute names and ``encode_decode``: backbone, decode head, resize to the input."""

    def __init__(self, backbone, decode_head, auxiliary_heads):
        super().__init__()
        self.backbone, self.decode_head = backbone, decode_head
        self.auxiliary_head = nn.ModuleList(auxiliary_heads)

    def forward(self, x):
        from mmseg.ops import resize

        out = self.decode_head(self.backbone(x))
        return resize(out, size=x.shape[2:], mode="bilinear", align_corners=self.decode_head.align_corners)


def build(builder, model_cfg: dict) -> EncoderDecoder:
    def make(registry, cfg):
        cfg = dict(cfg)
        return registry.get(cfg.pop("type"))(**cfg)

    model_cfg = no_sync_bn(model_cfg)
    aux = model_cfg.get("auxiliary_head") or []
    aux = aux if isinstance(aux, list) else [aux]
    return EncoderDecoder(
        make(builder.BACKBONES, model_cfg["backbone"]),
        make(builder.HEADS, model_cfg["decode_head"]),
        [make(builder.HEADS, a) for a in aux],
    )


def model_cfg_of(setr_root: Path, config: str) -> dict:
    from mmcv.utils import Config

    return Config.fromfile(str(setr_root / "configs" / "SETR" / config)).to_dict()["model"]


def tiny_cfg(model_cfg: dict) -> dict:
    """The released topology at a tiny width and crop (the heads' own hidden widths kept where they are fixed)."""
    cfg = copy.deepcopy(model_cfg)
    cfg["backbone"].update(img_size=TINY_CROP, embed_dim=TINY_WIDTH, num_heads=TINY_HEADS, num_classes=TINY_CLASSES)
    mla = cfg["backbone"]["type"] == "VIT_MLA"
    if mla:
        cfg["backbone"]["mla_channels"] = TINY_MLA
    for head in [cfg["decode_head"], *(cfg.get("auxiliary_head") or [])]:
        head.update(img_size=TINY_CROP, num_classes=TINY_CLASSES)
        if mla:
            head.update(
                mla_channels=TINY_MLA, mlahead_channels=TINY_MLA_HEAD
            ) if "mlahead_channels" in head else head.update(in_channels=TINY_MLA)
        else:
            head.update(in_channels=TINY_WIDTH, embed_dim=TINY_WIDTH)
    return cfg


def load_weights_module():
    spec = importlib.util.spec_from_file_location("official_weights", REPO / "tests" / "official_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--setr", type=Path, required=True, help="a checkout of fudan-zvg/SETR")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "assets" / "official_setr")
    parser.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git work tree")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    builder = install_fork(args.setr)
    weights = load_weights_module()
    args.out.mkdir(parents=True, exist_ok=True)

    layouts = {}
    for name, config in RELEASED.items():
        model = build(builder, model_cfg_of(args.setr, config))  # their code needs real tensors (Tensor.item())
        layouts[name] = {"config": config, "keys": {k: list(v.shape) for k, v in model.state_dict().items()}}
        print(name, len(layouts[name]["keys"]), "keys", flush=True)
    with gzip.open(args.out / "layouts.json.gz", "wt") as f:
        json.dump(layouts, f)

    logits = {}
    for head, spec in TINY.items():
        cfg = tiny_cfg(model_cfg_of(args.setr, spec["config"]))
        model = build(builder, cfg).eval()
        types_by_name = {n: type(m) for n, m in model.named_modules()}
        recipe = {
            "seed": spec["seed"],
            "keys": [
                [k, list(v.shape), *draw_of(k, tuple(v.shape), types_by_name)] for k, v in model.state_dict().items()
            ],
        }
        model.load_state_dict(weights.weights_from_recipe(recipe), strict=True)
        x = torch.randn(1, 3, TINY_CROP, TINY_CROP, generator=torch.Generator().manual_seed(spec["seed"]))
        with torch.no_grad():
            logits[head] = model(x).numpy()
        logits[f"{head}/input"] = x.numpy()
        (args.out / f"{head}.json").write_text(json.dumps({"config": spec["config"], "model": cfg, **recipe}))
        print(head, logits[head].shape, float(np.abs(logits[head]).mean()), flush=True)
    np.savez_compressed(args.out / "logits.npz", **logits)
    commit = subprocess.run(["git", "-C", str(args.setr), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit_id = args.commit or commit.stdout.strip() or "unknown (not a git checkout; pass --commit)"
    import mmcv
    import mmseg

    (args.out / "manifest.json").write_text(
        json.dumps(
            {
                "setr_commit": commit_id,
                "versions": {
                    "torch": torch.__version__,
                    "mmcv": mmcv.__version__,
                    "mmseg (core, ops)": mmseg.__version__,
                },
                "tiny": {
                    "crop": TINY_CROP,
                    "classes": TINY_CLASSES,
                    "width": TINY_WIDTH,
                    "heads": TINY_HEADS,
                    "mla_channels": TINY_MLA,
                    "mlahead_channels": TINY_MLA_HEAD,
                },
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
