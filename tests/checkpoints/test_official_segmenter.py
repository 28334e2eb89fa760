"""Official Segmenter files (rstrudel/segmenter) and the official evaluation protocol, against what the official code
itself predicts.

``reference/segmenter_official_side.py`` ran the official code (its model factory, its dataset pipeline on mmseg
0.14.1, ``segm.eval.miou.process_batch``) once on the test photos, with models filled from seeded recipes, and kept
the labels (tests/assets/official_segmenter). Here segzoo regenerates the same weights, writes them as the official
code saves them (``checkpoint.pth`` with ``["model"]``), loads that file and predicts with the row's protocol.
``predict`` must give the official labels on at least 99.99% of the pixels (random weights leave some near-ties).

The real Seg-T-Mask/16 is loaded as a bare file (``segzoo.load(path)``: architecture from the keys, protocol from
the table); the others keep the official layout at a narrower width (``widths`` in the manifest) and load through
their row (``segzoo.load(row, checkpoint=path)``). The photos are skimage's (tests/assets/photos/README.md) plus the
hubble photo turned upright (a tall image)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
from segzoo.checkpoints import CONVERTERS, detect_format
from segzoo.checkpoints._arch_from_weights import infer_architecture
from segzoo.checkpoints._bare import published_protocol

from support import ASSETS
from support.official_weights import meta_state_dict, weights_from_recipe

DATA = ASSETS / "official_segmenter"
PHOTOS = ASSETS / "photos"
MANIFEST = json.loads((DATA / "manifest.json").read_text())
AGREEMENT = 0.9999

# (recorded model, photo, single scale or multi-scale + flip): every protocol path once, within the CI budget (the
# 150-class multi-scale cases take a minute each here; all 48 recorded cases were compared once: reference/README.md).
CASES = [
    # the real T-Mask as a bare file; the uint8 upscale 427 -> 512
    pytest.param("seg_tiny_mask", "rocket.jpg", "ss", marks=pytest.mark.slow),
    ("seg_base_patch8", "chelsea.png", "ss"),  # patch 8
    ("seg_base_deit_mask", "chelsea.png", "ss"),  # the distillation token, DeiT statistics
    ("seg_large_mask_640", "chelsea.png", "ss"),  # window 640 above the 512 test scale: the float resize
    ("seg_large_mask_pascal_context", "hubble_deep_field.jpg:transposed", "ss"),  # 520 / 8x, window 480, stride 448,
    # 60 classes; a tall image shrunk to 596 x 520
    ("seg_large_mask_cityscapes", "rocket.jpg", "ss"),  # 1024 / 2x, window 768, stride 736, 19 classes
    # ratios 0.5 and 0.75 come back to the window as floats
    pytest.param("seg_large_mask_pascal_context", "chelsea.png", "ms", marks=pytest.mark.slow),
]


def photo(name: str) -> np.ndarray:
    file, _, turn = name.partition(":")
    image = np.asarray(Image.open(PHOTOS / file).convert("RGB"))
    return np.ascontiguousarray(image.transpose(1, 0, 2)) if turn == "transposed" else image


@pytest.fixture(scope="module")
def labels():
    return np.load(DATA / "labels.npz")


def official_file(key: str, folder: Path) -> tuple[Path, dict]:
    """The model's ``checkpoint.pth`` as the official training script saves it (``segm/train.py``)."""
    recipe = json.loads((DATA / f"{key}.json").read_text())
    path = folder / key / "checkpoint.pth"
    path.parent.mkdir()
    torch.save({"model": weights_from_recipe(recipe), "n_cls": recipe["n_cls"], "epoch": 63}, path)
    return path, recipe


def load_official(key: str, folder: Path) -> torch.nn.Module:
    path, recipe = official_file(key, folder)
    recorded = MANIFEST["models"][key]
    if recorded["widths"] is None:
        return segzoo.load(path)
    variant = recipe["variant"]
    encoder = dict(
        embed_dim=variant["d_model"],
        depth=variant["n_layers"],
        num_heads=variant["n_heads"],
        out_indices=(variant["n_layers"] - 1,),
    )
    decoder = {} if variant["decoder"]["name"] == "linear" else dict(num_heads=variant["d_model"] // 64)
    return segzoo.load(recorded["row"], checkpoint=path, encoder_args=encoder, decoder_args=decoder)


@pytest.mark.parametrize(("key", "name", "mode"), CASES)
def test_predict_equals_the_official_code(key, name, mode, labels, tmp_path):
    model = load_official(key, tmp_path)
    assert model.pretrained_cfg["name"] == MANIFEST["models"][key]["row"]
    predicted = model.predict(photo(name), tta=mode == "ms")
    official = labels[f"{key}/{name}/{mode}"]
    assert predicted.shape == official.shape
    assert (predicted == official).mean() >= AGREEMENT


def test_a_bare_official_file_gets_its_architecture_and_protocol(tmp_path):
    model = load_official("seg_tiny_mask", tmp_path)
    assert model.arch_name == "segmenter-t16-mask" and model.num_classes == 150
    assert model.backbone.norm.eps == 1e-5 and model.backbone.pos_embed_interp == "bilinear" and model.unpad == "crop"
    assert model.eval_protocol == segzoo.get_pretrained_cfg("segmenter-t16-mask-ade-official").eval


LAYOUTS = json.loads(gzip.open(DATA / "layouts.json.gz", "rt").read())


@pytest.mark.parametrize("row", list(LAYOUTS))
def test_each_published_file_is_recognised_with_its_protocol(row):
    """The nine published models' key-and-shape layouts, as the official factory builds them at full size (B/8,
    DeiT-B distilled with its distillation token and second classifier, L at 640, Pascal Context at 480 with 60
    classes, Cityscapes at 768 with 19): what a bare ``segzoo.load(path)`` of each file decides."""
    state = meta_state_dict(LAYOUTS[row]["keys"])
    cfg = segzoo.get_pretrained_cfg(row)
    fmt = detect_format(state)
    match = infer_architecture(CONVERTERS[fmt](state), fmt=fmt)
    assert fmt == cfg.format == "segmenter-official"
    assert (match.arch, match.num_classes, match.img_size) == (cfg.arch, cfg.num_classes, cfg.crop_size[0])
    assert ("encoder.dist_token" in state) == ("deit" in cfg.arch)
    assert published_protocol(fmt, match.arch, match.num_classes, match.img_size) == cfg.to_dict()
