"""Record the labels the official Segmenter code (rstrudel/segmenter) predicts on the test photos, for
``tests/checkpoints/test_official_segmenter.py``. Run once, by hand, where the official code is checked out; never
in CI, and the official code is never a segzoo dependency.

It also records the key-and-shape layout of the nine published models, built at full size by the official factory
(``layouts.json.gz``), from which tests check that segzoo recognises each kind of official file.

What runs is the official code itself: ``segm.model.factory.create_segmenter`` builds each model from a variant
(``net_kwargs`` as ``segm/train.py`` writes them into ``variant.yml``, from ``segm/config.yml``), filled with seeded
random weights (``tests/support/official_weights.py``; no ImageNet weights are loaded); the test pipeline is the
official dataset code's (``BaseMMSeg.update_default_config`` and ``set_multiscale_mode`` applied to ``segm/data/config/
<dataset>.py``, run by mmsegmentation 0.14.1's ``Compose``, the versions ``requirements.txt`` pins; ``mmcv`` 1.3.8
without compiled ops), a sample collated by torch's ``default_collate`` as the official ``Loader`` does, and
``segm.eval.miou.process_batch`` (``segm.model.utils.inference``: short side resized to the window, sliding windows,
merge, logits resized to the original size, mean of the softmax over scales and flips) with ``miou.py``'s defaults
(image size from ``segm/config.yml``, window = the variant's crop, stride = crop - 32).

Every recorded model keeps the official layout; some are narrower than the published ones (``widths``) so that the
tests stay fast: the protocol does not depend on the width. Outputs in ``--out``: one recipe per model (``<key>.json``:
the variant, the seed and every parameter's name, shape and draw), ``labels.npz`` (uint8 label maps, ``<key>/<photo>/
<ss|ms>``) and ``manifest.json``.

Environment used (2026-12): Python 3.11, torch 2.14.1 (CPU), timm 0.4.12, mmcv 1.3.8 (no ops), mmsegmentation
0.14.1, einops, click, python-hostlist; rstrudel/segmenter at commit 20d1bfa:

    python reference/segmenter_official_side.py --segmenter /tmp/zoo/segmenter --out tests/assets/official_segmenter
"""

from __future__ import annotations

import argparse
import copy
import gzip
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ["rocket.jpg", "chelsea.png", "hubble_deep_field.jpg"]
PORTRAIT = "hubble_deep_field.jpg:transposed"  # the hubble photo turned upright (a tall image), stored as PNG

# key -> the official variant it stands for, its checkpoint row in segzoo, and the widths used here.
MODELS = {
    "seg_tiny_mask": dict(
        row="segmenter-t16-mask-ade-official",
        dataset="ade20k",
        backbone="vit_tiny_patch16_384",
        decoder="mask_transformer",
        crop=512,
        n_cls=150,
        widths=None,
        seed=101,
    ),
    "seg_base_patch8": dict(
        row="segmenter-b8-linear-ade-official",
        dataset="ade20k",
        backbone="vit_base_patch8_384",
        decoder="linear",
        crop=512,
        n_cls=150,
        widths=dict(d_model=64, n_heads=2, n_layers=2),
        seed=102,
    ),
    "seg_base_deit_mask": dict(
        row="segmenter-deit-b16-mask-ade-official",
        dataset="ade20k",
        backbone="deit_base_distilled_patch16_384",
        decoder="mask_transformer",
        crop=512,
        n_cls=150,
        widths=dict(d_model=128, n_heads=2, n_layers=2),
        seed=103,
    ),
    "seg_large_mask_640": dict(
        row="segmenter-l16-mask-ade-official",
        dataset="ade20k",
        backbone="vit_large_patch16_384",
        decoder="mask_transformer",
        crop=640,
        n_cls=150,
        widths=dict(d_model=64, n_heads=2, n_layers=2),
        seed=104,
    ),
    "seg_large_mask_pascal_context": dict(
        row="segmenter-l16-mask-pascal-context-official",
        dataset="pascal_context",
        backbone="vit_large_patch16_384",
        decoder="mask_transformer",
        crop=480,
        n_cls=60,
        widths=dict(d_model=64, n_heads=2, n_layers=2),
        seed=105,
    ),
    "seg_large_mask_cityscapes": dict(
        row="segmenter-l16-mask-cityscapes-official",
        dataset="cityscapes",
        backbone="vit_large_patch16_384",
        decoder="mask_transformer",
        crop=768,
        n_cls=19,
        widths=dict(d_model=64, n_heads=2, n_layers=2),
        seed=106,
    ),
}

# The nine published models (README), for their key-and-shape layouts at full size: backbone, decoder, crop, classes.
PUBLISHED = {
    "segmenter-t16-mask-ade-official": ("vit_tiny_patch16_384", "mask_transformer", 512, 150),
    "segmenter-s16-mask-ade-official": ("vit_small_patch16_384", "mask_transformer", 512, 150),
    "segmenter-b16-mask-ade-official": ("vit_base_patch16_384", "mask_transformer", 512, 150),
    "segmenter-b8-linear-ade-official": ("vit_base_patch8_384", "linear", 512, 150),
    "segmenter-l16-mask-ade-official": ("vit_large_patch16_384", "mask_transformer", 640, 150),
    "segmenter-deit-b16-linear-ade-official": ("deit_base_distilled_patch16_384", "linear", 512, 150),
    "segmenter-deit-b16-mask-ade-official": ("deit_base_distilled_patch16_384", "mask_transformer", 512, 150),
    "segmenter-l16-mask-pascal-context-official": ("vit_large_patch16_384", "mask_transformer", 480, 60),
    "segmenter-l16-mask-cityscapes-official": ("vit_large_patch16_384", "mask_transformer", 768, 19),
}

# How each parameter is drawn, by its official name (first match wins): large enough that every part of the
# network (position embeddings, both token kinds, the mask decoder's projections and norms) moves the labels.
DRAWS = [
    (r".*norm\d?\.weight|.*(decoder_norm|mask_norm)\.weight", "normal", 1.0, 0.1),
    (r".*norm\d?\.bias|.*(decoder_norm|mask_norm)\.bias", "normal", 0.0, 0.1),
    (r"encoder\.(pos_embed|cls_token|dist_token)", "normal", 0.0, 1.0),
    (r"decoder\.cls_emb", "normal", 0.0, 1.0),
    (r"encoder\.head(_dist)?\..*", "normal", 0.0, 0.02),  # ImageNet classifiers, unused by segmentation
    (r".*\.bias", "normal", 0.0, 0.1),
]


def draw_of(name: str, shape: tuple[int, ...]) -> tuple[str, float, float]:
    for pattern, kind, a, b in DRAWS:
        if re.fullmatch(pattern, name):
            return kind, a, b
    if name in ("decoder.proj_patch", "decoder.proj_classes"):  # raw [D, D] matrices used as x @ P
        return "normal", 0.0, shape[0] ** -0.5
    fan_in = int(np.prod(shape[1:]))
    gain = 0.5 if re.fullmatch(r".*blocks\.\d+\.(attn\.proj|mlp\.fc2)\.weight", name) else 1.0  # residual writers
    return "normal", 0.0, gain / fan_in**0.5


def recipe_of(state_dict: dict[str, torch.Tensor], seed: int) -> dict:
    keys = [[name, list(t.shape), *draw_of(name, tuple(t.shape))] for name, t in state_dict.items()]
    return {"seed": seed, "keys": keys}


def load_weights_module():
    spec = importlib.util.spec_from_file_location("official_weights", REPO / "tests" / "official_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def variant_of(spec: dict, cfg: dict) -> dict:
    """``net_kwargs`` as ``segm/train.py`` builds them (dropout 0.0 and drop path 0.1 are its CLI defaults)."""
    net = copy.deepcopy(cfg["model"][spec["backbone"]])
    net.update(spec["widths"] or {})
    decoder_key = "mask_transformer" if "mask_transformer" in spec["decoder"] else spec["decoder"]
    net.update(
        image_size=(spec["crop"], spec["crop"]),
        backbone=spec["backbone"],
        dropout=0.0,
        drop_path_rate=0.1,
        decoder=dict(cfg["decoder"][decoder_key], name=spec["decoder"]),
        n_cls=spec["n_cls"],
    )
    net.setdefault("distilled", False)
    return net


def build_official(spec: dict, cfg: dict, factory, vit_module, weights_module, torch_home: Path):
    net = variant_of(spec, cfg)
    if net["backbone"] == "vit_base_patch8_384":
        write_patch8_weights(net, vit_module, torch_home)
    model = factory.create_segmenter(copy.deepcopy(net))
    recipe = recipe_of(model.state_dict(), spec["seed"])
    model.load_state_dict(weights_module.weights_from_recipe(recipe), strict=True)
    return model.eval(), net, recipe


def record_layouts(cfg: dict, factory, vit_module, torch_home: Path, out: Path) -> None:
    """Every key and shape of the nine published models, built at full size by the official factory."""
    layouts = {}
    for row, (backbone, decoder, crop, n_cls) in PUBLISHED.items():
        spec = dict(backbone=backbone, decoder=decoder, crop=crop, n_cls=n_cls, widths=None)
        net = variant_of(spec, cfg)
        if backbone == "vit_base_patch8_384":
            write_patch8_weights(net, vit_module, torch_home)
        model = factory.create_segmenter(copy.deepcopy(net))
        layouts[row] = {"variant": net, "keys": {k: list(v.shape) for k, v in model.state_dict().items()}}
        print(row, len(layouts[row]["keys"]), "keys", flush=True)
        del model
    with gzip.open(out / "layouts.json.gz", "wt") as f:
        json.dump(layouts, f)


def write_patch8_weights(net: dict, vit_module, torch_home: Path) -> None:
    """``factory.create_vit`` reads ViT-B/8's ImageNet weights from ``$TORCH_HOME``: give it a file of the right
    shapes (the weights are replaced afterwards)."""
    vit_args = {k: v for k, v in net.items() if k not in ("backbone", "normalization", "decoder", "n_cls")}
    vit = vit_module.VisionTransformer(**vit_args, n_cls=1000, d_ff=4 * net["d_model"])
    (torch_home / "hub" / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(vit.state_dict(), torch_home / "hub" / "checkpoints" / "vit_base_patch8_384.pth")


def pipeline_for(spec: dict, cfg: dict, multiscale: bool, segm_root: Path):
    """The official validation pipeline of the variant's dataset, as ``BaseMMSeg`` sets it up."""
    import segm.data.base as base
    from mmcv.utils import Config
    from mmseg.datasets.pipelines import Compose
    from segm.data.utils import STATS

    dataset_cfg = cfg["dataset"][spec["dataset"]]
    holder = base.BaseMMSeg.__new__(base.BaseMMSeg)
    holder.image_size = dataset_cfg["im_size"]  # miou.py: dataset_cfg.get("im_size", ...)
    holder.crop_size = dataset_cfg["im_size"]  # miou.py passes crop_size=im_size
    holder.split = "val"
    holder.normalization = {
        k: tuple(np.round(255 * np.array(v), 2)) for k, v in STATS[variant_of(spec, cfg)["normalization"]].items()
    }
    config = Config.fromfile(str(segm_root / "segm" / "data" / "config" / f"{spec['dataset']}.py"))
    holder.ratio = config.max_ratio
    holder.config = base.BaseMMSeg.update_default_config(holder, config)
    if multiscale:
        original, base.build_dataset = base.build_dataset, lambda _: None
        try:
            base.BaseMMSeg.set_multiscale_mode(holder)
        finally:
            base.build_dataset = original
    return holder, Compose(holder.config.data.val.pipeline)


def predict_official(model, holder, pipeline, photo: Path, window_size: int, window_stride: int) -> np.ndarray:
    import segm.data.base as base
    from segm.eval.miou import process_batch

    holder.dataset = [pipeline(dict(img_info=dict(filename=str(photo)), img_prefix=None))]
    holder.colors = {}
    batch = torch.utils.data.default_collate([base.BaseMMSeg.__getitem__(holder, 0)])
    _, _, labels = process_batch(model, batch, window_size, window_stride, 4)
    return labels.numpy().astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--segmenter", type=Path, required=True, help="a checkout of rstrudel/segmenter")
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "assets" / "official_segmenter")
    parser.add_argument("--photos", type=Path, default=REPO / "tests" / "assets" / "photos")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--modes", nargs="+", default=["ss", "ms"], choices=["ss", "ms"])
    parser.add_argument("--layouts-only", action="store_true", help="only the nine published models' layouts")
    parser.add_argument("--commit", default=None, help="the checkout's commit, when it is not a git work tree")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    sys.path.insert(0, str(args.segmenter))
    workdir = Path(tempfile.mkdtemp(prefix="segmenter-official-"))
    os.environ["TORCH_HOME"] = str(workdir / "torch")
    os.environ.setdefault("DATASET", str(workdir / "no-datasets"))  # read by the dataset classes only

    import segm.model.factory as factory
    import segm.model.vit as vit_module
    import segm.utils.torch as ptu
    from segm import config

    ptu.set_gpu_mode(False)
    factory.load_custom_pretrained = factory.load_pretrained = lambda *a, **k: None  # random weights, no download
    weights_module = load_weights_module()
    cfg = config.load_config()
    args.out.mkdir(parents=True, exist_ok=True)
    record_layouts(cfg, factory, vit_module, workdir / "torch", args.out)
    if args.layouts_only:
        return
    portrait = workdir / "hubble_portrait.png"
    cv2.imwrite(str(portrait), np.ascontiguousarray(cv2.imread(str(args.photos / PHOTOS[2])).transpose(1, 0, 2)))
    photos = {name: args.photos / name for name in PHOTOS} | {PORTRAIT: portrait}

    labels, manifest_models = {}, {}
    for key in args.models:
        spec = MODELS[key]
        model, net, recipe = build_official(spec, cfg, factory, vit_module, weights_module, workdir / "torch")
        window_size = net["image_size"][0]  # miou.py: variant dataset_kwargs crop_size
        window_stride = window_size - 32  # miou.py's default
        (args.out / f"{key}.json").write_text(json.dumps({"variant": net, "n_cls": spec["n_cls"], **recipe}))
        for mode in args.modes:
            holder, pipeline = pipeline_for(spec, cfg, mode == "ms", args.segmenter)
            for name, path in photos.items():
                with torch.no_grad():
                    labels[f"{key}/{name}/{mode}"] = predict_official(
                        model, holder, pipeline, path, window_size, window_stride
                    )
                print(key, mode, name, labels[f"{key}/{name}/{mode}"].shape, flush=True)
        dataset_cfg = cfg["dataset"][spec["dataset"]]
        manifest_models[key] = {
            "row": spec["row"],
            "dataset": spec["dataset"],
            "im_size": dataset_cfg["im_size"],
            "max_ratio": holder.ratio,
            "window_size": window_size,
            "window_stride": window_stride,
            "normalization": net["normalization"],
            "mean": list(holder.normalization["mean"]),
            "std": list(holder.normalization["std"]),
            "widths": spec["widths"],
        }
    np.savez_compressed(args.out / "labels.npz", **labels)
    commit = subprocess.run(["git", "-C", str(args.segmenter), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit_id = args.commit or commit.stdout.strip() or "unknown (not a git checkout; pass --commit)"
    import mmcv
    import mmseg
    import timm

    manifest = {
        "segmenter_commit": commit_id,
        "versions": {
            "torch": torch.__version__,
            "timm": timm.__version__,
            "mmcv": mmcv.__version__,
            "mmseg": mmseg.__version__,
            "numpy": np.__version__,
        },
        "photos": PHOTOS + [PORTRAIT],
        "how": "segm.eval.miou.process_batch on a default_collate'd sample of the official val pipeline "
        "(see reference/segmenter_official_side.py); ss: single scale, ms: --multiscale (ratios 0.5-1.75 "
        "and flips)",
        "models": manifest_models,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1))


if __name__ == "__main__":
    main()
