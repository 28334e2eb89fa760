"""The checkpoint table (checkpoints.yaml -> segzoo.PretrainedCfg) and the class metadata
(segzoo._datasets)."""

from __future__ import annotations

import dataclasses
import fnmatch
import json

import pytest
import yaml

import segzoo
from segzoo import CheckpointTableError, UnknownCheckpointError
from segzoo._datasets import DATASETS
from segzoo.checkpoints import get_encoder_cfg, get_pretrained_cfg, list_pretrained
from segzoo.checkpoints._table import FORMATS, NAME_PATTERN, load_table, parse_entry

from support import REPO

NAMES = list_pretrained() + list_pretrained(kind="encoder")
SEGMENTATION = list_pretrained()
ENCODERS = [name for name in NAMES if name not in SEGMENTATION]

# The checkpoints every zoo of these families offers, at least.
REQUIRED = (
    [f"segformer-b{i}-ade" for i in range(5)]
    + ["segformer-b5-ade-640"]
    + [f"segformer-b{i}-cityscapes" for i in range(6)]
    + ["segformer-b0-cityscapes-768", "segformer-b0-cityscapes-640", "segformer-b0-cityscapes-512"]
    + [
        "segmenter-t16-mask-ade",
        "segmenter-s16-linear-ade",
        "segmenter-s16-mask-ade",
        "segmenter-b16-mask-ade",
        "segmenter-l16-mask-ade",
    ]
    + [
        "setr-naive-ade",
        "setr-pup-ade",
        "setr-mla-ade",
        "setr-mla-ade-bs8",
        "setr-naive-cityscapes",
        "setr-pup-cityscapes",
        "setr-mla-cityscapes",
    ]
    + [f"mit-b{i}" for i in range(6)]
)


def _row(**changes) -> dict:
    raw = yaml.safe_load((REPO / "checkpoints.yaml").read_text())["checkpoints"][0]
    raw.update(changes)
    return raw


def test_runtime_table_has_every_row_of_the_repository_table_in_order():
    """segzoo reads its table from the package (importlib.resources); every row of the top-level checkpoints.yaml
    must be there, segmentation rows listed for load() and encoder rows under kind="encoder"."""
    rows = yaml.safe_load((REPO / "checkpoints.yaml").read_text())["checkpoints"]
    segmentation = [row["name"] for row in rows if "encoder_of" not in row]
    encoders = [row["name"] for row in rows if "encoder_of" in row]
    assert list_pretrained() == segmentation and list_pretrained(kind="encoder") == encoders


def test_required_checkpoints_are_listed():
    assert set(REQUIRED) <= set(NAMES), sorted(set(REQUIRED) - set(NAMES))
    assert len(NAMES) == len(set(NAMES))


@pytest.mark.parametrize("name", NAMES)
def test_entry_schema(name):
    cfg = get_pretrained_cfg(name)
    assert NAME_PATTERN.match(name)
    assert cfg.format in FORMATS
    assert cfg.license and cfg.paper.startswith("https://")
    assert len(cfg.mean) == 3 and len(cfg.std) == 3 and all(0 < s <= 255 for s in cfg.std)
    assert cfg.source.is_hf_hub == (cfg.source.url is None)
    if cfg.source.is_hf_hub:
        assert cfg.source.hf_hub_id.count("/") == 1 and cfg.source.filename and cfg.source.revision
    assert json.loads(json.dumps(cfg.to_dict()))["name"] == name  # JSON-serialisable for config.json
    if cfg.is_encoder:
        assert cfg.encoder_of and cfg.eval is None
        return
    assert cfg.eval is not None and cfg.eval.mode in ("whole", "slide")
    assert cfg.metrics["publisher"]["miou_ss"] > 0
    names, palette = cfg.class_names, cfg.palette
    assert len(names) == cfg.num_classes == len(palette)
    # model.pretrained_cfg is the row field for field, each key with the field's meaning (crop_size the training
    # crop on every row, the sliding window in eval), plus the dataset's class names and palette
    info = cfg.to_dict()
    assert set(info) == {field.name for field in dataclasses.fields(cfg)} | {"class_names", "palette"}
    assert info["crop_size"] == list(cfg.crop_size) and info["mean"] == list(cfg.mean)
    assert segzoo.EvalProtocol.from_dict(info["eval"]) == cfg.eval and cfg.eval.mean == cfg.mean


def test_eval_settings_of_known_checkpoints():
    large = get_pretrained_cfg("segmenter-l16-mask-ade")
    assert large.crop_size == (640, 640) and (large.eval.crop, large.eval.stride) == ((640, 640), (608, 608))
    assert get_pretrained_cfg("segmenter-s16-mask-ade").mean == (127.5, 127.5, 127.5)
    assert get_pretrained_cfg("setr-pup-cityscapes").eval.stride == (512, 512)
    assert get_pretrained_cfg("segformer-b0-ade").reduce_zero_label
    assert not get_pretrained_cfg("segformer-b0-cityscapes").reduce_zero_label


def test_every_arch_is_registered():
    archs = set(segzoo.list_models())
    for name in SEGMENTATION:
        assert get_pretrained_cfg(name).arch in archs, name
    for name in ENCODERS:
        patterns = get_pretrained_cfg(name).encoder_of
        assert all(fnmatch.filter(archs, pattern) for pattern in patterns), (name, patterns)


def test_every_vit_and_mit_architecture_has_a_default_encoder():
    assert get_encoder_cfg("segformer-b3").name == "mit-b3"
    assert get_encoder_cfg("setr-pup-l16").name == "vit-l16-orig-384"  # the weights SETR started from
    assert get_encoder_cfg("segmenter-l16-mask").name == "vit-l16-augreg-384"
    assert get_encoder_cfg("segmenter-b8-linear").name == "vit-b8-augreg-224"
    without = set()
    for arch in segzoo.list_models():
        if segzoo.get_arch(arch).encoder == "timm_vit":  # timm's own weights (models/test_timm_encoders.py)
            continue
        try:
            assert get_encoder_cfg(arch).is_encoder
        except UnknownCheckpointError:
            without.add(arch)
    # No ImageNet weights exist for these ViT sizes x patches, nor for the hybrid (ResNet-50 + ViT) encoder.
    no_weights = {f"segmenter-{v}-{d}" for v in ("t8", "s8", "l8", "t32") for d in ("linear", "mask")}
    assert without == no_weights | {"setr-hybrid-naive"}
    with pytest.raises(UnknownCheckpointError, match="pretrained_encoder=False"):
        get_encoder_cfg("no-such-arch")


def test_unknown_name_suggests_closest():
    with pytest.raises(KeyError) as info:
        get_pretrained_cfg("segformer-b2-ad")
    message = str(info.value)
    assert "Closest: segformer-b2-ade" in message and "checkpoint=" in message
    with pytest.raises(ValueError, match="setr-pup-ade"):
        get_pretrained_cfg("setr-pup-ad20k")


def test_list_pretrained_filters():
    assert list_pretrained("segformer-b0-cityscapes*") == [
        "segformer-b0-cityscapes",
        "segformer-b0-cityscapes-768",
        "segformer-b0-cityscapes-640",
        "segformer-b0-cityscapes-512",
        "segformer-b0-cityscapes-mmseg",
    ]
    assert "mit-b0" in list_pretrained("mit-*", kind="encoder") and "mit-b0" not in SEGMENTATION


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": "red"}, r"unknown key\(s\) \['colour'\]"),
        ({"num_classes": None}, r"missing mandatory field\(s\) \['num_classes'\]"),
        ({"format": "onnx"}, "unknown format 'onnx'"),
        ({"eval": {"mode": "slide", "crop": [512, 512], "tta": "mmseg-0.x"}}, "slide needs crop and stride"),
        ({"eval": {"mode": "whole", "scale": [2048, 512]}}, r"missing mandatory field\(s\) \['tta'\] in eval"),
        ({"eval": {"mode": "whole", "scale": [2048, 512], "tta": "mmseg-2"}}, "eval.tta must be one of"),
        ({"source": {"hf_hub_id": "org/repo"}}, "needs a filename"),
        ({"sha256": "not-hex"}, "sha256 must be"),
        ({"name": "Segformer_B0"}, "kebab-case"),
        ({"dataset": "ade"}, "unknown dataset 'ade'"),
        ({"encoder_of": ["segformer-b0"]}, "exactly one of arch"),
    ],
)
def test_invalid_rows_raise_with_the_entry_name(changes, message):
    with pytest.raises(CheckpointTableError, match=message) as info:
        parse_entry(_row(**changes))
    assert "checkpoints.yaml entry" in str(info.value)


def test_duplicate_names_are_rejected(tmp_path):
    path = tmp_path / "checkpoints.yaml"
    path.write_text(yaml.safe_dump({"checkpoints": [_row(), _row()]}))
    with pytest.raises(CheckpointTableError, match="appears twice"):
        load_table(path)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_dataset_classes_and_palettes(dataset):
    names, palette = DATASETS[dataset]
    assert len(names) == len(palette) == len(set(names))
    assert all(name == name.strip() and name for name in names)
    assert all(len(color) == 3 and all(0 <= c <= 255 for c in color) for color in palette)


def test_dataset_class_counts_and_order():
    counts = {key: len(names) for key, (names, _) in DATASETS.items()}
    assert counts == {
        "ade20k": 150,
        "cityscapes": 19,
        "pascal-context-59": 59,
        "pascal-context-60": 60,
        "coco-stuff-164k": 171,
    }
    assert DATASETS["ade20k"][0][:3] == ("wall", "building", "sky") and DATASETS["ade20k"][0][7] == "bed"
    assert DATASETS["cityscapes"][0][0] == "road" and DATASETS["cityscapes"][1][0] == (128, 64, 128)
    assert DATASETS["pascal-context-60"][0] == ("background",) + DATASETS["pascal-context-59"][0]
    assert DATASETS["pascal-context-60"][1][1:] == DATASETS["pascal-context-59"][1]
