"""``segzoo data check``: read every mask of a folder dataset once and say what training needs to know.

The questions users ask about their own data: is 0 background or unlabelled, why is the loss zero, why does the
dataset refuse RGB masks, is 255 "ignore" or a class, why do names not pair up. :func:`check_dataset` answers them
from the files (mask encoding, values and their frequencies, what 0 and 255 look like, missing / extra / mismatched
files) and recommends the :class:`~segzoo.data.FolderDataModule` arguments and class weights to train with.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segzoo._images import IMAGE_EXTENSIONS, image_to_rgb, load_image, missing_file_error, walk_files
from segzoo.data._files import IGNORE_INDEX, find_split, folder_label_table, group_images, same_name_message

__all__ = ["DatasetReport", "check_dataset"]

SPLITS = ("train", "val", "test")
THIN_WIDTH = 8.0  # px: regions of a value narrower than this on average look like drawn borders, not areas
IMBALANCE = 10.0  # most / least frequent class from which class weights are recommended
WEIGHT_CLIP = (0.1, 10.0)  # median-frequency weights are clipped so that a rare class does not dominate the loss
MIN_COLOUR_SHARE = 1e-4  # colours rarer than this (share of mask pixels) are left out of the proposed colors
FRINGE_WIDTH = 3.0  # px: colours whose regions are narrower on average are the stray edge colours of JPEG or a resize
DAMAGE_SHARE = 0.005  # stray fringe colours covering this share of the pixels mean the masks were damaged
NEAR_COLOUR = 16  # colours this close in every channel are one colour shifted (by JPEG), in damaged masks
MAX_ROWS = 40  # rows of the value / colour table
INDEX_KINDS = ("index", "palette", "16-bit")
WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
EXIF_ORIENTATION = 0x0112
DARK_16_BIT = 4096  # 16-bit images below this read as 0..15 of 255: nearly black
FIXED = " (the settings below fix this)"
RECOMMENDED_HOW = (
    "Recommended settings (--save-config data.yaml writes them): save them as a file, e.g. data.yaml, and give it "
    "after your recipe: python train.py fit --config configs/finetune-folder.yaml --config data.yaml. A later --config "
    "merges key by key: it sets data and "
    "model.loss and keeps the recipe's other settings (learning rate, schedule); pasted into the recipe beside its "
    "own data: or model: key, it would replace that whole block."
)  # ends the problems that the recommended settings fix


@dataclass
class _Mask:
    """What one read of a mask file (and its image's header) found."""

    split: str
    image: Path
    path: Path
    kind: str = "other"  # "index" (L), "palette" (P), "16-bit" (I;16 / I), "rgb" (RGB / RGBA) or "other"
    mode: str = ""
    size: tuple[int, int] | None = None  # (width, height)
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # present values (rgb: 0xRRGGBB)
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # pixels of each value
    widths: dict[int, tuple[int, int]] = field(default_factory=dict)  # value -> (pixels, edge pixels), for 0 / ignore
    edges: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rgb: edge pixels of each colour
    palette: list[int] | None = None
    error: str | None = None
    image_size: tuple[int, int] | None = None
    image_error: str | None = None
    image_mode: str = ""
    image_max: int | None = None  # the largest value of a 16-bit image


@dataclass
class DatasetReport:
    """What :func:`check_dataset` found; ``str(report)`` is the text ``segzoo data check`` prints.

    Attributes:
        data_root: The folder checked.
        num_classes: The number of classes given to the check (``None``: inferred from the values).
        ignore_index: The mask value given as "not labelled".
        layout: "split folders", "split files" or "no split".
        num_images: Images per split ("all" when there is no split).
        num_masks: Masks read.
        encodings: Masks per encoding: "index" (mode L), "palette" (P), "16-bit", "rgb", or a PIL mode.
        modes: Masks per PIL mode.
        values: Pixels per mask value (index masks), before any mapping.
        value_masks: Masks holding each value.
        colors: Pixels per RGB colour (colour masks).
        color_masks: Masks holding each colour.
        palette: The palette colour of each value of palette PNGs.
        missing_masks: (image, the mask path looked for) of images without a mask.
        orphan_masks: Mask files no image pairs with.
        size_mismatches: (image, mask, image (width, height), mask (width, height)).
        unreadable: (file, why) of images and masks that cannot be read.
        unlearnable: Masks with no labelled pixel under the recommended settings (nothing to learn from them).
        findings: What the masks look like, each with its reason ("looks like" where it is a guess).
        warnings: Things to look at that do not stop training.
        problems: Why the data cannot be trained on as is; empty when it can.
        settings: The recommended ``data.init_args`` of a recipe (FolderDataModule arguments).
        class_weight: Recommended ``CrossEntropyLoss`` class weights, or ``None`` when the classes are balanced.
        weight_rule: How the class weights were computed.
        class_pixels: Pixels per class index under the recommended settings (train split when there is one).
    """

    data_root: Path
    num_classes: int | None = None
    ignore_index: int = IGNORE_INDEX
    layout: str = ""
    num_images: dict[str, int] = field(default_factory=dict)
    num_masks: int = 0
    encodings: Counter = field(default_factory=Counter)
    modes: Counter = field(default_factory=Counter)
    values: dict[int, int] = field(default_factory=dict)
    value_masks: dict[int, int] = field(default_factory=dict)
    colors: dict[tuple[int, int, int], int] = field(default_factory=dict)
    color_masks: dict[tuple[int, int, int], int] = field(default_factory=dict)
    palette: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    missing_masks: list[tuple[Path, Path]] = field(default_factory=list)
    orphan_masks: list[Path] = field(default_factory=list)
    size_mismatches: list[tuple[Path, Path, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    unlearnable: list[Path] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    class_weight: list[float] | None = None
    class_pixels: list[int] = field(default_factory=list)
    weight_rule: str = ""

    @property
    def ok(self) -> bool:
        """Whether the data can be trained on as is (no problems)."""
        return not self.problems

    @property
    def exit_status(self) -> int:
        """``segzoo data check``'s exit status: 0 when the data can be trained on as is, 1 otherwise."""
        return 0 if self.ok else 1

    def mapped(self, value: int) -> int | None:
        """The class index (or 255, ignore) an index-mask value gets under the recommended settings."""
        if value > 255 or not self.settings:
            return None
        table = folder_label_table(self.settings.get("label_map"), self.settings.get("reduce_zero_label", False))
        return int(table[value]) if table is not None else value

    @property
    def recommended_yaml(self) -> str:
        """The recommended settings as a config file to give after the recipe (``data:`` and, for class weights,
        ``model: loss:``): ``--config recipe.yaml --config data.yaml`` merges them key by key into the recipe."""
        if not self.settings:
            return ""
        s = self.settings
        lines = [
            "# segzoo data check: give this file after the recipe (--config <recipe> --config <this file>)",
            "data:",
            "  class_path: segzoo.data.FolderDataModule",
            "  init_args:",
            f"    data_root: {json.dumps(str(s['data_root']))}",
            f"    num_classes: {s['num_classes']}",
            f"    reduce_zero_label: {'true' if s['reduce_zero_label'] else 'false'}",
        ]
        if s.get("label_map"):
            pairs = ", ".join(f"{source}: {target}" for source, target in sorted(s["label_map"].items()))
            lines.append(f"    label_map: {{{pairs}}}")
        if s.get("colors"):
            lines.append(f"    colors: {json.dumps(s['colors'])}")
        lines.append("    # pixels that are 255 after these settings are ignored (segzoo's ignore_index, fixed at 255)")
        if self.class_weight is not None:
            lines += [
                "model:",
                "  loss:",
                "    class_path: segzoo.training.CrossEntropyLoss",
                "    init_args:",
                f"      class_weight: {json.dumps(self.class_weight)}  # {self.weight_rule}",
            ]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        splits = ", ".join(f"{split} {count}" for split, count in self.num_images.items())
        out = [f"Dataset {self.data_root} ({self.layout}; images: {splits or 'none'})"]
        kinds = ", ".join(f"{_KIND_NAMES.get(kind, 'mode ' + kind)}: {count}" for kind, count in self.encodings.items())
        out.append(f"Masks read: {self.num_masks}" + (f" ({kinds})" if kinds else ""))
        out += self._table()
        for title, items in (
            ('Findings ("looks like" is a guess; the reason follows it)', self.findings),
            ("Warnings (training runs, but look at these)", self.warnings),
            ("Problems (the data cannot be trained on as is)", self.problems),
        ):
            if items:
                out += ["", f"{title}:"] + [_wrap(item) for item in items]
        if self.settings:
            out += ["", _wrap(RECOMMENDED_HOW, "", ""), ""]
            out += ["  " + line for line in self.recommended_yaml.splitlines()]
        out.append("")
        if self.ok:
            out.append("Result: OK, the data can be trained on as is (with the settings above).")
        else:
            fixed = sum(problem.endswith(FIXED) for problem in self.problems)
            which = "all" if fixed == len(self.problems) else f"{fixed} of them" if fixed else "none of them"
            out.append(f"Result: {len(self.problems)} problem(s), {which} fixed by the settings above: exit status 1.")
        return "\n".join(out)

    def _table(self) -> list[str]:
        num_classes = self.num_classes
        total = sum(self.values.values()) + sum(self.colors.values())
        if self.values:
            colour_head = f"  {'palette colour':>15}" if self.palette else ""
            header = f"  {'value':>6}{colour_head}  {'pixels':>12}  {'share':>7}  {'masks':>11}  {'trains as':>9}  note"
            rows = []
            for value in sorted(self.values)[:MAX_ROWS]:
                note = []
                if value == self.ignore_index:
                    note.append("ignore")
                elif num_classes is not None and value >= num_classes:
                    note.append(f">= num_classes ({num_classes})")
                mapped = self.mapped(value)
                trains_as = "-" if mapped is None else "ignore" if mapped == IGNORE_INDEX else str(mapped)
                colour = f"  {str(self.palette.get(value, '')):>15}" if self.palette else ""
                rows.append(
                    f"  {value:>6}{colour}  {self.values[value]:>12,}  {self.values[value] / total:>7.2%}  "
                    f"{self.value_masks[value]:>5} / {self.num_masks:<3}  {trains_as:>9}  {', '.join(note)}"
                )
            more = len(self.values) - MAX_ROWS
            title = "Mask values (pixels of all masks, before any mapping; 'trains as' = with the settings below):"
            return ["", title, header, *rows] + ([f"  ... and {more} more values"] if more > 0 else [])
        if self.colors:
            colors = self.settings.get("colors") or []
            header = f"  {'colour (R, G, B)':>16}  {'pixels':>12}  {'share':>7}  {'masks':>11}  trains as"
            rows = []
            for colour, pixels in sorted(self.colors.items(), key=lambda item: -item[1])[:MAX_ROWS]:
                index = colors.index(list(colour)) if list(colour) in colors else "ignore"
                rows.append(
                    f"  {str(colour):>16}  {pixels:>12,}  {pixels / total:>7.2%}  "
                    f"{self.color_masks[colour]:>5} / {self.num_masks:<3}  {index}"
                )
            more = len(self.colors) - MAX_ROWS
            return ["", "Mask colours (most pixels first):", header, *rows] + (
                [f"  ... and {more} more colours"] if more > 0 else []
            )
        return []


_KIND_NAMES = {
    "index": "index masks (mode L)",
    "palette": "palette PNGs (mode P)",
    "16-bit": "16-bit masks",
    "rgb": "RGB colour masks",
}


def check_dataset(
    data_root: str | Path, num_classes: int | None = None, ignore_index: int = IGNORE_INDEX, progress: bool = True
) -> DatasetReport:
    """Read every mask of a folder dataset once and report what training needs to know.

    Reads the layouts of :class:`~segzoo.data.FolderDataModule` (``images/{train,val}/`` + ``masks/{train,val}/``,
    or ``images/`` + ``masks/`` + ``train.txt`` / ``val.txt``) and also a bare ``images/`` + ``masks/`` pair without
    splits. Images are only opened for their size (the header, EXIF orientation applied as training applies it).

    Args:
        data_root: Folder holding ``images/`` and ``masks/``.
        num_classes: The number of classes you mean to train, if you know it (values at or above it are reported).
        ignore_index: The mask value that means "not labelled" in your masks.
        progress: Show a progress bar (on stderr) while the masks are read.

    Returns:
        The report: ``print(report)`` for the text, ``report.exit_status`` (1 when the data cannot be trained on as
        is), ``report.recommended_yaml`` and ``report.settings`` for the recommended FolderDataModule arguments.

    Raises:
        FileNotFoundError: If ``data_root``, ``images/`` or ``masks/`` is missing (a one-line message).
        ValueError: If ``num_classes`` or ``ignore_index`` is out of range.
    """
    if num_classes is not None and not 0 < num_classes < 255:
        raise ValueError(f"num_classes must be from 1 to 254 (255 means ignore), got {num_classes}")
    if not 0 <= ignore_index <= 255:
        raise ValueError(f"ignore_index must be an 8-bit mask value (0 to 255), got {ignore_index}")
    root = Path(data_root).expanduser()
    _check_layout(root)
    report = DatasetReport(root, num_classes, ignore_index)
    samples = _find_samples(root, report)
    masks = _read_masks(samples, ignore_index, progress)
    _summarise(report, masks)
    if any(mask.kind == "rgb" for mask in masks):
        _recommend_colors(report, masks)
    else:
        _recommend_index(report, masks)
    return report


# --- files -----------------------------------------------------------------------------------------------------------


def _check_layout(root: Path) -> None:
    """A one-line error for a folder that is not a folder dataset at all."""
    layout = (
        "a folder dataset is images/ + masks/ with the same file names (masks as .png), split by images/train/ + "
        "images/val/ subfolders (and masks/train/, masks/val/) or by train.txt + val.txt listing image names"
    )
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"'{root}' {what}: give the folder that holds images/ and masks/")
    for folder in ("images", "masks"):
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"'{root}' has no {folder}/ folder: {layout}")


def _find_samples(root: Path, report: DatasetReport) -> list[tuple[str, Path, Path]]:
    """(split, image, mask) of every image with a mask, pairing them as FolderDataModule does (``find_split``);
    records missing masks, masks without images and missing splits in the report."""
    if (root / "images" / "train").is_dir():
        report.layout = "split folders"
    elif any((root / f"{split}.txt").is_file() for split in SPLITS):
        report.layout = "split files"
    else:
        report.layout = "no split"
    groups: dict[str, tuple[dict[str, Path], Path]] = {}
    same_name: list[list[Path]] = []
    if report.layout == "no split":
        found = find_split(root, None)
        groups["all"] = (found.images, found.mask_dir)
        same_name += found.same_name
        report.problems.append(
            "no train/val split: FolderDataModule reads images/train/ + images/val/ (with masks/train/, masks/val/) "
            "or train.txt + val.txt in the folder, listing image names without extension (one per line)"
        )
    for split in SPLITS if report.layout != "no split" else ():
        found = find_split(root, split)
        if found is None:
            if split != "test":
                where = root / "images" / split if report.layout == "split folders" else root / f"{split}.txt"
                report.problems.append(f"no {split} split: '{where}' is missing (training needs train and val)")
            continue
        if found.unknown:
            report.problems.append(
                f"{len(found.unknown)} name(s) in {split}.txt have no image under images/, e.g. '{found.unknown[0]}' "
                "(names are paths under images/ without extension)"
            )
        if not found.images:
            where = root / "images" / split if report.layout == "split folders" else root / f"{split}.txt"
            if split == "test":
                report.warnings.append(
                    f"the test split ('{where}') has no images: `test` would stop at it; remove "
                    "it to test on the val split"
                )
            else:
                report.problems.append(
                    f"the {split} split ('{where}') has no images: training needs train and val "
                    f"images ({', '.join(IMAGE_EXTENSIONS)})"
                )
        groups[split] = (found.images, found.mask_dir)
        same_name += [paths for paths in found.same_name if paths not in same_name]
    if same_name:
        report.problems.append(same_name_message(same_name[0], len(same_name)))

    samples, seen = [], set()
    for split, (images, mask_dir) in groups.items():
        report.num_images[split] = len(images)
        for key, image in images.items():
            mask = mask_dir / f"{key}.png"
            if not mask.is_file():
                report.missing_masks.append((image, mask))
            elif mask not in seen:
                seen.add(mask)
                samples.append((split, image, mask))
    if not any(report.num_images.values()):
        report.problems.append(f"no images found under '{root / 'images'}' ({', '.join(IMAGE_EXTENSIONS)})")
    if report.layout == "split files":
        _check_split_files(root, report, groups)
    _find_orphans(root, report)
    return samples


def _check_split_files(root: Path, report: DatasetReport, groups: dict[str, tuple[dict[str, Path], Path]]) -> None:
    """Images in no split file, and images in several (validation on training images)."""
    listed = set().union(*(images for images, _ in groups.values())) if groups else set()
    unlisted = sorted(set(group_images(root / "images")) - listed)
    if unlisted:
        report.warnings.append(f"{len(unlisted)} image(s) are in no split file (never used), e.g. '{unlisted[0]}'")
    for first, second in (("train", "val"), ("train", "test"), ("val", "test")):
        both = sorted(set(groups[first][0]) & set(groups[second][0])) if first in groups and second in groups else []
        if both:
            report.problems.append(
                f"{len(both)} image(s) are listed in both {first}.txt and {second}.txt, e.g. '{both[0]}': the "
                f"{second} scores would be measured on images also in {first}; list each image in one split"
            )


def _find_orphans(root: Path, report: DatasetReport) -> None:
    """Mask files that pair with no image, and the naming mistakes that explain them."""
    # The pairing rule is the same in every layout: images/<name>.<ext> <-> masks/<name>.png
    found = find_split(root, None)
    mask_root = found.mask_dir
    expected = {mask_root / f"{key}.png" for key in found.images}
    orphans = [
        path
        for path in sorted(walk_files(mask_root))
        if path.is_file() and path not in expected and path.suffix.lower() in IMAGE_EXTENSIONS
    ]
    report.orphan_masks = orphans
    if report.missing_masks:
        n = len(report.missing_masks)
        image, mask = report.missing_masks[0]
        why = f"'{mask}' is a symbolic link to nothing" if mask.is_symlink() else f"looked for '{mask}'"
        report.problems.append(f"{n} image(s) have no mask, e.g. '{image}' ({why})")
    if not orphans:
        return
    report.warnings.append(f"{len(orphans)} mask(s) have no image (never used), e.g. '{orphans[0]}'")
    missing = {mask.relative_to(mask_root).with_suffix("").as_posix() for _, mask in report.missing_masks}
    keys = [path.relative_to(mask_root).with_suffix("").as_posix() for path in orphans]
    wrong_format = [path for path, key in zip(orphans, keys) if key in missing]
    if wrong_format:
        report.findings.append(
            f"{len(wrong_format)} mask(s) have their image's name but are not .png, e.g. '{wrong_format[0]}': masks "
            "must be PNG files (JPEG compression changes the class values); save them as PNG"
        )
    suffixes = Counter()
    for key in keys:
        for cut in (i for i, char in enumerate(key) if char in "_-." and i > key.rfind("/")):
            if key[:cut] in missing:
                suffixes[key[cut:]] += 1
    if suffixes:
        suffix, count = suffixes.most_common(1)[0]
        report.findings.append(
            f"{count} mask(s) are named like their image plus '{suffix}' (e.g. 'x{suffix}.png' for image 'x'): "
            "rename them to the image's name"
        )


def _image_header(path: Path) -> tuple[tuple[int, int], str]:
    """(width, height) of an image as training reads it, from its header (EXIF rotations by 90° swap the sides), and
    its mode."""
    with Image.open(path) as image:
        width, height = image.size
        # A PNG's getexif() decodes the whole file when the EXIF block is not in the header: look only there.
        if image.format != "PNG" or "exif" in image.info:
            if image.getexif().get(EXIF_ORIENTATION) in (5, 6, 7, 8):
                width, height = height, width
        return (width, height), image.mode


def _inspect_image(found: _Mask) -> None:
    """The image's size and mode from its header; images that are not 8-bit are read as training reads them (only
    those: decoding every photo would cost as much as the masks)."""
    if not found.image.exists():
        found.image_error = str(missing_file_error(found.image, "the image"))
        return
    try:
        found.image_size, found.image_mode = _image_header(found.image)
        if found.image_mode in WIDE_MODES + ("F",):
            image = load_image(found.image)
            image_to_rgb(image, f"'{found.image}'")  # raises where training would
            if found.image_mode in WIDE_MODES:
                found.image_max = int(np.asarray(image).max(initial=0))
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        found.image_error = str(err)


def _inspect(sample: tuple[str, Path, Path], ignore_index: int) -> _Mask:
    """Read one mask once (values and their pixel counts) and its image's header."""
    split, image, path = sample
    found = _Mask(split, image, path)
    _inspect_image(found)
    try:
        with Image.open(path) as img:
            found.mode, found.size = img.mode, img.size
            found.palette = img.getpalette() if img.mode == "P" else None
            array = np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as err:
        found.error = str(err)
        return found
    if found.mode in ("L", "P", "1"):
        found.kind = "palette" if found.mode == "P" else "index"
        counts = np.bincount(array.ravel().astype(np.uint8), minlength=256)
        found.values = np.flatnonzero(counts)
        found.counts = counts[found.values]
    elif found.mode in WIDE_MODES:
        found.kind = "16-bit"
        found.values, found.counts = np.unique(array, return_counts=True)
    elif found.mode in ("RGB", "RGBA"):
        found.kind = "rgb"
        rgb = array[..., :3].astype(np.int32)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        found.values, inverse, found.counts = np.unique(codes, return_inverse=True, return_counts=True)
        edge = _colour_edges(rgb, NEAR_COLOUR)
        found.edges = np.bincount(inverse.reshape(codes.shape)[edge], minlength=len(found.values))
        return found
    else:
        return found  # a mode no mask has (LA, F, CMYK, ...): reported as such
    for value in {0, ignore_index}:
        if value in found.values and len(found.values) > 1:
            found.widths[value] = _area_and_edge(array == value)
    return found


def _edge_pixels(values: np.ndarray) -> np.ndarray:
    """Pixels next to (4-neighbourhood) a pixel of another value; the image border is not an edge."""
    edge = np.zeros(values.shape, dtype=bool)
    edge[:-1] |= values[:-1] != values[1:]
    edge[1:] |= values[1:] != values[:-1]
    edge[:, :-1] |= values[:, :-1] != values[:, 1:]
    edge[:, 1:] |= values[:, 1:] != values[:, :-1]
    return edge


def _colour_edges(rgb: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels next to (4-neighbourhood) a pixel whose colour differs by more than ``tolerance`` in a channel: the
    edges of regions of one colour, JPEG's small shifts inside a region not counted."""
    edge = np.zeros(rgb.shape[:2], dtype=bool)
    rows = (np.abs(rgb[:-1] - rgb[1:]) > tolerance).any(axis=-1)
    cols = (np.abs(rgb[:, :-1] - rgb[:, 1:]) > tolerance).any(axis=-1)
    edge[:-1] |= rows
    edge[1:] |= rows
    edge[:, :-1] |= cols
    edge[:, 1:] |= cols
    return edge


def _area_and_edge(region: np.ndarray) -> tuple[int, int]:
    """Pixels of a region and those of them next to (4-neighbourhood) a pixel outside it; the image border is not
    an edge. A band w pixels wide has 2 * area / edge = w: the mean width."""
    return int(region.sum()), int((region & _edge_pixels(region)).sum())


def _read_masks(samples: list[tuple[str, Path, Path]], ignore_index: int, progress: bool) -> list[_Mask]:
    # PNG decoding releases the GIL: threads read several masks at once
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(partial(_inspect, ignore_index=ignore_index), samples)
        if progress:
            from rich.console import Console
            from rich.progress import track

            results = track(results, total=len(samples), description="Reading masks", console=Console(stderr=True))
        return list(results)


# --- what the masks hold ---------------------------------------------------------------------------------------------


def _summarise(report: DatasetReport, masks: list[_Mask]) -> None:
    """Encodings, unreadable files, size mismatches and the value / colour tables."""
    report.num_masks = len(masks)
    for mask in masks:
        if mask.image_error is not None:
            report.unreadable.append((mask.image, mask.image_error))
        if mask.error is not None:
            report.unreadable.append((mask.path, mask.error))
            continue
        report.encodings[mask.kind if mask.kind != "other" else mask.mode] += 1
        report.modes[mask.mode] += 1
        if mask.image_size is not None and mask.image_size != mask.size:
            report.size_mismatches.append((mask.image, mask.path, mask.image_size, mask.size))
    _describe_image_depths(report, masks)
    if report.unreadable:
        path, why = report.unreadable[0]
        report.problems.append(f"{len(report.unreadable)} file(s) cannot be read, e.g. '{path}': {why}")
    if report.size_mismatches:
        image, mask, image_size, mask_size = report.size_mismatches[0]
        report.problems.append(
            f"{len(report.size_mismatches)} mask(s) differ in size from their image, e.g. '{mask}' is "
            f"{mask_size[0]}x{mask_size[1]} but '{image}' is {image_size[0]}x{image_size[1]} (width x height, EXIF "
            "rotation applied as training applies it): each mask must have its image's size"
        )
    others = sorted(mode for mode in report.encodings if mode not in _KIND_NAMES)
    if others:
        example = next(mask.path for mask in masks if mask.mode == others[0])
        report.problems.append(
            f"masks of mode {', '.join(others)} (e.g. '{example}') are not masks segzoo reads: save class indices as "
            "single-channel PNGs (mode L or P)"
        )
    index_masks = [mask for mask in masks if mask.kind in INDEX_KINDS]
    rgb_masks = [mask for mask in masks if mask.kind == "rgb"]
    if index_masks and rgb_masks:
        report.problems.append(
            f"masks mix RGB colours ({len(rgb_masks)}, e.g. '{rgb_masks[0].path}') and class indices "
            f"({len(index_masks)}, e.g. '{index_masks[0].path}'): give every mask the same encoding"
        )
    if index_masks:
        report.values, report.value_masks = _totals(index_masks)
        for mask in index_masks:
            if mask.palette is not None:
                for value in map(int, mask.values):
                    if len(mask.palette) >= 3 * value + 3:
                        report.palette.setdefault(value, tuple(mask.palette[3 * value : 3 * value + 3]))
    elif rgb_masks:
        pixels, in_masks = _totals(rgb_masks)
        report.colors = {_rgb(code): count for code, count in pixels.items()}
        report.color_masks = {_rgb(code): count for code, count in in_masks.items()}


def _describe_image_depths(report: DatasetReport, masks: list[_Mask]) -> None:
    """How images that are not 8-bit are read (as training and predict read them), and 16-bit images that would be
    nearly black that way."""
    wide = [mask for mask in masks if mask.image_max is not None]
    if wide:
        report.findings.append(
            f"{len(wide)} image(s) are 16-bit (e.g. '{wide[0].image}', mode {wide[0].image_mode}): training and "
            "predict read them by their high byte (value // 256), as OpenCV (mmseg's reader) does"
        )
        dark = [mask for mask in wide if mask.image_max < DARK_16_BIT]
        if dark:
            brightest = max(mask.image_max for mask in dark)
            report.warnings.append(
                f"{len(dark)} 16-bit image(s) hold only small values (at most {brightest}, e.g. '{dark[0].image}'): "
                f"read by their high byte they are nearly black (0..{brightest >> 8} of 255); scale them to the 16-bit "
                "range, or convert them to 8-bit yourself"
            )
    floats = [mask for mask in masks if mask.image_mode == "F" and mask.image_error is None]
    if floats:
        report.findings.append(
            f"{len(floats)} image(s) are 32-bit float (e.g. '{floats[0].image}'), with values in 0–1: read as 0–1 "
            "(times 255), in training and predict alike"
        )


def _totals(masks: list[_Mask], split: str | None = None) -> tuple[dict[int, int], dict[int, int]]:
    """Pixels per value over ``masks`` (of ``split`` if given), and the number of masks holding each value."""
    chosen = [mask for mask in masks if split is None or mask.split == split]
    if not chosen:
        return {}, {}
    values = np.concatenate([mask.values for mask in chosen])
    counts = np.concatenate([mask.counts for mask in chosen])
    unique, inverse, in_masks = np.unique(values, return_inverse=True, return_counts=True)
    pixels = np.bincount(inverse, weights=counts, minlength=len(unique))
    return (
        {int(v): int(p) for v, p in zip(unique, pixels)},
        {int(v): int(m) for v, m in zip(unique, in_masks)},
    )


def _rgb(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def _mean_width(masks: list[_Mask], value: int) -> float | None:
    """Mean width (px) of the regions of ``value`` over the masks that also hold other values; None if none do."""
    area = sum(mask.widths[value][0] for mask in masks if value in mask.widths)
    edge = sum(mask.widths[value][1] for mask in masks if value in mask.widths)
    return 2 * area / edge if edge else None


def _share(report: DatasetReport, value: int) -> str:
    total = sum(report.values.values())
    return f"{report.value_masks[value]} of {report.num_masks} masks, {report.values[value] / total:.1%} of the pixels"


# --- recommendations -------------------------------------------------------------------------------------------------


def _recommend_index(report: DatasetReport, masks: list[_Mask]) -> None:
    """Settings for index masks: num_classes, reduce_zero_label, label_map; and the findings behind them."""
    masks = [mask for mask in masks if mask.kind in INDEX_KINDS]
    if not masks:
        return
    ignore, num_classes = report.ignore_index, report.num_classes
    present = set(report.values)
    wide = sorted(v for v in present if v > 255)
    if wide:
        report.problems.append(
            f"masks hold values above 255 (up to {max(wide)}; {len(wide)} such values): segzoo reads 8-bit class "
            "indices; map the values to 0..254 (255 = ignore) and save 8-bit PNGs"
        )
    _describe_encodings(report)

    label_map = {ignore: IGNORE_INDEX} if ignore != IGNORE_INDEX else {}
    labelled = sorted(v for v in present if v != ignore)
    labels = [v for v in labelled if v < IGNORE_INDEX]  # 255 is segzoo's ignore value, whatever the user's is
    if ignore != IGNORE_INDEX and IGNORE_INDEX in present:
        report.findings.append(
            f"255 is in {_share(report, 255)}: segzoo ignores 255 (its fixed ignore_index); to make it a class, "
            "add it to label_map"
        )
    reduce = False
    if present == {0, 255}:
        label_map[255] = 1
        recommended = 2
        report.findings.append(
            f"the masks hold only 0 and 255: looks like binary masks, 0 = background and 255 = foreground (255 is in "
            f"{_share(report, 255)}). As is, 255 would be ignored (segzoo's ignore value), leaving only background "
            "to learn: map 255 to class 1 (label_map {255: 1}) and train two classes (binary segmentation is a "
            "two-class softmax)"
        )
        if num_classes not in (None, 2):
            report.findings.append(
                f"num_classes={num_classes}: one foreground class is trained as two classes, background 0 and "
                "foreground 1 (the metrics log the foreground IoU on its own)"
            )
    elif num_classes == 1 and set(labels) == {0, 1}:
        recommended = 2
        report.findings.append(
            f"the masks hold 0 and 1 with num_classes=1: looks like binary masks, 0 = background and 1 = foreground "
            f"(1 is in {_share(report, 1)}). Binary segmentation is a two-class softmax: train two classes, background "
            "0 and foreground 1 (the metrics log the foreground IoU on its own); a one-class model cannot be trained"
        )
        _describe_ignore(report, masks)
    elif labels:
        reduce = _zero_is_unlabelled(report, masks, labels)
        recommended = max(labels) if reduce else max(labels) + 1
        if num_classes is not None and num_classes > recommended:
            recommended = num_classes
        elif num_classes is not None and num_classes < recommended:
            report.findings.append(
                f"num_classes={num_classes} is too small for these values: the settings below use {recommended} "
                f"(or send the extra values to 255 = ignore with label_map)"
            )
        _describe_ignore(report, masks)
        if num_classes is None and recommended >= 10 and len(labels) <= recommended // 2:
            compact = {v: i for i, v in enumerate(labels)}
            report.findings.append(
                f"only {len(labels)} of the {recommended} class indices occur: if these values are the ids of "
                f"{len(labels)} classes, label_map {_flow(compact)} with num_classes {len(labels)} makes them 0.."
                f"{len(labels) - 1}"
            )
    else:
        recommended = num_classes or 1
    report.settings = {
        "data_root": str(report.data_root),
        "num_classes": recommended,
        "reduce_zero_label": reduce,
    }
    if label_map:
        report.settings["label_map"] = label_map

    table = folder_label_table(label_map, reduce)

    def mapped(value: int) -> int:
        return int(table[value]) if table is not None and value <= 255 else value

    # The data as is: FolderDataModule without mapping, the ignore value left out.
    classes = {mapped(v) for v in present if mapped(v) < recommended}
    if num_classes is not None:
        too_big = [v for v in labelled if v >= num_classes]
        if too_big:
            shown = ", ".join(map(str, too_big[:10])) + (" ..." if len(too_big) > 10 else "")
            report.problems.append(
                f"value(s) {shown} >= num_classes ({num_classes}) and not the ignore value {ignore}: training "
                "stops at the first mask holding one" + (FIXED if all(v <= 255 for v in too_big) else "")
            )
    if not labelled:
        report.problems.append(f"no labelled pixel: every mask pixel is {ignore} (ignore), so the loss is zero")
    elif len(labelled) == 1:
        report.problems.append(
            f"every labelled pixel has the value {labelled[0]} ({ignore} is ignored): there is nothing to tell apart, "
            "the model would learn to predict one class everywhere" + (FIXED if len(classes) > 1 else "")
        )
    _class_balance(report, masks, mapped, recommended)


def _describe_encodings(report: DatasetReport) -> None:
    if report.encodings["palette"]:
        shown = ", ".join(f"{v} {colour}" for v, colour in sorted(report.palette.items())[:12])
        report.findings.append(
            f"{report.encodings['palette']} mask(s) are palette PNGs (mode P): their values are palette indices, and "
            f"the indices are the class ids training reads (the colours are for display only): {shown}"
        )
    if report.encodings["16-bit"]:
        modes = ", ".join(sorted(mode for mode in report.modes if mode in WIDE_MODES))
        report.findings.append(
            f"{report.encodings['16-bit']} mask(s) are 16/32-bit integer images (mode {modes}); read as 8-bit when "
            "every value is at most 255"
        )


def _zero_is_unlabelled(report: DatasetReport, masks: list[_Mask], labels: list[int]) -> bool:
    """Whether 0 looks like "unlabelled" rather than a class (reduce_zero_label); adds the finding that says why."""
    num_classes, top = report.num_classes, max(labels)
    if 0 not in labels:
        if num_classes is not None and top < num_classes:
            report.findings.append(
                f"0 never occurs and values run {min(labels)}..{top}: if your classes are numbered from 1, set "
                "reduce_zero_label: true (class 0 would never be seen otherwise)"
            )
            return False
        report.findings.append(
            f"0 never occurs and values run {min(labels)}..{top}: looks like classes numbered from 1 (0 = unlabelled, "
            f"as in ADE20K): reduce_zero_label: true makes them 0..{top - 1}"
        )
        return True
    width = _mean_width(masks, 0)
    width_text = f"its regions are {width:.1f} px wide on average" if width is not None else "it fills whole masks"
    if num_classes is not None:
        if top == num_classes:
            report.findings.append(
                f"values run 0..{top} with num_classes={num_classes}: one value too many, so 0 looks like "
                f"'unlabelled' (as in ADE20K's 0) rather than a class ({_share(report, 0)}; {width_text}): "
                f"reduce_zero_label: true ignores 0 and shifts 1..{top} to 0..{top - 1}. If 0 is a class of yours, "
                f"num_classes is {top + 1} instead"
            )
            return True
        report.findings.append(f"0 looks like a class (values 0..{top} fit num_classes={num_classes}; {width_text})")
        return False
    if width is not None and width < THIN_WIDTH and top >= 2:
        report.findings.append(
            f"0 looks like 'unlabelled' borders, not a class: {width_text} (thin lines between other values, as "
            f"ADE20K's 0 often is; {_share(report, 0)}): reduce_zero_label: true ignores 0 and shifts 1..{top} to "
            f"0..{top - 1}. If 0 is a background class, keep reduce_zero_label: false and num_classes {top + 1}"
        )
        return True
    report.findings.append(
        f"0 looks like a background class: {width_text}, not thin borders ({_share(report, 0)}); so num_classes "
        f"{top + 1} (0..{top}). If 0 means 'unlabelled' (as in ADE20K), use reduce_zero_label: true and num_classes "
        f"{top}"
    )
    return False


def _describe_ignore(report: DatasetReport, masks: list[_Mask]) -> None:
    """Where the ignore value is used: thin borders (as VOC's 255) or areas."""
    ignore = report.ignore_index
    if ignore not in report.values:
        return
    width = _mean_width(masks, ignore)
    share = _share(report, ignore)
    if width is None:
        report.findings.append(f"{ignore} (ignore) is in {share}, always filling the whole mask")
    elif width < THIN_WIDTH:
        report.findings.append(
            f"{ignore} (ignore) is in {share}; its regions are thin ({width:.1f} px wide on average) and lie between "
            "other values: looks like ignore borders around objects (as in Pascal VOC), left out of the loss"
        )
    else:
        report.findings.append(
            f"{ignore} (ignore) is in {share}; its regions are {width:.1f} px wide on average: looks like unlabelled "
            f"areas (left out of the loss). If {ignore} is a class of yours, map it to a class index with label_map"
        )


def _recommend_colors(report: DatasetReport, masks: list[_Mask]) -> None:
    """Settings for RGB colour masks: the colour of each class index (``colors``); and whether lossy compression or
    a blending resize damaged the masks (thin fringes of stray colours, which no colour list can map)."""
    masks = [mask for mask in masks if mask.kind == "rgb"]
    total = sum(report.colors.values())
    width = _colour_widths(masks)
    fringe = {colour for colour in report.colors if width[colour] < FRINGE_WIDTH}
    fringe_pixels = sum(report.colors[colour] for colour in fringe)
    damaged = fringe_pixels >= DAMAGE_SHARE * total
    areas = {colour: pixels for colour, pixels in report.colors.items() if colour not in fringe}
    if damaged:  # the shifted copies of one colour inside a region count as that colour
        areas = _merge_near_colours(areas, NEAR_COLOUR)
    kept = [colour for colour, pixels in areas.items() if pixels >= MIN_COLOUR_SHARE * total]
    if len(kept) > 254:  # class indices stop at 254 (255 = ignore): keep the most frequent colours
        kept = sorted(kept, key=lambda colour: -report.colors[colour])[:254]
    kept.sort()  # by (R, G, B): black, if present, is class 0
    report.problems.append(
        f"{len(masks)} mask(s) are RGB colour images (e.g. '{masks[0].path}'): FolderDataModule reads class "
        "indices; give it colors, each class's colour, or convert the masks to class indices" + FIXED
    )
    shown = ", ".join(str(colour) for colour in sorted(report.colors)[:12])
    more = f" and {len(report.colors) - 12} more" if len(report.colors) > 12 else ""
    report.findings.append(
        f"{len(report.colors)} distinct colours: {shown}{more}. Proposed colors: the {len(kept)} colours that each "
        f"cover at least {MIN_COLOUR_SHARE:.2%} of the mask pixels in regions at least {FRINGE_WIDTH:g} px wide, "
        "ordered by (R, G, B) so that black, if present, is class 0; pixels of any other colour are ignored. Check "
        "the order against your class names"
    )
    if damaged:
        fringe_codes = np.array([(r << 16) | (g << 8) | b for r, g, b in fringe])
        worst = max(masks, key=lambda mask: int(mask.counts[np.isin(mask.values, fringe_codes)].sum()))
        report.problems.append(
            f"the colour masks look damaged by lossy (JPEG) compression or by a resize that blends colours: "
            f"{len(fringe)} colours in fringes under {FRINGE_WIDTH:g} px wide cover {fringe_pixels / total:.1%} of "
            f"the pixels (most in '{worst.path}'), beside {len(kept)} main colours (proposed below: the most frequent "
            "of each group of near colours, which may be shifted from the colours drawn). No colors setting can map "
            "them all (the rest would be ignored): export the masks again as PNG from the original drawing, resizing "
            "with nearest-neighbour interpolation, then check again"
        )
    rare = len(report.colors) - len(kept)
    if rare and not damaged:
        rare_pixels = total - sum(report.colors[colour] for colour in kept)
        report.warnings.append(
            f"{rare} colour(s) cover only {rare_pixels / total:.3%} of the pixels together and would be ignored: "
            "edge colours of a resize with interpolation, or of JPEG compression?"
        )
    if all(r == g == b for r, g, b in report.colors):
        report.findings.append(
            "every colour is a grey (R = G = B): these look like class-index masks saved as RGB; saving them as "
            "single-channel PNGs (mode L) keeps the values as class indices"
        )
    report.settings = {
        "data_root": str(report.data_root),
        "num_classes": len(kept),
        "reduce_zero_label": False,
        "colors": [list(colour) for colour in kept],
    }
    index = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(kept)}

    def mapped(code: int) -> int:
        return index.get(code, IGNORE_INDEX)

    _class_balance(report, masks, mapped, len(kept))


def _merge_near_colours(areas: dict[tuple[int, int, int], int], tolerance: int) -> dict[tuple[int, int, int], int]:
    """Colours grouped with a more frequent colour within ``tolerance`` in every channel: {the most frequent colour of
    each group: the group's pixels}."""
    merged: dict[tuple[int, int, int], int] = {}
    for colour, pixels in sorted(areas.items(), key=lambda item: -item[1]):
        near = next((kept for kept in merged if max(abs(a - b) for a, b in zip(colour, kept)) <= tolerance), None)
        merged[near or colour] = merged.get(near or colour, 0) + pixels
    return merged


def _colour_widths(masks: list[_Mask]) -> dict[tuple[int, int, int], float]:
    """The mean width (px) of each colour's regions over all colour masks (2 * pixels / edge pixels)."""
    pixels: Counter = Counter()
    edges: Counter = Counter()
    for mask in masks:
        for code, count, edge in zip(mask.values.tolist(), mask.counts.tolist(), mask.edges.tolist()):
            pixels[code] += count
            edges[code] += edge
    return {_rgb(code): 2 * pixels[code] / edges[code] if edges[code] else float("inf") for code in pixels}


def _class_balance(report: DatasetReport, masks: list[_Mask], mapped, num_classes: int) -> None:
    """Masks with nothing to learn under the settings, classes that never occur, and class weights (median-frequency
    balancing on the train split, or all masks without one)."""
    for mask in masks:
        if not any(mapped(int(v)) < num_classes for v in mask.values):
            report.unlearnable.append(mask.path)
    if report.unlearnable:
        report.warnings.append(
            f"{len(report.unlearnable)} mask(s) have no labelled pixel with the settings below (e.g. "
            f"'{report.unlearnable[0]}'): nothing to learn from them (their loss is zero)"
        )
    split = "train" if any(mask.split == "train" for mask in masks) else None
    pixels = np.zeros(num_classes, dtype=np.int64)
    for value, count in _totals(masks, split)[0].items():
        if mapped(value) < num_classes:
            pixels[mapped(value)] += count
    report.class_pixels = [int(p) for p in pixels]
    if not pixels.any():
        if not any("no labelled pixel" in problem for problem in report.problems):
            report.problems.append("no labelled pixel in the training masks, even with the settings below")
        return
    where = "train masks" if split else "masks"
    absent = [i for i, p in enumerate(pixels) if p == 0]
    if absent:
        shown = ", ".join(map(str, absent[:20])) + (" ..." if len(absent) > 20 else "")
        report.warnings.append(f"class(es) {shown} never occur in the {where} with the settings below")
    freq = pixels / pixels.sum()
    seen = freq > 0
    ratio = freq[seen].max() / freq[seen].min()
    if seen.sum() < 2 or ratio < IMBALANCE:
        report.findings.append(
            f"class frequencies in the {where} are within a factor {ratio:.1f}: plain cross-entropy, no class weights"
        )
        return
    low, high = WEIGHT_CLIP
    weights = np.where(seen, np.median(freq[seen]) / np.where(seen, freq, 1.0), 1.0).clip(low, high)
    report.class_weight = [float(f"{w:.3g}") for w in weights]
    report.weight_rule = f"median-frequency balancing, clipped to [{low:g}, {high:g}]"
    rare, common = int(np.argmin(np.where(seen, freq, np.inf))), int(np.argmax(freq))
    report.findings.append(
        f"classes are imbalanced in the {where}: class {common} has {freq[common]:.1%} of the labelled pixels, class "
        f"{rare} {freq[rare]:.2%} (a factor {ratio:.0f}). The loss below weights each class by the median class "
        f"frequency / its frequency (median-frequency balancing), clipped to [{low:g}, {high:g}]; classes that never "
        "occur get 1"
    )


def _wrap(item: str, first: str = "  - ", then: str = "    ") -> str:
    return textwrap.fill(
        item, width=116, initial_indent=first, subsequent_indent=then, break_long_words=False, break_on_hyphens=False
    )


def _flow(mapping: dict[int, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in mapping.items()) + "}"
