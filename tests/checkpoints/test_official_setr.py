"""Official SETR files (fudan-zvg/SETR, Google Drive only): recognised from their own module layout and loaded into
the ``setr-*-official`` architectures, which compute what the official code computes.

The layouts (every key and shape of the 15 released files) and the logits of tiny official models were recorded by
``reference/setr_official_side.py`` from the official code's own module definitions (tests/assets/official_setr)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

import segzoo
from segzoo.checkpoints import CONVERTERS, detect_format
from segzoo.checkpoints._arch_from_weights import infer_architecture
from segzoo.checkpoints._bare import published_protocol

from support import ASSETS
from support.official_weights import meta_state_dict, weights_from_recipe

DATA = ASSETS / "official_setr"
LAYOUTS = json.loads(gzip.open(DATA / "layouts.json.gz", "rt").read())
TINY = json.loads((DATA / "manifest.json").read_text())["tiny"]
ARCHS = {
    "naive": "setr-naive-l16-official",
    "pup": "setr-pup-l16-official",
    "mla": "setr-mla-l16-official",
    "naive-base": "setr-naive-b16-official",
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_released_file_layout_gives_its_architecture_and_protocol(name):
    """What a bare ``segzoo.load(path)`` decides for each released file: format, architecture, classes, crop, and
    the protocol of its table row (rows differing only in training iterations share one)."""
    state = meta_state_dict(LAYOUTS[name]["keys"])
    fmt = detect_format(state)
    match = infer_architecture(CONVERTERS[fmt](state), fmt=fmt)
    row = segzoo.get_pretrained_cfg(name)
    assert fmt == row.format == "setr-official"
    assert (match.arch, match.num_classes, match.img_size) == (row.arch, row.num_classes, row.crop_size[0])
    protocol = published_protocol(fmt, match.arch, match.num_classes, match.img_size)
    expected = row.to_dict()
    for key in ("eval", "crop_size", "mean", "std", "dataset", "class_names"):
        assert protocol[key] == expected[key], key


def test_the_official_layout_is_not_mmsegs():
    """A file in mmseg's names is never taken for an official one, nor the reverse: the heads differ."""
    naive = LAYOUTS["setr-naive-ade-official"]["keys"]
    assert "decode_head.conv_0.weight" in naive and "decode_head.syncbn_fc_0.running_mean" in naive
    assert not any(k.startswith("decode_head.up_convs.") for k in naive)
    mla = LAYOUTS["setr-mla-ade-bs8-official"]["keys"]
    assert mla["decode_head.cls.weight"] == [150, 512, 3, 3]  # a 3×3 classifier (mmseg: 1×1 conv_seg)
    state = CONVERTERS["setr-official"](meta_state_dict(naive))
    assert not any(k.startswith("auxiliary_head.") for k in state)  # training-only heads of another design


@pytest.mark.parametrize("head", list(ARCHS))
def test_logits_equal_the_official_modules(head, tmp_path):
    """Tiny official models (the released topologies at width 32, crop 48) filled from a seeded recipe: segzoo's
    logits after conversion (conv biases folded into the BatchNorms, the MLA classifier's branches reordered) equal
    the official modules' own."""
    recipe = json.loads((DATA / f"{head}.json").read_text())
    recorded = np.load(DATA / "logits.npz")
    torch.save({"state_dict": weights_from_recipe(recipe), "meta": {}}, tmp_path / "setr.pth")
    args = dict(img_size=TINY["crop"], encoder_args=dict(embed_dim=TINY["width"], num_heads=TINY["heads"]))
    if head == "mla":
        args |= dict(
            neck_args=dict(out_channels=TINY["mla_channels"]), decoder_args=dict(mla_channels=TINY["mlahead_channels"])
        )
    model = segzoo.load(ARCHS[head], checkpoint=tmp_path / "setr.pth", **args)
    with torch.no_grad():
        logits = model(torch.from_numpy(recorded[f"{head}/input"])).numpy()
    np.testing.assert_allclose(logits, recorded[head], atol=1e-4, rtol=0)


def test_mmsegs_head_numerics_differ_from_the_official_ones(tmp_path):
    """The official rows exist because mmseg's heads compute something else from the same weights: loaded into
    mmseg's Naive head (two ×4 upsamplings instead of one ×16), the official tiny Naive model's logits move."""
    recipe = json.loads((DATA / "naive.json").read_text())
    recorded = np.load(DATA / "logits.npz")
    torch.save({"state_dict": weights_from_recipe(recipe), "meta": {}}, tmp_path / "setr.pth")
    model = segzoo.load(
        "setr-naive-l16-official",
        checkpoint=tmp_path / "setr.pth",
        img_size=TINY["crop"],
        encoder_args=dict(embed_dim=TINY["width"], num_heads=TINY["heads"]),
        decoder_args=dict(up_scale=4),
    )
    with torch.no_grad():
        logits = model(torch.from_numpy(recorded["naive/input"])).numpy()
    assert np.abs(logits - recorded["naive"]).max() > 1e-2


def test_a_released_file_takes_the_tables_protocol_and_class_names_not_its_meta():
    """The released files hold their mmseg 0.x ``meta`` (config text, ``CLASSES``); the fork's Pascal Context names
    are in another order than the label ids, so a bare file takes the table's protocol and names."""
    from segzoo.checkpoints._arch_from_weights import ArchMatch
    from segzoo.checkpoints._bare import _bare_file_cfg

    voc_first = ("background", "aeroplane", "bicycle", "bird") + tuple(f"class {i}" for i in range(56))
    match = ArchMatch(
        arch="setr-pup-l16-official", num_classes=60, img_size=480, encoder="a ViT-L/16 encoder", class_names=voc_first
    )
    cfg = _bare_file_cfg("setr-official", match)
    expected = segzoo.get_pretrained_cfg("setr-pup-pascal-context-official")
    assert cfg["name"] == expected.name and cfg["class_names"] == list(expected.class_names)
    assert cfg["class_names"][:3] == ["background", "aeroplane", "bag"]
