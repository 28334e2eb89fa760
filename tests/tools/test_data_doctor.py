"""``segzoo data check`` / ``segzoo.tools.check_dataset`` on tiny folder datasets with the usual mistakes, and the
FolderDataModule arguments it recommends (``label_map``, ``colors``, ``num_classes``) giving the right training
masks."""

from __future__ import annotations

import io
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from segzoo._cli import main
from segzoo.data import FolderDataModule, read_mask
from segzoo.tools import DatasetReport, check_dataset

from support import REPO
from support.fake_datasets import (
    HEIGHT,
    WIDTH,
    bordered_mask,
    colour_mask,
    make_folder,
    make_folder_from_masks,
    stripes_mask,
    write_image,
    write_mask,
)
from support.lit_helpers import quiet_trainer

SMALL = {"crop_size": 32, "batch_size": 2, "num_workers": 0, "scale": (64, 32), "eval_scale": None}
COLOURS = [(0, 0, 0), (0, 128, 0), (200, 30, 30)]  # classes 0, 1, 2 of the RGB masks


def check(root: Path, **kwargs) -> DatasetReport:
    return check_dataset(root, progress=False, **kwargs)


def recommended(report: DatasetReport) -> dict:
    """The recommended YAML, parsed back as a recipe would read it."""
    return yaml.safe_load(report.recommended_yaml)


def init_args(report: DatasetReport) -> dict:
    args = recommended(report)["data"]["init_args"]
    assert args.pop("data_root") == str(report.data_root)
    return args


def said(items: list[str], phrase: str) -> bool:
    return any(phrase in item for item in items)


def training_masks(dm: FolderDataModule, split: str = "train") -> list[np.ndarray]:
    """The masks the dataset gives for training (``__getitem__``, without augmentation)."""
    from segzoo.data import build_eval_transform

    dm.setup("fit")
    dataset = dm.datasets[split]
    augment, dataset.transform = dataset.transform, build_eval_transform()
    try:
        return [dataset[i]["mask"].numpy() for i in range(len(dataset))]
    finally:
        dataset.transform = augment


# --- findings and recommendations, one usual case each ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["subfolders", "split_files"])
def test_good_index_masks_train_as_they_are(tmp_path, mode):
    make_folder(tmp_path, mode, values=(0, 1, 2))
    report = check(tmp_path)
    assert report.exit_status == 0 and report.problems == [] and report.warnings == []
    assert report.layout == ("split folders" if mode == "subfolders" else "split files")
    assert report.num_images == {"train": 3, "val": 2} and report.num_masks == 5
    assert report.encodings == {"index": 5}
    assert report.values == {0: 800 * 5, 1: 800 * 5, 2: 800 * 5}  # 40 x 20 pixels per stripe
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": False}
    assert "model" not in recommended(report) and report.class_weight is None  # balanced: no class weights
    assert said(report.findings, "0 looks like a background class")


def test_rgb_masks_get_a_colour_to_index_mapping(tmp_path):
    index = stripes_mask((0, 1, 2, 1))
    make_folder_from_masks(tmp_path, {"train": [colour_mask(index, COLOURS)] * 2, "val": [colour_mask(index, COLOURS)]})
    report = check(tmp_path)
    assert report.exit_status == 1 and said(report.problems, "RGB colour images")
    assert report.encodings == {"rgb": 3}
    assert set(report.colors) == set(COLOURS) and report.colors[(0, 128, 0)] == 2 * report.colors[(0, 0, 0)]
    # ordered by (R, G, B): black first
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": False, "colors": [list(c) for c in COLOURS]}
    text = str(report)
    assert "(200, 30, 30)" in text and "Mask colours" in text

    # the refusal without colors points to the doctor and to colors; with them, the right class indices
    with pytest.raises(ValueError, match="segzoo data check") as info:
        read_mask(tmp_path / "masks" / "train" / "train00.png")
    assert "colors=" in str(info.value)
    dm = FolderDataModule(tmp_path, **init_args(report), **SMALL)
    assert dm.num_classes == 3 and dm.palette == COLOURS
    for mask in training_masks(dm):
        np.testing.assert_array_equal(mask, index)


def test_zero_as_unlabelled_borders_suggests_reduce_zero_label(tmp_path):
    mask = bordered_mask((1, 2, 3), border=0)  # classes 1..3, 0 as 2-pixel lines between them (ADE20K's 0)
    make_folder_from_masks(tmp_path, {"train": [mask] * 3, "val": [mask]})

    report = check(tmp_path)  # no num_classes: the thin 0 regions decide
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": True}
    assert said(report.findings, "0 looks like 'unlabelled' borders") and said(report.findings, "2.0 px wide")
    assert report.exit_status == 0  # trainable as is (4 classes), though probably not what is meant
    assert report.mapped(0) == 255 and report.mapped(3) == 2

    report = check(tmp_path, num_classes=3)  # values 0..3 for 3 classes: 0 cannot be a class
    assert report.exit_status == 1 and said(report.problems, "value(s) 3 >= num_classes (3)")
    assert said(report.problems, "the settings below fix this") and said(report.findings, "one value too many")
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": True}


def test_zero_as_large_regions_is_a_background_class(tmp_path):
    make_folder(tmp_path, values=(0, 0, 1, 2))  # 0 covers half of each mask
    report = check(tmp_path)
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": False}
    assert said(report.findings, "0 looks like a background class") and said(report.findings, "reduce_zero_label: true")


def test_binary_0_255_masks_map_255_to_foreground_with_class_weights(tmp_path):
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:14, 20:30] = 255  # 40 of 2400 pixels: 98% background
    make_folder_from_masks(tmp_path, {"train": [mask] * 4, "val": [mask]})
    report = check(tmp_path, num_classes=1)
    assert report.exit_status == 1  # as is, 255 is ignored and only background is labelled
    assert said(report.problems, "every labelled pixel has the value 0") and said(report.problems, "fix this")
    assert said(report.findings, "looks like binary masks") and said(report.findings, "two-class softmax")
    assert init_args(report) == {"num_classes": 2, "reduce_zero_label": False, "label_map": {255: 1}}
    loss = recommended(report)["model"]["loss"]
    assert loss["class_path"] == "segzoo.training.CrossEntropyLoss"
    # median-frequency balancing: median of (0.9833, 0.0167) = 0.5 -> 0.5 / f, clipped to [0.1, 10]
    assert loss["init_args"]["class_weight"] == [0.508, 10.0]
    assert report.class_pixels == [4 * (2400 - 40), 4 * 40]
    assert "median-frequency balancing, clipped to [0.1, 10]" in report.recommended_yaml


def test_recommended_binary_config_trains(tmp_path):
    from segzoo.training import CrossEntropyLoss, SegmentationTask

    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[5:25, 10:30] = 255
    make_folder_from_masks(tmp_path, {"train": [mask] * 4, "val": [mask]})
    config = recommended(check(tmp_path))
    data = dict(config["data"]["init_args"], **SMALL)
    dm = FolderDataModule(**data)
    for got in training_masks(dm):
        np.testing.assert_array_equal(got, (mask == 255).astype(np.int64))  # 255 -> class 1, nothing ignored
    loss = CrossEntropyLoss(**config["model"]["loss"]["init_args"]) if "model" in config else None
    module = SegmentationTask("segformer-test", num_classes=dm.num_classes, loss=loss)
    trainer = quiet_trainer(max_steps=2, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_mismatched_names_are_listed(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "masks" / "train" / "b.png").unlink()  # an image without a mask
    write_mask(tmp_path / "masks" / "train" / "z.png", stripes_mask((0, 1)))  # a mask without an image
    report = check(tmp_path)
    assert report.exit_status == 1
    assert report.missing_masks == [(tmp_path / "images" / "train" / "b.jpg", tmp_path / "masks" / "train" / "b.png")]
    assert report.orphan_masks == [tmp_path / "masks" / "train" / "z.png"]
    assert said(report.problems, "1 image(s) have no mask") and said(report.warnings, "1 mask(s) have no image")
    assert report.num_masks == 4  # the other masks were still read
    assert "Result: 1 problem(s), none of them fixed by the settings above" in str(report)


def test_masks_named_with_a_suffix_or_saved_as_jpeg_are_explained(tmp_path):
    make_folder(tmp_path)
    for name in ("a", "b"):
        mask = tmp_path / "masks" / "train" / f"{name}.png"
        mask.rename(mask.with_name(f"{name}_mask.png"))
    mask = tmp_path / "masks" / "train" / "c.png"
    Image.open(mask).save(mask.with_suffix(".jpg"))
    mask.unlink()
    report = check(tmp_path)
    assert report.exit_status == 1 and len(report.missing_masks) == 3 and len(report.orphan_masks) == 3
    assert said(report.findings, "2 mask(s) are named like their image plus '_mask'")
    assert said(report.findings, "1 mask(s) have their image's name but are not .png")


def test_size_mismatch_is_a_problem_and_exif_rotation_is_not(tmp_path):
    make_folder(tmp_path)
    write_mask(tmp_path / "masks" / "val" / "e.png", stripes_mask((0, 1, 2), height=30))
    # a photo stored 60x40 with EXIF "rotate 90°": trains as 40x60, so a 40x60 mask fits it
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = np.random.default_rng(0).integers(0, 256, (WIDTH, HEIGHT, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "images" / "train" / "a.jpg", exif=exif)
    report = check(tmp_path)
    assert report.exit_status == 1 and len(report.size_mismatches) == 1
    image, mask, image_size, mask_size = report.size_mismatches[0]
    assert mask.name == "e.png" and image_size == (WIDTH, HEIGHT) and mask_size == (WIDTH, 30)
    assert said(report.problems, "differ in size from their image")


def test_values_above_num_classes(tmp_path):
    make_folder(tmp_path, values=(0, 1, 2, 7))
    report = check(tmp_path, num_classes=3)
    assert report.exit_status == 1 and said(report.problems, "value(s) 7 >= num_classes (3)")
    assert init_args(report)["num_classes"] == 8 and said(report.findings, "num_classes=3 is too small")
    assert ">= num_classes (3)" in str(report)  # the value table marks it
    assert check(tmp_path, num_classes=8).exit_status == 0


def test_an_all_ignore_mask_is_one_the_model_cannot_learn_from(tmp_path):
    make_folder(tmp_path)
    write_mask(tmp_path / "masks" / "train" / "c.png", np.full((HEIGHT, WIDTH), 255, np.uint8))
    report = check(tmp_path)
    assert report.exit_status == 0  # the others train
    assert report.unlearnable == [tmp_path / "masks" / "train" / "c.png"]
    assert said(report.warnings, "1 mask(s) have no labelled pixel") and said(report.findings, "always filling")
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": False}


def test_all_masks_ignore_means_no_labelled_pixel(tmp_path):
    make_folder(tmp_path, values=(255,))
    report = check(tmp_path)
    assert report.exit_status == 1 and said(report.problems, "no labelled pixel") and len(report.unlearnable) == 5


def test_ignore_borders_and_palette_masks(tmp_path):
    mask = bordered_mask((0, 1, 2), border=255)  # VOC: 255 lines between objects, palette PNGs
    for split, count in (("train", 2), ("val", 1)):
        for i in range(count):
            write_image(tmp_path / "images" / split / f"{i}.jpg")
            image = Image.fromarray(mask, mode="P")
            image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)
            (tmp_path / "masks" / split).mkdir(parents=True, exist_ok=True)
            image.save(tmp_path / "masks" / split / f"{i}.png")
    report = check(tmp_path)
    assert report.exit_status == 0 and report.encodings == {"palette": 3}
    assert said(report.findings, "values are palette indices") and said(report.findings, "1 (128, 0, 0)")
    assert said(report.findings, "looks like ignore borders")
    assert init_args(report) == {"num_classes": 3, "reduce_zero_label": False}


def test_16_bit_masks_with_large_values(tmp_path):
    make_folder(tmp_path)
    for path in (tmp_path / "masks").rglob("*.png"):
        Image.fromarray(stripes_mask((0, 1)).astype(np.uint16) * 1000).save(path)  # 0 and 1000
    report = check(tmp_path)
    assert report.encodings == {"16-bit": 5} and said(report.problems, "values above 255 (up to 1000")


def test_a_folder_without_splits_is_read_and_needs_one(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / "images" / f"{name}.png")
        write_mask(tmp_path / "masks" / f"{name}.png", stripes_mask((0, 1)))
    report = check(tmp_path)
    assert report.layout == "no split" and report.num_images == {"all": 2} and report.num_masks == 2
    assert report.exit_status == 1 and said(report.problems, "no train/val split")
    assert init_args(report) == {"num_classes": 2, "reduce_zero_label": False}


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_prints_the_report_and_exits_1_on_problems(tmp_path, capsys):
    make_folder(tmp_path, values=(0, 255))
    assert main(["data", "check", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    text = captured.out
    assert "looks like binary masks" in " ".join(text.split())
    assert "Result: 1 problem(s), all fixed by the settings above: exit status 1." in text
    block = text.split("--config data.yaml")[-1].split("whole block.\n")[1].split("\n\nResult:")[0]
    assert yaml.safe_load(block)["data"]["init_args"]["label_map"] == {255: 1}
    assert "Reading masks" in captured.err  # the progress bar, on stderr

    fine = tmp_path / "fine"
    make_folder(fine)
    assert main(["data", "check", str(fine), "--num-classes", "3"]) == 0


@pytest.mark.parametrize("missing", ["folder", "masks"])
def test_cli_missing_folder_is_one_line_and_exit_2(tmp_path, capsys, missing):
    root = tmp_path / "data"
    if missing == "masks":
        (root / "images").mkdir(parents=True)
    assert main(["data", "check", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("segzoo data check: error:")
    assert ("does not exist" if missing == "folder" else "has no masks/ folder") in err


def test_cli_data_help_lists_check_and_prepare(capsys):
    with pytest.raises(SystemExit) as info:
        main(["data", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "check" in out and "prepare" in out
    with pytest.raises(SystemExit) as info:
        main(["data", "prepare", "--help"])
    assert "pascal-context" in capsys.readouterr().out


# --- FolderDataModule: label_map, colors, num_classes ---------------------------------------------------------------


def test_label_map_gives_the_training_masks(tmp_path):
    make_folder(tmp_path, values=(0, 255, 7))
    dm = FolderDataModule(tmp_path, num_classes=2, label_map={255: 1, 7: 255}, **SMALL)
    assert dm.class_names == ["class_0", "class_1"]
    for mask in training_masks(dm):
        np.testing.assert_array_equal(mask, stripes_mask((0, 1, 255)))
    # label_map applies before reduce_zero_label: 255 -> 1 -> 0, 0 -> ignore
    dm = FolderDataModule(tmp_path, num_classes=1, label_map={255: 1, 7: 255}, reduce_zero_label=True, **SMALL)
    np.testing.assert_array_equal(training_masks(dm)[0], stripes_mask((255, 0, 255)))


def test_colors_turn_rgb_masks_into_class_indices(tmp_path):
    index = stripes_mask((0, 1, 2, 3))  # class 3 has a colour that is not in colors: ignored
    rgb = colour_mask(index, [*COLOURS, (9, 9, 9)])
    make_folder_from_masks(tmp_path, {"train": [rgb] * 2, "val": [rgb]})
    dm = FolderDataModule(tmp_path, classes=["sky", "grass", "car"], colors=[list(c) for c in COLOURS], **SMALL)
    expected = np.where(index == 3, 255, index)
    for mask in training_masks(dm) + training_masks(dm, "val"):
        np.testing.assert_array_equal(mask, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "give classes"),
        ({"classes": ["a", "b"], "num_classes": 3}, "classes gives 2, num_classes gives 3"),
        ({"num_classes": 2, "colors": [[0, 0, 0]]}, "num_classes gives 2, colors gives 1"),
        ({"num_classes": 2, "colors": [[0, 0, 0], [0, 0, 0]]}, "to several classes"),
        ({"num_classes": 1, "colors": [[0, 0, 300]]}, "each from 0 to 255"),
        ({"num_classes": 2, "label_map": {256: 1}}, "outside 0-255"),
    ],
)
def test_folder_argument_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        FolderDataModule(tmp_path, **kwargs)


def test_colors_with_index_masks_say_what_to_change(tmp_path):
    make_folder(tmp_path)
    dm = FolderDataModule(tmp_path, colors=[[0, 0, 0], [1, 1, 1], [2, 2, 2]], **SMALL)
    with pytest.raises(ValueError, match="Remove colors"):
        training_masks(dm)


# --- what the check must not let pass -----------------------------------------------------------------------------


def _damaged(rgb: np.ndarray, how: str) -> np.ndarray:
    image = Image.fromarray(rgb)
    if how == "jpeg":
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        return np.asarray(Image.open(buffer).convert("RGB"))
    return np.asarray(image.resize((rgb.shape[1] * 3 // 4, rgb.shape[0] * 3 // 4), Image.BILINEAR))


@pytest.mark.parametrize("how", ["jpeg", "bilinear"])
def test_colour_masks_damaged_by_jpeg_or_a_blending_resize_are_a_problem_no_setting_fixes(tmp_path, how):
    index = np.zeros((64, 96), np.uint8)  # four classes in blocks
    index[:, 48:] = 1
    index[32:, :48] = 2
    index[40:56, 60:88] = 3
    colours = [*COLOURS, (30, 60, 220)]
    masks = [_damaged(colour_mask(np.roll(index, 8 * i, axis=1), colours), how) for i in range(3)]
    make_folder_from_masks(tmp_path, {"train": masks[:2], "val": masks[2:]})
    report = check(tmp_path)
    assert len(report.colors) > 4  # the stray colours the damage made
    damage = [problem for problem in report.problems if "look damaged" in problem]
    assert len(damage) == 1 and not damage[0].endswith("(the settings below fix this)")
    assert "nearest-neighbour" in damage[0]
    proposed = init_args(report)["colors"]
    assert len(proposed) == 4 and report.settings["num_classes"] == 4  # the four drawn colours, not the fringes
    for drawn in colours:  # each proposed colour is one drawn (JPEG may shift it by a few levels)
        assert min(np.abs(np.subtract(drawn, p)).max() for p in proposed) <= 4
    assert "all fixed by the settings above" not in str(report)


def test_binary_0_1_masks_with_one_class_train_as_two_classes(tmp_path):
    make_folder(tmp_path, values=(0, 0, 0, 1))
    report = check(tmp_path, num_classes=1)
    assert init_args(report) == {"num_classes": 2, "reduce_zero_label": False}
    assert said(report.findings, "looks like binary masks") and said(report.findings, "two-class softmax")
    dm = FolderDataModule(tmp_path, **init_args(report), **SMALL)
    for mask in training_masks(dm):
        np.testing.assert_array_equal(mask, stripes_mask((0, 0, 0, 1)))  # 0 stays background, nothing ignored


def test_an_empty_val_folder_is_a_problem(tmp_path):
    make_folder(tmp_path)
    for path in (tmp_path / "images" / "val").iterdir():
        path.unlink()
    report = check(tmp_path)
    assert report.exit_status == 1 and said(report.problems, "the val split")
    with pytest.raises(FileNotFoundError, match="no images found for split 'val'"):
        FolderDataModule(tmp_path, num_classes=3, **SMALL).setup("fit")  # what training would say


def test_symlinked_folders_are_read_and_links_to_nothing_are_named(tmp_path):
    elsewhere = make_folder(tmp_path / "elsewhere")
    root = tmp_path / "data"
    for kind in ("images", "masks"):
        (root / kind / "train").mkdir(parents=True)
        (root / kind / "train" / "city").symlink_to(elsewhere / kind / "train", target_is_directory=True)
        (root / kind / "val").symlink_to(elsewhere / kind / "val", target_is_directory=True)
    report = check(root)
    assert report.num_images == {"train": 3, "val": 2} and report.exit_status == 0
    dm = FolderDataModule(root, num_classes=3, **SMALL)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["val"]) == 2

    (root / "images" / "train" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    write_mask(root / "masks" / "train" / "gone.png", stripes_mask((0, 1, 2)))
    report = check(root)
    assert report.exit_status == 1 and said(report.problems, "gone.jpg") and said(report.problems, "does not exist")
    with pytest.raises(FileNotFoundError, match="symbolic links? to nothing, e.g. '.*gone.jpg'"):
        FolderDataModule(root, num_classes=3, **SMALL).setup("fit")


def test_two_images_with_one_name_are_a_problem(tmp_path):
    make_folder(tmp_path)
    write_image(tmp_path / "images" / "train" / "a.png")
    report = check(tmp_path)
    assert report.exit_status == 1 and said(report.problems, "a.jpg' and '") and said(report.problems, "a.png'")
    with pytest.raises(ValueError, match="used by more than one file"):
        FolderDataModule(tmp_path, num_classes=3, **SMALL).setup("fit")


def test_an_image_in_train_txt_and_val_txt_is_a_problem(tmp_path):
    make_folder(tmp_path, "split_files")
    (tmp_path / "val.txt").write_text("d\ne\na\n")
    report = check(tmp_path)
    assert report.exit_status == 1 and said(report.problems, "listed in both train.txt and val.txt, e.g. 'a'")


def test_16_bit_and_float_images_are_described_as_training_reads_them(tmp_path):
    make_folder(tmp_path)
    Image.fromarray(np.full((HEIGHT, WIDTH), 40000, np.uint16)).save(tmp_path / "images" / "train" / "a.png")
    (tmp_path / "images" / "train" / "a.jpg").unlink()
    Image.fromarray(np.full((HEIGHT, WIDTH), 900, np.uint16)).save(tmp_path / "images" / "train" / "b.png")
    (tmp_path / "images" / "train" / "b.jpg").unlink()
    Image.fromarray(np.full((HEIGHT, WIDTH), 200.0, np.float32)).save(tmp_path / "images" / "val" / "d.tif")
    (tmp_path / "images" / "val" / "d.jpg").unlink()
    report = check(tmp_path)
    assert said(report.findings, "2 image(s) are 16-bit") and said(report.findings, "high byte")
    assert said(report.warnings, "nearly black") and said(report.warnings, "b.png")
    assert report.exit_status == 1 and said(report.problems, "d.tif") and said(report.problems, "0–1")


def test_the_saved_settings_merge_into_the_recipe(tmp_path, capsys, monkeypatch):
    from segzoo.training import cli_main

    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    mask[10:14, 20:30] = 255
    make_folder_from_masks(tmp_path, {"train": [mask] * 2, "val": [mask]})
    saved = tmp_path / "data.yaml"
    assert main(["data", "check", str(tmp_path), "--save-config", str(saved)]) == 1
    assert f"wrote the recommended settings to {saved}" in capsys.readouterr().out
    recipe = REPO / "configs" / "finetune-folder.yaml"
    monkeypatch.setattr("sys.argv", ["train.py"])
    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", str(recipe), "--config", str(saved), "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    model, data = config["model"], config["data"]["init_args"]
    assert (
        model["loss"]["init_args"]["class_weight"]
        == yaml.safe_load(saved.read_text())["model"]["loss"]["init_args"]["class_weight"]
    )
    assert model["optimizer"]["init_args"]["lr"] == 6e-5 and model["lr_scheduler"]["init_args"]["warmup_iters"] == 500
    assert data["data_root"] == str(tmp_path) and data["label_map"] in ({255: 1}, {"255": 1})
    assert data["crop_size"] == 512 and config["trainer"]["max_steps"] == 20000  # the recipe's, kept


def test_the_old_names_in_segzoo_data_still_work_with_a_warning():
    import segzoo.data
    import segzoo.tools

    for name in ("check_dataset", "DatasetReport", "prepare_dataset", "PrepareReport"):
        with pytest.warns(FutureWarning, match=rf"segzoo\.data\.{name} moved: use segzoo\.tools\.{name}"):
            assert getattr(segzoo.data, name) is getattr(segzoo.tools, name)
