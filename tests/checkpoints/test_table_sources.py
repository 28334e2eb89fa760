"""checkpoints.yaml against the other places that state the same facts, so that they cannot drift apart again: the
training recipes in configs/ (as they resolve: tests/assets/resolved_configs/), the head of each file whose layout is
recorded from its publisher's code (tests/assets/official_*), and the official Segmenter code's own settings
(recorded by reference/segmenter_official_side.py)."""

from __future__ import annotations

import gzip
import json

import pytest
import yaml

import segzoo
from segzoo._datasets import DATASETS
from segzoo._preprocessing import keep_ratio_size

from support import ASSETS

DATA = ASSETS
SNAPSHOTS = DATA / "resolved_configs"
DATAMODULES = {"segzoo.data.ADE20KDataModule": "ade20k", "segzoo.data.CityscapesDataModule": "cityscapes"}
CITYSCAPES_IMAGE = (1024, 2048)  # every Cityscapes image


def recipe_of(name: str) -> dict | None:
    cfg = segzoo.get_pretrained_cfg(name)
    path = SNAPSHOTS / segzoo.get_arch(cfg.arch).family / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else None


WITH_RECIPE = [name for name in segzoo.list_pretrained() if recipe_of(name) is not None]


def test_the_paper_checkpoints_have_recipes():
    assert len(WITH_RECIPE) >= 40 and "segmenter-l16-mask-ade" in WITH_RECIPE


@pytest.mark.parametrize("name", WITH_RECIPE)
def test_row_and_recipe_state_the_same_model_data_and_test_pipeline(name):
    cfg, recipe = segzoo.get_pretrained_cfg(name), recipe_of(name)
    model, data = recipe["model"], recipe["data"]["init_args"]
    dataset = DATAMODULES[recipe["data"]["class_path"]]
    crop = data["crop_size"]
    assert model["model"] == cfg.arch
    assert dataset == cfg.dataset and len(DATASETS[dataset][0]) == cfg.num_classes
    assert tuple(crop if isinstance(crop, list) else [crop, crop]) == cfg.crop_size
    assert (tuple(data["mean"]), tuple(data["std"])) == (cfg.mean, cfg.std)
    assert data["size_divisor"] == cfg.eval.size_divisor
    assert model["eval_mode"] == cfg.eval.mode
    if cfg.eval.mode == "slide":
        assert (model["eval_crop"], model["eval_stride"]) == (cfg.eval.crop[0], cfg.eval.stride[0])
    if dataset == "cityscapes":  # one image size: the two test resizes must give the same input
        recipe_size = keep_ratio_size(*CITYSCAPES_IMAGE, data["eval_scale"]) if data["eval_scale"] else CITYSCAPES_IMAGE
        assert recipe_size == keep_ratio_size(*CITYSCAPES_IMAGE, cfg.eval.test_scale)
    else:
        assert tuple(data["eval_scale"]) == cfg.eval.test_scale


def test_the_corrected_facts():
    """The audit's corrections: what scored each published number, and what each file holds."""
    large = segzoo.get_pretrained_cfg("segmenter-l16-mask-ade")
    assert large.eval.test_scale == (2048, 640)  # mmseg 0.x's config scored 52.16 / 53.65 (1.x's is 2560x640)
    assert segzoo.get_pretrained_cfg("segmenter-l16-mask-ade-retrained").eval.test_scale == (2560, 640)
    for size in range(6):  # mmseg's mit2mmseg.py keeps no classifier
        mit = segzoo.get_pretrained_cfg(f"mit-b{size}-mmseg")
        assert mit.num_classes is None and "no head" in mit.notes
    assert segzoo.get_pretrained_cfg("setr-pup-ade").metrics["paper"] == {"miou_ss": 48.58, "miou_ms": 50.09}
    assert segzoo.get_pretrained_cfg("setr-pup-ade-official").metrics["publisher"]["miou_ss"] == 48.62
    assert "paper" not in segzoo.get_pretrained_cfg("setr-mla-ade-bs8").metrics  # the paper has no batch-8 MLA


def test_a_null_number_of_classes_means_no_classifier_in_the_notes():
    for name in segzoo.list_pretrained(kind="encoder"):
        cfg = segzoo.get_pretrained_cfg(name)
        assert (cfg.num_classes is None) == ("no head" in (cfg.notes or "")), name


SETR_LAYOUTS = json.loads(gzip.open(DATA / "official_setr" / "layouts.json.gz", "rt").read())


@pytest.mark.parametrize("name", list(SETR_LAYOUTS))
def test_official_setr_rows_have_the_classes_and_crop_of_their_file(name):
    keys, cfg = SETR_LAYOUTS[name]["keys"], segzoo.get_pretrained_cfg(name)
    classifier = keys.get("decode_head.cls.weight") or keys[f"decode_head.conv_{1 if 'naive' in name else 4}.weight"]
    grid = (keys["backbone.pos_embed"][1] - 1) ** 0.5
    assert (classifier[0], grid * 16) == (cfg.num_classes, cfg.crop_size[0])


SEGMENTER = DATA / "official_segmenter"
SEGMENTER_MANIFEST = json.loads((SEGMENTER / "manifest.json").read_text())


@pytest.mark.parametrize("key", list(SEGMENTER_MANIFEST["models"]))
def test_official_segmenter_rows_state_what_the_official_code_does(key):
    """Classes, crop, normalisation, test scale, window and stride of each recorded variant's row equal what the
    official code used (its variant, segm/config.yml, segm/data/config/*.py, miou.py's defaults)."""
    recorded = SEGMENTER_MANIFEST["models"][key]
    recipe = json.loads((SEGMENTER / f"{key}.json").read_text())
    cfg = segzoo.get_pretrained_cfg(recorded["row"])
    assert cfg.num_classes == recipe["n_cls"] and list(cfg.crop_size) == recipe["variant"]["image_size"]
    assert (list(cfg.mean), list(cfg.std)) == (recorded["mean"], recorded["std"])
    assert cfg.eval.test_scale == (recorded["max_ratio"] * recorded["im_size"], recorded["im_size"])
    assert cfg.eval.crop[0] == cfg.eval.min_short_side == recorded["window_size"]
    assert cfg.eval.stride[0] == recorded["window_stride"]
    assert cfg.reduce_zero_label == (recorded["dataset"] == "ade20k")


def test_the_rows_of_each_official_segmenter_kind_share_the_recorded_settings():
    """The official rows not recorded (S, B/16, DeiT linear) follow the recorded ones of their dataset."""
    rows = [segzoo.get_pretrained_cfg(n) for n in segzoo.list_pretrained("segmenter-*-ade-official")]
    assert len(rows) == 7
    for cfg in rows:
        deit = "deit" in cfg.arch
        assert cfg.mean == ((123.68, 116.28, 103.53) if deit else (127.5,) * 3)
        assert cfg.eval.test_scale == (2048, 512) and cfg.eval.stride[0] == cfg.eval.crop[0] - 32
        assert cfg.eval.min_short_side == cfg.eval.crop[0] == cfg.crop_size[0]
