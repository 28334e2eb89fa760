"""Tests of segzoo.tools.prepare_dataset: tiny fakes of the files the dataset sites distribute (folders and archives)
-> the layouts the DataModules read; exact label values, idempotent and resumable runs, missing-source errors."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segzoo
from segzoo._cli import main
from segzoo._datasets import PASCAL_CONTEXT_59_CLASSES, PASCAL_CONTEXT_60_CLASSES
from segzoo.data import (
    ADE20KDataModule,
    CityscapesDataModule,
    COCOStuffDataModule,
    PascalContextDataModule,
)
from segzoo.tools import PrepareReport, prepare_dataset
from segzoo.tools import _prepare as prepare_module
from segzoo.tools._prepare import decode_rle

from support.fake_datasets import (
    HEIGHT,
    WIDTH,
    make_ade20k,
    make_cityscapes,
    make_coco_stuff,
    make_pascal_context_download,
    rle_encode,
    stripes_mask,
    write_image,
    write_zip,
)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root``: (mtime in ns, inode), to tell which files a run rewrote."""
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_ino) for p in root.rglob("*") if p.is_file()}


def labels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def first_sample(dm) -> tuple[np.ndarray, np.ndarray]:
    """The DataModule's first validation sample (image, mapped mask), read through its dataset."""
    dm.setup("validate")
    image, mask, _ = dm.datasets["val"].load_sample(0)
    return image, mask


# --- Cityscapes ----------------------------------------------------------------------------------------------------


def test_cityscapes_from_folders_idempotent_and_resumable(tmp_path: Path):
    src, dst = make_cityscapes(tmp_path / "src", values=(7, 26, 0, 33)), tmp_path / "dst"
    write_image(src / "leftImg8bit" / "test" / "berlin" / "berlin_000000_000000_leftImg8bit.png")  # not prepared
    report = prepare_dataset("cityscapes", src, dst)
    assert report.counts == {"train": 4, "val": 1}
    assert report.labels_written == 5 and report.images_linked == 5 and report.images_copied == 0
    label = dst / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000000_gtFine_labelTrainIds.png"
    # road (labelId 7) -> 0, car (26) -> 13, unlabeled (0) -> 255, bicycle (33) -> 18
    np.testing.assert_array_equal(labels(label), stripes_mask((0, 13, 255, 18)))
    image = dst / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000000_leftImg8bit.png"
    assert image.stat().st_ino == (src / image.relative_to(dst)).stat().st_ino  # hard-linked, not copied
    assert not (dst / "leftImg8bit" / "test").exists() and not list(dst.rglob("*.partial"))

    _, mask = first_sample(CityscapesDataModule(dst, num_workers=0))
    np.testing.assert_array_equal(mask, stripes_mask((0, 13, 255, 18)))

    before = snapshot(dst)
    again = prepare_dataset("cityscapes", src, dst)
    assert again.nothing_done and "nothing to do" in str(again) and again.kept == 10
    assert snapshot(dst) == before

    label.unlink()
    (dst / "leftImg8bit" / "train" / "aachen" / "aachen_000000_000001_leftImg8bit.png").unlink()
    resumed = prepare_dataset("cityscapes", src, dst)
    assert (resumed.labels_written, resumed.images_linked, resumed.kept) == (1, 1, 8)
    after = snapshot(dst)  # the image is linked again to the same file (same inode and time): only the label differs
    assert after.keys() == before.keys()
    assert {name for name in after if after[name] != before[name]} == {str(label.relative_to(dst))}


def test_cityscapes_from_zips(tmp_path: Path):
    src, dst = make_cityscapes(tmp_path / "src", values=(26, 24, 4)), tmp_path / "dst"
    write_zip(src / "leftImg8bit_trainvaltest.zip", src, ["leftImg8bit"])
    write_zip(src / "gtFine_trainvaltest.zip", src, ["gtFine"])
    report = prepare_dataset("cityscapes", src, dst)
    assert report.extracted == ["leftImg8bit_trainvaltest.zip", "gtFine_trainvaltest.zip"]
    assert report.counts == {"train": 4, "val": 1} and report.images_linked == 0  # unpacked in place
    assert "extracted leftImg8bit_trainvaltest.zip, gtFine_trainvaltest.zip" in str(report)
    label = dst / "gtFine" / "train" / "bochum" / "bochum_000000_000001_gtFine_labelTrainIds.png"
    np.testing.assert_array_equal(labels(label), stripes_mask((13, 11, 255)))  # car, person, dynamic -> ignore
    assert not list(dst.glob(".*.partial"))
    assert prepare_dataset("cityscapes", src, dst).nothing_done  # the unpacked folders are found in DST


def test_interrupted_run_finishes_on_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src, dst = make_cityscapes(tmp_path / "src"), tmp_path / "dst"
    save, calls = prepare_module._save_label, []

    def save_twice_then_fail(array, target):
        calls.append(target)
        if len(calls) > 2:
            raise KeyboardInterrupt
        save(array, target)

    monkeypatch.setattr(prepare_module, "_save_label", save_twice_then_fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset("cityscapes", src, dst)
    monkeypatch.undo()
    assert len(list(dst.rglob("*_labelTrainIds.png"))) == 2  # complete files only
    report = prepare_dataset("cityscapes", src, dst)
    assert report.labels_written == 5 - 2 and report.counts == {"train": 4, "val": 1}
    assert not list(dst.rglob("*.partial"))


# --- ADE20K --------------------------------------------------------------------------------------------------------


def test_ade20k_folder_zip_and_in_place(tmp_path: Path):
    src = tmp_path / "src"
    make_ade20k(src)
    report = prepare_dataset("ade20k", src, tmp_path / "dst")
    assert report.counts == {"train": 3, "val": 2} and report.images_linked == 10
    assert "note: the full release has 20210 train pairs; this one has 3." in str(report)
    annotation = tmp_path / "dst" / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000001.png"
    np.testing.assert_array_equal(labels(annotation), stripes_mask((0, 1, 150, 75)))  # kept as they are
    _, mask = first_sample(ADE20KDataModule(tmp_path / "dst", num_workers=0))
    np.testing.assert_array_equal(mask, stripes_mask((255, 0, 149, 74)))

    inner = src / "ADEChallengeData2016"
    in_place = prepare_dataset("ade20k", inner, inner)  # SRC is ADEChallengeData2016 itself: only checked
    assert in_place.nothing_done and in_place.counts == {"train": 3, "val": 2}

    write_zip(src / "ADEChallengeData2016.zip", src, ["ADEChallengeData2016"])
    from_zip = prepare_dataset("ade20k", src, tmp_path / "dst2")
    assert from_zip.extracted == ["ADEChallengeData2016.zip"] and from_zip.counts == {"train": 3, "val": 2}


# --- COCO-Stuff 164k -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("zipped", [False, True])
def test_coco_stuff(tmp_path: Path, zipped: bool):
    src, dst = make_coco_stuff(tmp_path / "src", values=(0, 11, 12, 181, 255), raw=True), tmp_path / "dst"
    if zipped:
        write_zip(src / "train2017.zip", src / "images", ["train2017"])
        write_zip(src / "val2017.zip", src / "images", ["val2017"])
        write_zip(src / "stuffthingmaps_trainval2017.zip", src / "annotations", ["train2017", "val2017"])
    report = prepare_dataset("coco-stuff", src, dst)
    assert report.counts == {"train": 3, "val": 2} and report.labels_written == 5
    assert report.extracted == (["train2017.zip", "stuffthingmaps_trainval2017.zip", "val2017.zip"] if zipped else [])
    # raw 0 (person) -> 0; 11 (COCO id 12, street sign: no annotations) -> 255; 12 (stop sign) -> 11;
    # 181 (wood, the last stuff class) -> 170; 255 (unlabelled) stays 255
    expected = stripes_mask((0, 255, 11, 170, 255))
    np.testing.assert_array_equal(labels(dst / "annotations" / "val2017" / "000000000009_labelTrainIds.png"), expected)
    dm = COCOStuffDataModule(dst, num_workers=0)
    _, mask = first_sample(dm)
    np.testing.assert_array_equal(mask, expected)
    assert dm.datasets["val"].samples[0][1].name.endswith("_labelTrainIds.png")
    assert prepare_dataset("coco-stuff", src, dst).nothing_done


# --- PASCAL Context ------------------------------------------------------------------------------------------------


def pascal_context_download(root: Path) -> Path:
    """Two train and one val image; 2008_000002 has wall, then bird, then person over part of the bird, then a
    category outside the 59 (accordion); 2008_000003 has no segment."""
    wall = np.ones((HEIGHT, WIDTH), dtype=bool)
    bird = np.zeros_like(wall)
    bird[5:25, 10:40] = True
    person = np.zeros_like(wall)
    person[20:35, 30:50] = True
    accordion = np.zeros_like(wall)
    accordion[0:3, 0:3] = True
    return make_pascal_context_download(
        root,
        segments={
            "2008_000002": [(440, wall), (25, bird), (284, person), (1, accordion)],
            "2008_000007": [(59, wall)],
        },
        phases={"2008_000002": "train", "2008_000003": "train", "2008_000007": "val"},
        category_names={1: "accordion", 25: "bird", 59: "car", 284: "person", 440: "wall"},
    )


def expected_pascal_context() -> np.ndarray:
    expected = np.full((HEIGHT, WIDTH), PASCAL_CONTEXT_60_CLASSES.index("wall"), dtype=np.uint8)
    expected[5:25, 10:40] = PASCAL_CONTEXT_60_CLASSES.index("bird")
    expected[20:35, 30:50] = PASCAL_CONTEXT_60_CLASSES.index("person")
    expected[0:3, 0:3] = 0  # not one of the 59: background
    return expected


def test_pascal_context(tmp_path: Path):
    src, dst = pascal_context_download(tmp_path / "src"), tmp_path / "dst"
    report = prepare_dataset("pascal-context", src, dst)
    assert report.counts == {"train": 2, "val": 1}
    assert (report.labels_written, report.lists_written, report.images_linked) == (3, 2, 3)
    voc = dst / "VOCdevkit" / "VOC2010"
    label = labels(voc / "SegmentationClassContext" / "2008_000002.png")
    expected = expected_pascal_context()
    np.testing.assert_array_equal(label, expected)
    assert (label[10, 15], label[30, 45], label[38, 5]) == (7, 37, 56)  # bird, person, wall in the 60-class list
    assert PASCAL_CONTEXT_59_CLASSES[7 - 1] == "bird"
    np.testing.assert_array_equal(labels(voc / "SegmentationClassContext" / "2008_000003.png"), 0)
    assert (voc / "ImageSets" / "SegmentationContext" / "train.txt").read_text() == "2008_000002\n2008_000003\n"
    assert (voc / "ImageSets" / "SegmentationContext" / "val.txt").read_text() == "2008_000007\n"

    dm60 = PascalContextDataModule(dst, num_classes=60, num_workers=0)
    dm60.setup("fit")
    _, mask, _ = dm60.datasets["train"].load_sample(0)
    np.testing.assert_array_equal(mask, expected)
    _, mask = first_sample(PascalContextDataModule(dst, num_classes=59, num_workers=0))
    assert set(np.unique(mask)) == {PASCAL_CONTEXT_59_CLASSES.index("car")}  # 59 -> 14 -> 13 after the shift

    before = snapshot(dst)
    again = prepare_dataset("pascal-context", src, dst)
    assert again.nothing_done and snapshot(dst) == before
    (voc / "SegmentationClassContext" / "2008_000007.png").unlink()
    resumed = prepare_dataset("pascal-context", src, dst)
    assert (resumed.labels_written, resumed.lists_written, resumed.images_linked) == (1, 0, 0)


def test_pascal_context_in_place_and_name_check(tmp_path: Path):
    src = pascal_context_download(tmp_path)
    import json

    data = json.loads((src / "trainval_merged.json").read_text())
    data["categories"][1]["name"] = "parrot"  # category 25 is "bird" in PASCAL-Context's list
    (src / "trainval_merged.json").write_text(json.dumps(data))
    report = prepare_dataset("pascal-context", src, src)
    assert report.images_linked == 0 and report.counts == {"train": 2, "val": 1}
    assert "25: 'parrot' (expected 'bird')" in str(report)
    assert (src / "VOCdevkit" / "VOC2010" / "SegmentationClassContext" / "2008_000002.png").is_file()


def test_pascal_context_from_voc_tar_with_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import tarfile

    src = pascal_context_download(tmp_path / "src")
    with tarfile.open(src / "VOCtrainval_03-May-2010.tar", "w") as tf:
        tf.add(src / "VOCdevkit", arcname="VOCdevkit")
    shutil.rmtree(src / "VOCdevkit")

    def no_hard_links(*args):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_hard_links)
    report = prepare_dataset("pascal-context", src, tmp_path / "dst")
    assert report.extracted == ["VOCtrainval_03-May-2010.tar"] and report.counts == {"train": 2, "val": 1}
    assert report.images_linked == report.images_copied == 0  # unpacked where the DataModule reads them
    shutil.copy(src / "trainval_merged.json", tmp_path / "dst")
    copied = prepare_dataset("pascal-context", tmp_path / "dst", tmp_path / "dst3")  # from a folder this time
    assert copied.images_copied == 3 and copied.images_linked == 0 and "3 files copied" in str(copied)


def test_decode_rle_matches_cocoapi():
    # pycocotools.mask.encode of this mask gives b"0181J0003" (checked once with pycocotools 2.0.11)
    mask = np.array([[1, 0, 0, 0, 0, 0], [0, 0, 1, 1, 1, 0], [0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(decode_rle({"size": [4, 6], "counts": "0181J0003"}), mask)
    np.testing.assert_array_equal(decode_rle({"size": [4, 6], "counts": b"0181J0003"}), mask)
    assert rle_encode(mask)["counts"] == "0181J0003"
    np.testing.assert_array_equal(decode_rle({"size": [4, 6], "counts": [0, 1, 8, 2, 2, 2, 2, 2, 5]}), mask)
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 3), (40, 60), (500, 375)]:
        for density in (0.0, 0.1, 0.9, 1.0):
            random = rng.random(shape) < density
            np.testing.assert_array_equal(decode_rle(rle_encode(random)), random)
    with pytest.raises(segzoo.CorruptedFileError, match="4x6"):
        decode_rle({"size": [4, 6], "counts": [3, 4]})


# --- errors --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ("cityscapes", ["leftImg8bit", "leftImg8bit_trainvaltest.zip (11GB)", "cityscapes-dataset.com"]),
        ("ade20k", ["ADEChallengeData2016", "ADEChallengeData2016.zip", "data.csail.mit.edu"]),
        ("coco-stuff", ["images/train2017", "train2017.zip", "2017 Train images", "cocodataset.org"]),
        ("pascal-context", ["VOCdevkit/VOC2010/JPEGImages", "VOCtrainval_03-May-2010.tar"]),
    ],
)
def test_missing_source_names_folder_archive_and_site(tmp_path: Path, dataset: str, expected: list[str]):
    (tmp_path / "src").mkdir()
    with pytest.raises(segzoo.DatasetSourceError) as info:
        prepare_dataset(dataset, tmp_path / "src", tmp_path / "dst")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, segzoo.SegzooError)
    for text in expected:
        assert text in str(info.value)


def test_missing_second_source_and_labels(tmp_path: Path):
    src = make_cityscapes(tmp_path / "src")
    shutil.rmtree(src / "gtFine")
    with pytest.raises(segzoo.DatasetSourceError, match="gtFine_trainvaltest.zip"):
        prepare_dataset("cityscapes", src, tmp_path / "dst")

    src = pascal_context_download(tmp_path / "pascal")
    (src / "trainval_merged.json").unlink()
    with pytest.raises(segzoo.DatasetSourceError, match="trainval_merged.json.*codalabuser"):
        prepare_dataset("pascal-context", src, tmp_path / "dst")

    src = make_coco_stuff(tmp_path / "coco", raw=True)
    (src / "annotations" / "val2017" / "000000000010.png").unlink()
    with pytest.raises(segzoo.DatasetSourceError, match="1 of 2 images have no .*000000000010.png"):
        prepare_dataset("coco-stuff", src, tmp_path / "dst")


def test_unknown_dataset_and_report_text(tmp_path: Path):
    with pytest.raises(ValueError, match="ade20k, cityscapes, pascal-context, coco-stuff"):
        prepare_dataset("voc", tmp_path, tmp_path)
    report = PrepareReport("Cityscapes", Path("/data/cs"), {"train": 2975, "val": 500}, labels_written=3475,
                           images_linked=3475)  # fmt: skip
    assert str(report) == (
        "Cityscapes prepared in /data/cs: train 2975, val 500 image/label pairs.\n"
        "  3475 label maps written; 3475 files hard-linked."
    )


# --- what goes wrong on the way: one line naming the file, nothing half-written left behind --------------------------


def no_partial_files(root: Path) -> bool:
    return not [path for path in root.rglob("*") if path.name.endswith(".partial")]


def test_a_corrupt_archive_member_is_named(tmp_path: Path):
    import zipfile

    src = make_cityscapes(tmp_path / "src")
    archive = src / "gtFine_trainvaltest.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((src / "gtFine").rglob("*.png")):
            zf.write(path, path.relative_to(src).as_posix())
    shutil.rmtree(src / "gtFine")
    with zipfile.ZipFile(archive) as zf:
        member = zf.infolist()[2]
    data = bytearray(archive.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode())
    data[start + 8 : start + 40] = bytes(range(32))  # garbage inside the compressed stream
    archive.write_bytes(bytes(data))
    with pytest.raises(segzoo.CorruptedFileError, match=f"'{member.filename}'.*download it again"):
        prepare_dataset("cityscapes", src, tmp_path / "dst")
    assert no_partial_files(tmp_path / "dst")


@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_a_dst_that_cannot_be_a_folder_is_one_line(tmp_path: Path, capsys, where):
    src = make_cityscapes(tmp_path / "src")
    (tmp_path / "taken").write_text("x")
    dst = tmp_path / "taken" if where == "a file" else tmp_path / "taken" / "dst"
    with pytest.raises(segzoo.DatasetTargetError, match="taken"):
        prepare_dataset("cityscapes", src, dst)
    assert main(["data", "prepare", "cityscapes", str(src), str(dst)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("segzoo data prepare: error:") and str(dst) in err


@pytest.mark.parametrize("damage", ["truncated", "16-bit"])
def test_a_damaged_cityscapes_label_is_named(tmp_path: Path, capsys, damage):
    src = make_cityscapes(tmp_path / "src")
    label = src / "gtFine" / "train" / "bochum" / "bochum_000000_000001_gtFine_labelIds.png"
    if damage == "truncated":
        label.write_bytes(label.read_bytes()[:60])
    else:
        Image.fromarray(stripes_mask((7, 26)).astype(np.uint16) * 300).save(label)
    with pytest.raises(segzoo.CorruptedFileError, match="bochum_000000_000001_gtFine_labelIds.png"):
        prepare_dataset("cityscapes", src, tmp_path / "dst")
    assert main(["data", "prepare", "cityscapes", str(src), str(tmp_path / "dst")]) == 2
    assert "Traceback" not in capsys.readouterr().err
    assert no_partial_files(tmp_path / "dst")


def test_a_corrupt_ade20k_annotation_is_named(tmp_path: Path):
    make_ade20k(tmp_path / "src")
    label = tmp_path / "src" / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    label.write_bytes(label.read_bytes()[:-20])  # cut short
    for dst in (tmp_path / "dst", tmp_path / "src"):  # linked elsewhere, or prepared in place
        with pytest.raises(segzoo.CorruptedFileError, match="ADE_val_00000002.png.*truncated or corrupt"):
            prepare_dataset("ade20k", tmp_path / "src", dst)


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (lambda data: data["annos_segmentation"][0].pop("id"), r"annos_segmentation\[0\] has no 'id'"),
        (lambda data: data["images"][1].pop("height"), r"images\[1\] has no 'height'"),
        (lambda data: data["images"][0].update(width="wide"), r"images\[0\] has 'width': 'wide'"),
        (lambda data: data["annos_segmentation"][1]["segmentation"].update(size=[3]), "segmentation size is"),
        (lambda data: data["annos_segmentation"][1]["segmentation"].update(counts="0"), "segment 2 of 2008_000002"),
    ],
)
def test_a_malformed_detail_json_names_the_entry(tmp_path: Path, edit, said):
    import json

    src = pascal_context_download(tmp_path / "src")
    data = json.loads((src / "trainval_merged.json").read_text())
    edit(data)
    (src / "trainval_merged.json").write_text(json.dumps(data))
    with pytest.raises(segzoo.CorruptedFileError, match=said):
        prepare_dataset("pascal-context", src, tmp_path / "dst")
    assert no_partial_files(tmp_path / "dst")


def test_ctrl_c_during_prepare_is_one_line_and_the_next_run_finishes(tmp_path: Path, monkeypatch, capsys):
    src, dst = make_cityscapes(tmp_path / "src"), tmp_path / "dst"
    write, labels_started = prepare_module.atomic_write, itertools.count()

    # Ctrl-C when the third label starts. Counted, not globbed: the worker threads create and remove their temporary
    # folders under DST meanwhile, and a walk of DST can fail on a folder that vanishes under it.
    def interrupted(target):
        if target.name.endswith("_labelTrainIds.png") and next(labels_started) >= 2:
            raise KeyboardInterrupt
        return write(target)

    monkeypatch.setattr(prepare_module, "atomic_write", interrupted)
    assert main(["data", "prepare", "cityscapes", str(src), str(dst)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("segzoo data prepare: interrupted;") and "run the same command again" in err[-1]
    assert "Traceback" not in "\n".join(err) and no_partial_files(dst)
    monkeypatch.undo()
    assert prepare_dataset("cityscapes", src, dst).counts == {"train": 4, "val": 1}


def test_a_second_run_into_the_same_folder_waits_for_the_first(tmp_path: Path, capsys):
    import fcntl
    import threading

    src, dst = make_cityscapes(tmp_path / "src"), tmp_path / "dst"
    dst.mkdir()
    reports = []
    with open(dst / ".segzoo-prepare.lock", "a+") as lock:  # a first run holds the folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        second = threading.Thread(target=lambda: reports.append(prepare_dataset("cityscapes", src, dst)))
        second.start()
        second.join(timeout=1.0)
        assert second.is_alive() and not list(dst.rglob("*.png"))  # waiting, nothing written
        fcntl.flock(lock, fcntl.LOCK_UN)
    second.join(timeout=60)
    assert reports[0].counts == {"train": 4, "val": 1} and no_partial_files(dst)
    assert f"another segzoo data prepare is writing into {dst}; waiting for it to finish" in capsys.readouterr().err
