"""Where a folder dataset's files are and how they pair, and the label lookup tables: the part of
:class:`~segzoo.data.FolderDataModule` that ``segzoo data check`` shares with it, kept free of Lightning, torch and
albumentations so that the check starts at once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segzoo._images import IMAGE_EXTENSIONS, find_image_files

IGNORE_INDEX = 255  # the mask value of pixels left out of the loss and the metrics, everywhere in segzoo

FOLDER_LAYOUT = """
Either split folders:                       or split files listing names (paths under images/ without extension):
<data_root>/                                 <data_root>/
├── images/                                  ├── images/a.jpg, b.jpg, c.jpg ...
│   ├── train/a.jpg ...                      ├── masks/a.png, b.png, c.png ...
│   └── val/b.jpg ...                        ├── train.txt      (e.g. "a" and "b", one per line)
└── masks/                                   └── val.txt        (e.g. "c")
    ├── train/a.png ...
    └── val/b.png ...
Masks are single-channel PNGs with the image's name and size, holding class indices 0..num_classes-1 and 255 for
"ignore" (or 1..num_classes with 0 = unlabelled when reduce_zero_label=True; RGB colour masks with colors=...). A
test/ folder or test.txt is optional (the val split is used for testing otherwise). `segzoo data check <data_root>`
checks a folder and prints the settings it needs.
"""


def identity_label_map() -> np.ndarray:
    """Lookup table that keeps every 8-bit label as it is."""
    return np.arange(256, dtype=np.uint8)


def reduce_zero_label_map() -> np.ndarray:
    """Lookup table for ``reduce_zero_label``: 0 (background / unlabelled) -> 255, k -> k - 1, 255 stays 255."""
    table = np.arange(-1, 255, dtype=np.int32)
    table[0] = IGNORE_INDEX
    table[255] = IGNORE_INDEX
    return table.astype(np.uint8)


def label_map_from_dict(mapping: Mapping[int, int], default: int = IGNORE_INDEX) -> np.ndarray:
    """Lookup table sending each key of ``mapping`` to its value and every other 8-bit label to ``default``."""
    table = np.full(256, default, dtype=np.uint8)
    for source, target in mapping.items():
        table[source] = target
    return table


def folder_label_table(label_map: Mapping[int, int] | None, reduce_zero_label: bool) -> np.ndarray | None:
    """The 256-entry lookup table of :class:`FolderDataModule`: ``label_map`` first (values it does not name keep
    their value), then ``reduce_zero_label``; ``None`` when neither is set."""
    if not label_map and not reduce_zero_label:
        return None
    table = identity_label_map()
    for source, target in (label_map or {}).items():
        table[source] = target
    return reduce_zero_label_map()[table] if reduce_zero_label else table


def read_class_names(classes: Sequence[str] | str | Path, data_root: Path) -> list[str]:
    """Class names from a list, or from a text file (one name per line) given as a path, absolute or under data_root."""
    if not isinstance(classes, (str, Path)):
        names = [str(name) for name in classes]
    else:
        path = Path(classes).expanduser()
        if not path.is_file() and (data_root / path).is_file():
            path = data_root / path
        if not path.is_file():
            raise FileNotFoundError(
                f"Classes file '{classes}' not found (also looked under '{data_root}'). Pass a list of class names or "
                "the path of a text file with one name per line."
            )
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise ValueError("classes is empty; give at least one class name.")
    return names


def group_images(folder: Path) -> dict[str, list[Path]]:
    """Image files under ``folder`` (recursively, symbolic links followed), grouped by their name: the path relative
    to ``folder`` without the extension. A group of two (``a.jpg`` and ``a.png``) is two images for one mask."""
    groups: dict[str, list[Path]] = {}
    for path in find_image_files(folder):
        groups.setdefault(path.relative_to(folder).with_suffix("").as_posix(), []).append(path)
    return groups


def index_images(folder: Path) -> dict[str, Path]:
    """Image files under ``folder`` (recursively, symbolic links followed), keyed by their path relative to it
    without the extension.

    Raises:
        ValueError: If two images have the same name (``a.jpg`` and ``a.png``): both would pair with one mask.
    """
    groups = group_images(folder)
    same_name = next((paths for paths in groups.values() if len(paths) > 1), None)
    if same_name is not None:
        raise ValueError(same_name_message(same_name, sum(len(paths) > 1 for paths in groups.values())))
    return {name: paths[0] for name, paths in groups.items()}


def same_name_message(paths: Sequence[Path], count: int) -> str:
    shown = " and ".join(f"'{path}'" for path in paths)
    return (
        f"{count} image name(s) are used by more than one file, e.g. {shown}: each would pair with the same mask; "
        "rename or remove all but one"
    )


@dataclass
class SplitFiles:
    """The images of one split and where their masks should be (the mask of name ``n`` is ``<mask_dir>/<n>.png``).

    Attributes:
        images: The split's images keyed by name (path under the split's image folder, without extension); of
            several files with one name (``same_name``), the first.
        mask_dir: The folder of their masks.
        unknown: Names the split file lists that have no image.
        same_name: Groups of image files that share a name.
    """

    images: dict[str, Path]
    mask_dir: Path
    unknown: list[str] = field(default_factory=list)
    same_name: list[list[Path]] = field(default_factory=list)


def find_split(data_root: Path, split: str | None) -> SplitFiles | None:
    """Where the images of ``split`` are and where their masks should be: the pairing rule of
    :class:`FolderDataModule`, shared with ``segzoo data check``.

    Args:
        data_root: Folder holding ``images/`` and ``masks/``.
        split: "train", "val" or "test"; ``None`` for every image under ``images/`` (a folder without splits).

    Returns:
        The split's files; ``None`` if the data has no such split (no ``images/<split>/`` folder, or no
        ``<split>.txt``).

    Raises:
        FileNotFoundError: If ``images/`` or ``masks/`` is missing (the message shows the expected layout).
    """
    image_root, mask_root = data_root / "images", data_root / "masks"
    if not image_root.is_dir() or not mask_root.is_dir():
        missing = image_root if not image_root.is_dir() else mask_root
        raise FileNotFoundError(
            f"Folder dataset not found under '{data_root}'. Expected this layout:\n{FOLDER_LAYOUT.strip(chr(10))}\n"
            f"Missing folder: '{missing}'."
        )
    if split is None:
        groups, mask_dir = group_images(image_root), mask_root
    elif (image_root / "train").is_dir():
        if not (image_root / split).is_dir():
            return None
        groups, mask_dir = group_images(image_root / split), mask_root / split
    else:
        split_file = data_root / f"{split}.txt"
        if not split_file.is_file():
            return None
        every = group_images(image_root)
        names = [line.strip() for line in split_file.read_text().splitlines() if line.strip()]
        groups = {name: every[name] for name in names if name in every}
        unknown = [name for name in names if name not in every]
        return _split_files(groups, mask_root, unknown)
    return _split_files(groups, mask_dir, [])


def _split_files(groups: dict[str, list[Path]], mask_dir: Path, unknown: list[str]) -> SplitFiles:
    images = {name: paths[0] for name, paths in groups.items()}
    return SplitFiles(images, mask_dir, unknown, [paths for paths in groups.values() if len(paths) > 1])


__all__ = [
    "FOLDER_LAYOUT",
    "IGNORE_INDEX",
    "IMAGE_EXTENSIONS",
    "SplitFiles",
    "find_split",
    "folder_label_table",
    "group_images",
    "identity_label_map",
    "index_images",
    "label_map_from_dict",
    "read_class_names",
    "reduce_zero_label_map",
]
