"""Tests of segzoo.data: DataModules on tiny fake datasets in the official layouts, label mappings, transforms."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from segzoo.data import (
    ADE20KDataModule,
    CatMaxRatioRandomCrop,
    CityscapesDataModule,
    COCOStuffDataModule,
    FolderDataModule,
    KeepRatioRescale,
    PascalContextDataModule,
    PhotoMetricDistortion,
    SegmentationDataset,
    SyntheticDataModule,
    build_train_transform,
)
from segzoo.data._base import seed_worker_transform
from segzoo.data._transforms import keep_ratio_size, seed_transform

from support.fake_datasets import (
    HEIGHT,
    WIDTH,
    make_ade20k,
    make_cityscapes,
    make_coco_stuff,
    make_folder,
    make_pascal_context,
    stripes_mask,
    write_image,
    write_mask,
)

SMALL = {"crop_size": 32, "batch_size": 2, "num_workers": 0}


def check_batches(dm, crop: tuple[int, int], val_size: tuple[int, int], original=(HEIGHT, WIDTH)) -> dict:
    """Load one train and one val batch, check shapes, dtypes and value ranges; return the val batch.

    Validation items are the image as read and the mask at its size; ``val_size`` is the size the DataModule's test
    pipeline resizes the image to for the model."""
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["image"].shape == (2, 3, *crop) and train["image"].dtype == torch.float32
    assert train["mask"].shape == (2, *crop) and train["mask"].dtype == torch.int64
    assert len(train["name"]) == 2 and all(isinstance(n, str) for n in train["name"])
    val = next(iter(dm.val_dataloader()))
    (image,), (mask,) = val["image"], val["mask"]
    assert image.dtype == np.uint8 and image.shape == (*original, 3)
    assert mask.dtype == torch.int64 and mask.shape == original
    assert dm.eval_protocol(image).shape == (1, 3, *val_size)
    for values in (train["mask"].unique(), mask.unique()):
        assert ((values >= 0) & (values < dm.num_classes) | (values == 255)).all(), values
    assert dm.ignore_index == 255
    assert len(dm.class_names) == dm.num_classes and len(dm.palette) == dm.num_classes
    return val


def raw_and_mapped(dm, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """First sample's raw mask file content and its mask after the DataModule's label mapping."""
    dataset = dm.datasets[split]
    _, mapped, _ = dataset.load_sample(0)
    raw = np.asarray(Image.open(dataset.samples[0][1]))
    return raw, mapped


def mapping_of(raw: np.ndarray, mapped: np.ndarray) -> dict[int, int]:
    return {int(r): int(mapped[raw == r][0]) for r in np.unique(raw)}


# --- DataModules on fake datasets ------------------------------------------------------------------------------------


@pytest.mark.parametrize("point_at_inner_folder", [False, True])
def test_ade20k(tmp_path: Path, point_at_inner_folder: bool):
    inner = make_ade20k(tmp_path)
    dm = ADE20KDataModule(inner if point_at_inner_folder else tmp_path, scale=(64, 32), eval_scale=(64, 32), **SMALL)
    # Evaluation resize keeps the ratio: min(64 / 60, 32 / 40) = 0.8 -> 32 x 48.
    val = check_batches(dm, (32, 32), (32, 48))
    assert dm.num_classes == 150 and dm.class_names[0] == "wall"
    assert mapping_of(*raw_and_mapped(dm)) == {0: 255, 1: 0, 75: 74, 150: 149}
    assert set(val["mask"][0].unique().tolist()) <= {0, 74, 149, 255}
    assert len(dm.datasets["train"]) == 3 and len(dm.datasets["val"]) == 2


def test_cityscapes_label_ids(tmp_path: Path):
    dm = CityscapesDataModule(make_cityscapes(tmp_path), scale=(60, 40), **SMALL)
    val = check_batches(dm, (32, 32), (HEIGHT, WIDTH))  # evaluated at full resolution
    assert dm.num_classes == 19 and dm.class_names[13] == "car"
    assert mapping_of(*raw_and_mapped(dm)) == {0: 255, 7: 0, 26: 13, 33: 18}
    expected = np.vectorize({7: 0, 26: 13, 0: 255, 33: 18}.get)(stripes_mask((7, 26, 0, 33)))
    np.testing.assert_array_equal(val["mask"][0].numpy(), expected)
    assert len(dm.datasets["train"]) == 4  # two cities, two frames each


def test_cityscapes_prefers_label_train_ids(tmp_path: Path):
    dm = CityscapesDataModule(make_cityscapes(tmp_path, train_ids=True), **SMALL)
    dm.setup("validate")
    assert dm.datasets["val"].samples[0][1].name.endswith("_gtFine_labelTrainIds.png")
    raw, mapped = raw_and_mapped(dm, "val")
    np.testing.assert_array_equal(raw, mapped)  # trainIds are used as they are


@pytest.mark.parametrize(
    "num_classes, expected", [(60, {0: 0, 1: 1, 30: 30, 59: 59}), (59, {0: 255, 1: 0, 30: 29, 59: 58})]
)
def test_pascal_context(tmp_path: Path, num_classes: int, expected: dict[int, int]):
    make_pascal_context(tmp_path)
    dm = PascalContextDataModule(tmp_path, num_classes=num_classes, scale=(60, 60), eval_scale=(30, 30), **SMALL)
    check_batches(dm, (32, 32), (20, 30))  # long side to 30
    assert dm.num_classes == num_classes
    assert (dm.class_names[0] == "background") == (num_classes == 60)
    assert mapping_of(*raw_and_mapped(dm)) == expected


def test_pascal_context_rejects_other_class_counts(tmp_path: Path):
    with pytest.raises(ValueError, match="59 or 60"):
        PascalContextDataModule(tmp_path, num_classes=21)


def test_coco_stuff(tmp_path: Path):
    dm = COCOStuffDataModule(make_coco_stuff(tmp_path), scale=(64, 32), eval_scale=(64, 32), **SMALL)
    check_batches(dm, (32, 32), (32, 48))
    assert dm.num_classes == 171
    assert mapping_of(*raw_and_mapped(dm)) == {0: 0, 80: 80, 170: 170, 255: 255}


def test_coco_stuff_raw_maps(tmp_path: Path):
    dm = COCOStuffDataModule(make_coco_stuff(tmp_path, values=(0, 11, 12, 181), raw=True), **SMALL)
    dm.setup("validate")
    # 11 (COCO id 12) has no category; 12 is the 12th used id; 181 is the last stuff class.
    assert mapping_of(*raw_and_mapped(dm, "val")) == {0: 0, 11: 255, 12: 11, 181: 170}


@pytest.mark.parametrize("mode", ["subfolders", "split_files"])
def test_folder(tmp_path: Path, mode: str):
    make_folder(tmp_path, mode)
    (tmp_path / "classes.txt").write_text("sky\nroad\n\ncar\n")
    dm = FolderDataModule(tmp_path, classes="classes.txt", scale=(64, 32), eval_scale=None, **SMALL)
    check_batches(dm, (32, 32), (HEIGHT, WIDTH))
    assert dm.class_names == ["sky", "road", "car"] and dm.num_classes == 3
    assert sorted(Path(image).stem for image, _ in dm.datasets["train"].samples) == ["a", "b", "c"]
    dm.setup("test")
    assert len(dm.datasets["test"]) == 2  # no test split: the val split is used


def test_folder_reduce_zero_label(tmp_path: Path):
    make_folder(tmp_path, values=(0, 1, 2))
    dm = FolderDataModule(tmp_path, classes=["a", "b"], reduce_zero_label=True, **SMALL)
    dm.setup("fit")
    assert mapping_of(*raw_and_mapped(dm)) == {0: 255, 1: 0, 2: 1}


def test_folder_classes_file_missing(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="one name per line"):
        FolderDataModule(tmp_path, classes="nope.txt")


def test_mean_std_are_used(tmp_path: Path):
    make_folder(tmp_path)
    dm = FolderDataModule(tmp_path, classes=["a", "b", "c"], eval_scale=None, mean=(127.5,) * 3, std=(127.5,) * 3)
    dm.setup("validate")
    image = dm.datasets["val"][0]["image"]  # as read: the test pipeline normalises it for the model
    raw = torch.from_numpy(dm.datasets["val"].load_sample(0)[0]).permute(2, 0, 1).float()
    torch.testing.assert_close(dm.eval_protocol(image)[0], raw / 127.5 - 1)


# --- errors ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "module, expected",
    [
        (ADE20KDataModule, ["ADEChallengeData2016/", "annotations/", "validation/"]),
        (CityscapesDataModule, ["leftImg8bit/", "gtFine/", "_gtFine_labelIds.png"]),
        (PascalContextDataModule, ["VOC2010/", "SegmentationClassContext/", "train.txt"]),
        (COCOStuffDataModule, ["train2017/", "_labelTrainIds.png"]),
    ],
)
def test_missing_dataset_shows_layout(tmp_path: Path, module, expected: list[str]):
    dm = module(tmp_path / "nowhere", **SMALL)
    with pytest.raises(FileNotFoundError) as info:
        dm.setup("fit")
    message = str(info.value)
    assert "Expected this layout" in message and str(tmp_path / "nowhere") in message
    for text in expected:
        assert text in message


def test_missing_folder_dataset_shows_both_layouts(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match="train.txt") as info:
        FolderDataModule(tmp_path, classes=["a"]).setup("fit")
    assert "masks/" in str(info.value) and "train/a.jpg" in str(info.value)


def test_folder_datamodule_with_a_missing_data_root_says_the_folder_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data_root '.*no-data' does not exist; give the folder") as info:
        FolderDataModule(tmp_path / "no-data", classes="classes.txt")
    assert "classes.txt" not in str(info.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file, not a folder"):
        FolderDataModule(tmp_path / "file", classes=["a", "b"])


def test_missing_mask_names_the_image(tmp_path: Path):
    base = make_ade20k(tmp_path)
    (base / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(FileNotFoundError, match="ADE_train_00000002"):
        ADE20KDataModule(tmp_path, **SMALL).setup("fit")


def test_mismatched_sizes_name_the_file(tmp_path: Path):
    image = write_image(tmp_path / "x.jpg")
    mask = write_mask(tmp_path / "x.png", np.zeros((HEIGHT + 1, WIDTH), np.uint8))
    with pytest.raises(ValueError, match=r"x\.png.*60x41") as info:
        SegmentationDataset([(image, mask)], num_classes=3)[0]
    assert "x.jpg" in str(info.value)


def test_bad_mask_values_name_file_and_values(tmp_path: Path):
    image = write_image(tmp_path / "x.jpg")
    mask = write_mask(tmp_path / "x.png", stripes_mask((0, 2, 5, 7, 255)))
    with pytest.raises(ValueError, match=r"x\.png.*\[5, 7\].*0\.\.4"):
        SegmentationDataset([(image, mask)], num_classes=5)[0]


def test_bad_values_checked_after_label_mapping(tmp_path: Path):
    base = make_ade20k(tmp_path, values=(0, 151))  # 151 -> 150 after reduce_zero_label, one too many
    dm = ADE20KDataModule(base, **SMALL)
    dm.setup("validate")
    with pytest.raises(ValueError, match=r"ADE_val_00000001\.png.*\[150\]"):
        dm.datasets["val"][0]


def test_unreadable_image_and_rgb_mask(tmp_path: Path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    mask = write_mask(tmp_path / "m.png", np.zeros((HEIGHT, WIDTH), np.uint8))
    with pytest.raises(OSError, match="broken.jpg"):
        SegmentationDataset([(broken, mask)], num_classes=2)[0]
    image = write_image(tmp_path / "ok.jpg")
    rgb_mask = write_image(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png.*class indices"):
        SegmentationDataset([(image, rgb_mask)], num_classes=2)[0]


def test_batch_size_larger_than_train_split(tmp_path: Path):
    dm = ADE20KDataModule(make_ade20k(tmp_path), crop_size=32, batch_size=8, num_workers=0)
    with pytest.raises(ValueError, match="fewer than batch_size=8"):
        dm.train_dataloader()


# --- transforms ------------------------------------------------------------------------------------------------------


def test_keep_ratio_size_follows_mmseg_rule():
    assert keep_ratio_size(512, 683, (2048, 512)) == (512, 683)
    assert keep_ratio_size(256, 341, (2048, 512)) == (512, 682)  # short side to 512
    assert keep_ratio_size(100, 1000, (2048, 512)) == (205, 2048)  # capped by the long side
    assert keep_ratio_size(1024, 2048, (2048, 1024)) == (1024, 2048)
    assert keep_ratio_size(375, 500, (520, 520)) == (390, 520)  # long side to 520


def test_random_rescale_range():
    rescale = KeepRatioRescale((120, 80), ratio_range=(0.5, 2.0))
    rescale.set_random_seed(0)
    image, mask = np.zeros((HEIGHT, WIDTH, 3), np.uint8), np.zeros((HEIGHT, WIDTH), np.uint8)
    heights = [rescale(image=image, mask=mask)["mask"].shape[0] for _ in range(50)]
    assert min(heights) >= 40 and max(heights) <= 160 and max(heights) - min(heights) > 60


def test_cat_max_ratio_crop_avoids_dominant_class():
    # Left 80 columns class 0, right 20 columns class 1: only windows starting at x > 50 keep class 0 below 75%.
    mask = np.zeros((100, 100), np.uint8)
    mask[:, 80:] = 1
    image = np.zeros((100, 100, 3), np.uint8)

    def balanced_share(cat_max_ratio: float) -> float:
        crop = CatMaxRatioRandomCrop(40, 40, cat_max_ratio=cat_max_ratio)
        crop.set_random_seed(0)
        shares = []
        for _ in range(200):
            out = crop(image=image, mask=mask)["mask"]
            assert out.shape == (40, 40)
            shares.append(np.bincount(out.ravel(), minlength=2).max() / out.size < 0.75)
        return float(np.mean(shares))

    assert balanced_share(0.75) > 0.7  # about 1 - (51/61)^10 = 0.83
    assert balanced_share(1.0) < 0.3  # about 10/61 = 0.16 without the check


def test_cat_max_ratio_ignores_ignore_pixels():
    # One class plus ignore pixels can never be balanced: the crop still comes back, at the crop size.
    mask = np.full((50, 50), 255, np.uint8)
    mask[:, :10] = 3
    crop = CatMaxRatioRandomCrop(20, 20, cat_max_ratio=0.75)
    assert not crop._is_balanced(mask)
    assert crop._is_balanced(np.array([[3, 3, 4, 255, 255, 255]], np.uint8))
    assert crop(image=np.zeros((50, 50, 3), np.uint8), mask=mask)["mask"].shape == (20, 20)


def test_train_transform_pads_image_with_zero_and_mask_with_ignore():
    transform = build_train_transform(crop_size=(64, 80), scale=(60, 40), ratio_range=(1.0, 1.0), photometric=False)
    image = np.full((HEIGHT, WIDTH, 3), (123, 116, 104), np.uint8)  # about the ImageNet mean
    out = transform(image=image, mask=np.ones((HEIGHT, WIDTH), np.uint8))
    assert out["image"].shape == (3, 64, 80) and out["mask"].shape == (64, 80)
    assert out["image"][:, :HEIGHT, :WIDTH].abs().max() < 0.02  # normalised mean
    assert (out["image"][:, HEIGHT:] == 0).all() and (out["image"][:, :, WIDTH:] == 0).all()
    assert (out["mask"][:HEIGHT, :WIDTH] == 1).all()
    assert (out["mask"][HEIGHT:] == 255).all() and (out["mask"][:, WIDTH:] == 255).all()


def test_photometric_distortion():
    image = np.random.default_rng(0).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    distort = PhotoMetricDistortion()
    neutral = {"brightness": None, "contrast": None, "contrast_first": True, "saturation": None, "hue": None}
    np.testing.assert_array_equal(distort.apply(image, **neutral), image)
    brighter = distort.apply(image, **{**neutral, "brightness": 20.0})
    np.testing.assert_array_equal(brighter, np.clip(image.astype(int) + 20, 0, 255))
    distort.set_random_seed(0)
    outputs = [distort(image=image)["image"] for _ in range(40)]
    assert all(out.dtype == np.uint8 and out.shape == image.shape for out in outputs)
    # Each of the 4 steps fires with p=0.5, so about 1/16 of the outputs are unchanged.
    assert 30 <= sum(not np.array_equal(out, image) for out in outputs) < 40


def test_workers_get_different_augmentations(tmp_path: Path):
    image = write_image(tmp_path / "x.jpg")
    mask = write_mask(tmp_path / "x.png", stripes_mask((0, 1)))
    transform = build_train_transform(crop_size=32, scale=(60, 40), cat_max_ratio=1.0)
    dataset = SegmentationDataset([(image, mask)] * 2, num_classes=2, transform=transform)
    loader = DataLoader(dataset, batch_size=1, num_workers=2, worker_init_fn=seed_worker_transform)
    first, second = (batch["image"] for batch in loader)  # one item from each worker
    assert not torch.equal(first, second)


# --- synthetic data --------------------------------------------------------------------------------------------------


def test_synthetic_datamodule_batches():
    dm = SyntheticDataModule(num_classes=5, image_size=48, num_train=6, num_val=3, batch_size=2)
    check_batches(dm, (48, 48), (48, 48), original=(48, 48))
    assert dm.class_names[0] == "background" and len(set(dm.palette)) == 5
    masks = np.stack([dm.datasets["val"].load_sample(i)[1] for i in range(3)])
    assert len(np.unique(masks)) >= 3  # several shape classes on the background


def test_synthetic_is_deterministic_for_a_seed():
    def val_batch(seed: int) -> dict:
        dm = SyntheticDataModule(image_size=32, num_train=4, num_val=2, batch_size=2, seed=seed)
        dm.setup("fit")
        return next(iter(dm.val_dataloader()))

    first, again, other = val_batch(3), val_batch(3), val_batch(4)
    assert np.array_equal(first["image"][0], again["image"][0]) and torch.equal(first["mask"][0], again["mask"][0])
    assert not torch.equal(first["mask"][0], other["mask"][0])


def test_training_augmentations_follow_torch_seed():
    def train_batch() -> torch.Tensor:
        torch.manual_seed(123)
        dm = SyntheticDataModule(image_size=32, num_train=4, num_val=1, batch_size=2)
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))["image"]

    torch.testing.assert_close(train_batch(), train_batch())


def test_seed_transform_shares_one_stream():
    transform = build_train_transform(crop_size=16, scale=(60, 40))
    seed_transform(transform, 7)
    assert len({id(t.py_random) for t in transform.transforms}) == 1
