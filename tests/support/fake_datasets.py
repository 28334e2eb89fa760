"""Writers of tiny fake datasets in the official folder layouts, for tests of segzoo.data (and anyone else's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 40, 60


def stripes_mask(values: Sequence[int], height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    """A ``uint8`` mask of vertical stripes, one per value, so that every value is present."""
    columns = np.array_split(np.arange(width), len(values))
    mask = np.zeros((height, width), dtype=np.uint8)
    for value, cols in zip(values, columns):
        mask[:, cols] = value
    return mask


def write_image(path: Path, height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> Path:
    """Write a random RGB image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def write_mask(path: Path, mask: np.ndarray) -> Path:
    """Write a single-channel PNG mask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8), mode="L").save(path)
    return path


def make_ade20k(root: Path, values: Sequence[int] = (0, 1, 150, 75), num_train: int = 3, num_val: int = 2) -> Path:
    """ADEChallengeData2016 under ``root``; returns the ADEChallengeData2016 folder."""
    base = root / "ADEChallengeData2016"
    for folder, prefix, count in (("training", "ADE_train", num_train), ("validation", "ADE_val", num_val)):
        for i in range(count):
            write_image(base / "images" / folder / f"{prefix}_{i + 1:08d}.jpg", seed=i)
            write_mask(base / "annotations" / folder / f"{prefix}_{i + 1:08d}.png", stripes_mask(values))
    return base


def make_cityscapes(root: Path, values: Sequence[int] = (7, 26, 0, 33), train_ids: bool = False) -> Path:
    """leftImg8bit + gtFine with two cities in train and one in val; ``train_ids`` adds *_labelTrainIds.png."""
    cities = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
    for split, names in cities.items():
        for city in names:
            for frame in range(2 if split == "train" else 1):
                stem = f"{city}_000000_{frame:06d}"
                write_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", seed=frame)
                mask_dir = root / "gtFine" / split / city
                write_mask(mask_dir / f"{stem}_gtFine_labelIds.png", stripes_mask(values))
                if train_ids:
                    write_mask(mask_dir / f"{stem}_gtFine_labelTrainIds.png", stripes_mask(range(len(values))))
    return root


def make_pascal_context(root: Path, values: Sequence[int] = (0, 1, 59, 30)) -> Path:
    """VOCdevkit/VOC2010 with SegmentationClassContext and split files; returns the VOC2010 folder."""
    base = root / "VOCdevkit" / "VOC2010"
    names = {"train": ["2008_000002", "2008_000003", "2008_000007"], "val": ["2008_000008", "2008_000009"]}
    for split, stems in names.items():
        for i, stem in enumerate(stems):
            write_image(base / "JPEGImages" / f"{stem}.jpg", seed=i)
            write_mask(base / "SegmentationClassContext" / f"{stem}.png", stripes_mask(values))
        split_file = base / "ImageSets" / "SegmentationContext" / f"{split}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("\n".join(stems) + "\n")
    return base


def make_coco_stuff(root: Path, values: Sequence[int] = (0, 170, 255, 80), raw: bool = False) -> Path:
    """images/{train2017,val2017} + annotations with *_labelTrainIds.png (or raw <id>.png if ``raw``)."""
    for split, count in (("train2017", 3), ("val2017", 2)):
        for i in range(count):
            stem = f"{i + 9:012d}"
            write_image(root / "images" / split / f"{stem}.jpg", seed=i)
            name = f"{stem}.png" if raw else f"{stem}_labelTrainIds.png"
            write_mask(root / "annotations" / split / name, stripes_mask(values))
    return root


def make_folder(root: Path, mode: str = "subfolders", values: Sequence[int] = (0, 1, 2)) -> Path:
    """A user dataset: ``images/`` + ``masks/`` split by subfolders or by train.txt / val.txt."""
    splits = {"train": ["a", "b", "c"], "val": ["d", "e"]}
    for split, stems in splits.items():
        sub = split if mode == "subfolders" else ""
        for i, stem in enumerate(stems):
            write_image(root / "images" / sub / f"{stem}.jpg", seed=i)
            write_mask(root / "masks" / sub / f"{stem}.png", stripes_mask(values))
        if mode == "split_files":
            (root / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return root


# --- the files as the dataset sites distribute them (inputs of `segzoo data prepare`) --------------------------------


def write_zip(archive: Path, base: Path, folders: Sequence[str]) -> Path:
    """Zip the ``base/<folder>`` trees (member paths relative to ``base``) with a README, as the sites' archives are,
    then delete the trees."""
    import shutil
    import zipfile

    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("README", "fake archive\n")
        for folder in folders:
            for path in sorted((base / folder).rglob("*")):
                zf.write(path, path.relative_to(base).as_posix())
    for folder in folders:
        shutil.rmtree(base / folder)
    return archive


def rle_encode(mask: np.ndarray) -> dict:
    """A bool mask as a compressed COCO run-length encoding (``{"size": [h, w], "counts": str}``), the encoding of the
    ``segmentation`` fields of PASCAL in Detail's trainval_merged.json (runs over the pixels in column-major order,
    starting with a run of 0; from the fourth count on the difference to the count two before; 5 bits a character)."""
    flat = np.asarray(mask, dtype=bool).T.ravel()
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat.size and flat[0]:
        runs = [0, *runs]
    chars = []
    for i, count in enumerate(runs):
        value = count - runs[i - 2] if i > 2 else count
        more = True
        while more:
            char, value = value & 0x1F, value >> 5
            more = value != (-1 if char & 0x10 else 0)
            chars.append(chr((char | 0x20 if more else char) + 48))
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": "".join(chars)}


def make_pascal_context_download(
    root: Path,
    segments: dict[str, list[tuple[int, np.ndarray]]],
    phases: dict[str, str],
    category_names: dict[int, str],
) -> Path:
    """VOCdevkit/VOC2010/JPEGImages and trainval_merged.json in the PASCAL in Detail format under ``root``.

    Args:
        segments: Image name -> its (category id, bool mask) segments, painted in this order.
        phases: Image name -> "train" or "val".
        category_names: The json's categories, id -> name.
    """
    import json

    images, annotations = [], []
    for i, (name, phase) in enumerate(phases.items()):
        write_image(root / "VOCdevkit" / "VOC2010" / "JPEGImages" / f"{name}.jpg", seed=i)
        image_id = int(name.replace("_", ""))  # the Detail API's ids: 2008_000002 -> 2008000002
        images.append({"image_id": image_id, "file_name": f"{name}.jpg", "height": HEIGHT, "width": WIDTH,
                       "phase": phase, "date_captured": "03-May-2010"})  # fmt: skip
        for category_id, mask in segments.get(name, []):
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "segmentation": rle_encode(mask), "area": int(mask.sum()), "iscrowd": 0,
                                "parts": []})  # fmt: skip
    categories = [
        {"category_id": cid, "name": name, "supercategory": "object", "onlysemantic": 0, "parts": []}
        for cid, name in category_names.items()
    ]
    data = {"info": {"version": "3.0"}, "images": images, "annos_segmentation": annotations,
            "categories": categories, "parts": [], "annos_occlusion": [], "annos_boundary": []}  # fmt: skip
    (root / "trainval_merged.json").write_text(json.dumps(data))
    return root


def bordered_mask(
    values: Sequence[int], border: int = 0, border_width: int = 2, height: int = HEIGHT, width: int = WIDTH
) -> np.ndarray:
    """Vertical stripes of ``values`` separated by ``border_width``-pixel lines of ``border`` (as ADE20K's 0 or VOC's
    255 between objects)."""
    mask = stripes_mask(values, height, width)
    for column in np.flatnonzero(np.diff(mask[0].astype(int))):
        mask[:, column + 1 - border_width // 2 : column + 1 + (border_width + 1) // 2] = border
    return mask


def colour_mask(mask: np.ndarray, colours: Sequence[Sequence[int]]) -> np.ndarray:
    """An RGB ``uint8`` mask drawing class ``k`` of an index mask in ``colours[k]``."""
    return np.asarray(colours, dtype=np.uint8)[mask]


def make_folder_from_masks(root: Path, masks: dict[str, Sequence[np.ndarray]]) -> Path:
    """A user dataset split by subfolders: ``masks/<split>/<split>NN.png`` (RGB when a mask is H x W x 3) and an image
    of the same size at ``images/<split>/<split>NN.jpg`` for each mask of ``masks[split]``."""
    for split, split_masks in masks.items():
        for i, mask in enumerate(split_masks):
            name = f"{split}{i:02d}"
            write_image(root / "images" / split / f"{name}.jpg", mask.shape[0], mask.shape[1], seed=i)
            path = root / "masks" / split / f"{name}.png"
            if mask.ndim == 3:
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask.astype(np.uint8)).save(path)  # H x W x 3 uint8: RGB
            else:
                write_mask(path, mask)
    return root


# Validation images of several sizes, two of them alike (scoring batches mix sizes; whole mode batches equal ones).
EVAL_SIZES = ((64, 80), (72, 100), (88, 66), (64, 80), (104, 122))


def make_folder_of_sizes(root: Path, sizes: Sequence[tuple[int, int]] = EVAL_SIZES, num_train: int = 2) -> Path:
    """A 3-class user dataset (``images/`` + ``masks/`` by split subfolders) whose validation images have the given
    sizes; masks are stripes of 0, 1, 255 (ignored) and 2."""
    masks = {
        "train": [stripes_mask((0, 1, 2), 32, 32)] * num_train,
        "val": [stripes_mask((0, 1, 255, 2), height, width) for height, width in sizes],
    }
    return make_folder_from_masks(root, masks)
