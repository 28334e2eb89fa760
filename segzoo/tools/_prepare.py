"""``segzoo data prepare``: from the files the dataset sites distribute to the layouts segzoo's DataModules read.

No mmsegmentation is needed. Every output is written atomically (:mod:`segzoo._atomic`: in a temporary folder of its
own, then renamed into place; an error or Ctrl-C removes it), and outputs already present are kept as they are: a
second run does nothing, and a run interrupted at any point is finished by running it again. An archive is unpacked
into a temporary folder whose entries are renamed into place when complete (an interrupted unpacking starts that
archive again). Two runs into one
DST do not race: the second waits for the first (a lock on ``DST/.segzoo-prepare.lock``). Images are hard-linked from
SRC into DST, or copied where a hard link is impossible (another file system); they are not touched when SRC is DST.
Label maps are read (converted, or for ADE20K checked) as they are placed, so a truncated or corrupt one is named
here. At the end the DataModule of the dataset reads DST, and the report gives its image/label pairs per split.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from segzoo._atomic import atomic_write, staging_folder
from segzoo._errors import CorruptedFileError, DatasetSourceError, DatasetTargetError, SegzooError
from segzoo.data._ade20k import ADE20KDataModule
from segzoo.data._cityscapes import CITYSCAPES_LABEL_TO_TRAIN_ID, CityscapesDataModule
from segzoo.data._coco_stuff import COCO_STUFF_RAW_TO_TRAIN_ID, COCOStuffDataModule
from segzoo.data._dataset import read_mask
from segzoo.data._files import label_map_from_dict
from segzoo.data._pascal_context import PascalContextDataModule

DATASET_NAMES = ("ade20k", "cityscapes", "pascal-context", "coco-stuff")
_DISPLAY_NAMES = {
    "ade20k": "ADE20K", "cityscapes": "Cityscapes", "pascal-context": "PASCAL Context", "coco-stuff": "COCO-Stuff 164k"
}  # fmt: skip

# PASCAL-Context's 59 classes as category ids of trainval_merged.json (the 1-based ids of PASCAL-Context's 459-class
# labels.txt), in the order of PASCAL_CONTEXT_59_CLASSES: the sorted ids of mmsegmentation's
# tools/dataset_converters/pascal_context.py (`_mapping`). Class k of the 59 is stored as k + 1; 0 is background.
PASCAL_CONTEXT_59_CATEGORY_IDS = (
    2, 9, 18, 19, 22, 23, 25, 31, 33, 34, 44, 45, 46, 59, 65, 68, 72, 80, 85, 98, 104, 105, 113, 115, 144, 158, 159,
    162, 187, 189, 207, 220, 232, 258, 259, 260, 284, 295, 296, 308, 324, 326, 347, 349, 354, 355, 360, 366, 368, 397,
    415, 416, 420, 424, 427, 440, 445, 454, 458,
)  # fmt: skip

# Image/label pairs per split of the full releases (a smaller count is reported, not refused).
FULL_COUNTS = {
    "ade20k": {"train": 20210, "val": 2000},
    "cityscapes": {"train": 2975, "val": 500},
    "pascal-context": {"train": 4998, "val": 5105},
    "coco-stuff": {"train": 118287, "val": 5000},
}

_WORKERS = min(8, os.cpu_count() or 1)


@dataclass
class PrepareReport:
    """What :func:`prepare_dataset` found and did.

    Attributes:
        dataset: The dataset's name.
        dst: The prepared folder (the DataModule's ``data_root``).
        counts: Image/label pairs per split ("train", "val") in ``dst``, as the dataset's DataModule finds them.
        labels_written: Label maps converted and written.
        images_linked: Images (and ADE20K annotations) hard-linked from SRC into ``dst``.
        images_copied: Images (and ADE20K annotations) copied, where a hard link was impossible.
        lists_written: Split files written (PASCAL Context).
        extracted: Archives unpacked into ``dst``.
        kept: Outputs already present, left as they were.
        notes: Things worth knowing (e.g. a split smaller than the full release).
    """

    dataset: str
    dst: Path
    counts: dict[str, int] = field(default_factory=dict)
    labels_written: int = 0
    images_linked: int = 0
    images_copied: int = 0
    lists_written: int = 0
    extracted: list[str] = field(default_factory=list)
    kept: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def nothing_done(self) -> bool:
        """True when DST was already prepared and this run changed nothing."""
        written = self.labels_written + self.images_linked + self.images_copied + self.lists_written
        return written == 0 and not self.extracted

    def __str__(self) -> str:
        pairs = ", ".join(f"{split} {count}" for split, count in self.counts.items())
        if self.nothing_done:
            lines = [f"{self.dataset} in {self.dst} is already prepared: nothing to do ({pairs} image/label pairs)."]
        else:
            done = [f"extracted {', '.join(self.extracted)}"] if self.extracted else []
            for count, what in (
                (self.labels_written, "label maps written"),
                (self.lists_written, "split files written"),
                (self.images_linked, "files hard-linked"),
                (self.images_copied, "files copied"),
                (self.kept, "already present, kept"),
            ):
                if count:
                    done.append(f"{count} {what}")
            lines = [f"{self.dataset} prepared in {self.dst}: {pairs} image/label pairs.", f"  {'; '.join(done)}."]
        return "\n".join(lines + [f"  note: {note}" for note in self.notes])


def prepare_dataset(dataset: str, src: str | Path, dst: str | Path) -> PrepareReport:
    """Build the layout a segzoo DataModule reads from the files the dataset's site distributes.

    Args:
        dataset: "ade20k", "cityscapes", "pascal-context" or "coco-stuff".
        src: The downloaded files: the archives, or the folders they unpack to (see the README).
        dst: Where to write the prepared dataset, the DataModule's ``data_root``; may be ``src``.

    Returns:
        What was found and done, with the image/label pairs per split the DataModule finds in ``dst``.

    Raises:
        DatasetSourceError: A folder or archive missing from ``src`` (the message names it and where the dataset's
            site offers it), or an image without its label.
        ValueError: An unknown dataset name, or annotations that do not fit their image.
    """
    key = dataset.lower().replace("_", "-")
    preparers = {
        "ade20k": _prepare_ade20k,
        "cityscapes": _prepare_cityscapes,
        "pascal-context": _prepare_pascal_context,
        "coco-stuff": _prepare_coco_stuff,
    }
    if key not in preparers:
        raise ValueError(f"Unknown dataset {dataset!r}: segzoo prepares {', '.join(DATASET_NAMES)}.")
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise DatasetSourceError(f"The source folder '{src}' does not exist.")
    _make_writable_folder(dst)
    console = Console(stderr=True)
    with _only_run_in(dst, console), Progress(console=console) as progress:
        run = _Run(key, src, dst, progress)
        try:
            preparers[key](run)
        except OSError as err:
            if isinstance(err, SegzooError) or not (isinstance(err.filename, str) and _is_under(err.filename, dst)):
                raise
            raise DatasetTargetError(
                f"'{err.filename}': {err.strerror or err}; check that '{dst}' can be written (free space, permissions, "
                "a read-only disk), then run again to finish"
            ) from err
    for split, full in FULL_COUNTS[key].items():
        count = run.report.counts[split]
        if count != full:
            run.report.notes.append(f"the full release has {full} {split} pairs; this one has {count}.")
    return run.report


# --- the steps every dataset shares ------------------------------------------------------------------------------

_LOCK_NAME = ".segzoo-prepare.lock"


def _make_writable_folder(dst: Path) -> None:
    """Create DST (and its parents); a DST that is a file or cannot be written is a one-line error up front."""
    if dst.exists() and not dst.is_dir():
        raise DatasetTargetError(f"DST '{dst}' is a file: give a folder to write the prepared dataset to.")
    try:
        dst.mkdir(parents=True, exist_ok=True)
        probe = dst / f".segzoo-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise DatasetTargetError(
            f"Cannot write to DST '{dst}' ({err.strerror or err}): give a folder you can write to."
        ) from err


@contextlib.contextmanager
def _only_run_in(dst: Path, console: Console):
    """Hold an exclusive lock on DST while preparing it: a second run into the same folder waits for the first (then
    finds everything done) instead of racing it for the same temporary files. The lock goes with the process, so a
    killed run leaves none behind. Where file locks do not exist (Windows), runs are not serialised."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(dst / _LOCK_NAME, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print(
                f"another segzoo data prepare is writing into {dst}; waiting for it to finish",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _is_under(path: str, folder: Path) -> bool:
    return Path(os.path.abspath(path)).is_relative_to(os.path.abspath(folder))


@dataclass(frozen=True)
class _Source:
    """A folder of the dataset as its site distributes it: extracted in SRC, or as an archive in SRC."""

    folders: tuple[str, ...]  # where the extracted folder may be, relative to SRC (or to DST once extracted there)
    archive: str  # the archive's file name in SRC
    into: str  # the folder of DST the archive is unpacked into
    site: str  # what the dataset's site calls it and where


@dataclass
class _Run:
    name: str
    src: Path
    dst: Path
    progress: Any
    report: PrepareReport = field(init=False)

    def __post_init__(self) -> None:
        self.report = PrepareReport(_DISPLAY_NAMES[self.name], self.dst)

    def locate(self, source: _Source) -> Path:
        """The extracted folder, from SRC, from DST (extracted by an earlier run), or unpacked now from SRC."""
        for base in (self.src, self.dst):
            for folder in source.folders:
                if (base / folder).is_dir():
                    return base / folder
        archive = self.src / source.archive
        if not archive.is_file():
            raise DatasetSourceError(
                f"{self.report.dataset}: neither the folder '{self.src / source.folders[0]}' nor the archive "
                f"'{archive}' was found. Download {source.site}, and put the archive (or what it unpacks to) in "
                f"'{self.src}'."
            )
        self.extract(archive, self.dst / source.into)
        for folder in source.folders:
            if (self.dst / folder).is_dir():
                return self.dst / folder
        raise DatasetSourceError(
            f"{self.report.dataset}: '{archive}' holds no '{source.folders[0]}' folder; is it {source.site}?"
        )

    def extract(self, archive: Path, into: Path) -> None:
        """Unpack into a temporary folder of its own, then move its top-level entries into ``into``; the temporary
        folder is removed whatever happens (an interrupted unpacking starts that archive again)."""
        description = f"Extracting {archive.name}"
        member = None
        try:
            with staging_folder(into, archive.name) as tmp:
                if zipfile.is_zipfile(archive):
                    with zipfile.ZipFile(archive) as zf:
                        for member in self.progress.track(zf.infolist(), description=description):
                            zf.extract(member, tmp)  # zipfile keeps every member inside tmp
                else:
                    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    with tarfile.open(archive) as tf:
                        for member in self.progress.track(tf.getmembers(), description=description):
                            tf.extract(member, tmp, **safe)
                for entry in tmp.iterdir():
                    if not (into / entry.name).exists():
                        os.replace(entry, into / entry.name)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error) as exc:
            name = getattr(member, "filename", None) or getattr(member, "name", None)
            where = f"at '{name}'" if name else "at its start"
            raise CorruptedFileError(f"Cannot unpack '{archive}' {where} ({exc}); download it again.") from exc
        self.report.extracted.append(archive.name)

    def run_jobs(self, description: str, jobs: Sequence[Callable[[], str]]) -> None:
        """Run the jobs on a few threads, counting what each one did."""
        task = self.progress.add_task(description, total=len(jobs))
        pool = ThreadPoolExecutor(max_workers=_WORKERS)
        try:
            for future in as_completed([pool.submit(job) for job in jobs]):
                outcome = future.result()
                setattr(self.report, outcome, getattr(self.report, outcome) + 1)
                self.progress.advance(task)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on an error or Ctrl-C: finish the running jobs only

    def check_with(self, datamodule: Any) -> None:
        """Record the image/label pairs per split that the DataModule finds in DST."""
        for split in ("train", "val"):
            samples, _ = datamodule.find_samples(split)
            self.report.counts[split] = len(samples)


def _list_files(run: _Run, folder: Path, pattern: str) -> list[Path]:
    files = sorted(folder.glob(pattern))
    if not files:
        raise DatasetSourceError(f"{run.report.dataset}: no '{pattern}' files in '{folder}'.")
    return files


def _check_labels(run: _Run, pairs: Sequence[tuple[Path, Path]], what: str) -> None:
    """Every image has its label file (or raise, naming the first missing one)."""
    missing = [label for _, label in pairs if not label.is_file()]
    if missing:
        raise DatasetSourceError(
            f"{run.report.dataset}: {len(missing)} of {len(pairs)} images have no {what}, e.g. '{missing[0]}' is "
            "missing. Is the archive complete?"
        )


def _same(a: Path, b: Path) -> bool:
    return a.resolve() == b.resolve()


def _place(source: Path, target: Path) -> str:
    """Hard-link ``source`` to ``target`` (copy it where a link is impossible), unless ``target`` exists."""
    if target.exists():
        return "kept"
    with atomic_write(target) as tmp:
        try:
            os.link(source, tmp)
            outcome = "images_linked"
        except OSError:  # another file system, or one without hard links
            shutil.copyfile(source, tmp)
            outcome = "images_copied"
    return outcome


def _place_label(source: Path, target: Path) -> str:
    """:func:`_place` for a label map that is used as it is (ADE20K's), checked first: a truncated or corrupt PNG
    is named here, not at training time."""
    _check_png(source)
    return _place(source, target) if not _same(source, target) else "kept"


def _check_png(path: Path) -> None:
    try:
        with Image.open(path) as image:
            image.verify()  # every chunk's checksum and the end of the file, without decoding
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptedFileError(
            f"The label map '{path}' is truncated or corrupt ({err}); unpack or download it again."
        ) from err


def _save_label(labels: np.ndarray, target: Path) -> None:
    with atomic_write(target) as tmp:
        Image.fromarray(labels.astype(np.uint8)).save(tmp, format="PNG")


def _convert(source: Path, target: Path, table: np.ndarray) -> str:
    """Write ``source``'s labels mapped through ``table`` to ``target``, unless ``target`` exists."""
    if target.exists():
        return "kept"
    try:
        labels = read_mask(source)
    except (OSError, ValueError) as err:  # truncated, corrupt, or not 8-bit labels: the message names the file
        raise CorruptedFileError(f"{err} Unpack or download it again.") from err
    _save_label(table[labels], target)
    return "labels_written"


def _write_text(target: Path, text: str) -> str:
    if target.is_file() and target.read_text() == text:
        return "kept"
    with atomic_write(target) as tmp:
        tmp.write_text(text)
    return "lists_written"


# --- Cityscapes ----------------------------------------------------------------------------------------------------

_CITYSCAPES_SITE = "https://www.cityscapes-dataset.com/downloads/ (log-in needed)"
_LEFT_IMG = _Source(
    ("leftImg8bit",),
    "leftImg8bit_trainvaltest.zip",
    "",
    f"'leftImg8bit_trainvaltest.zip (11GB)' from {_CITYSCAPES_SITE}",
)
_GT_FINE = _Source(
    ("gtFine",), "gtFine_trainvaltest.zip", "", f"'gtFine_trainvaltest.zip (241MB)' from {_CITYSCAPES_SITE}"
)


def _prepare_cityscapes(run: _Run) -> None:
    """``*_gtFine_labelTrainIds.png`` (19 classes, 255 elsewhere) from ``*_gtFine_labelIds.png``; images into DST."""
    image_root, label_root = run.locate(_LEFT_IMG), run.locate(_GT_FINE)
    table = label_map_from_dict(CITYSCAPES_LABEL_TO_TRAIN_ID)
    place_images = not _same(image_root, run.dst / "leftImg8bit")
    for split in ("train", "val"):  # the test split's labels are not public
        images = _list_files(run, image_root / split, "*/*_leftImg8bit.png")
        stems = [f"{image.parent.name}/{image.name.removesuffix('_leftImg8bit.png')}" for image in images]
        pairs = [(image, label_root / split / f"{stem}_gtFine_labelIds.png") for image, stem in zip(images, stems)]
        _check_labels(run, pairs, "*_gtFine_labelIds.png")
        out = run.dst / "gtFine" / split
        jobs = [partial(_convert, label, out / f"{stem}_gtFine_labelTrainIds.png", table) for (_, label), stem in
                zip(pairs, stems)]  # fmt: skip
        if place_images:
            jobs += [partial(_place, image, run.dst / "leftImg8bit" / split / image.parent.name / image.name)
                     for image in images]  # fmt: skip
        run.run_jobs(f"Cityscapes {split}", jobs)
    run.check_with(CityscapesDataModule(run.dst))


# --- ADE20K --------------------------------------------------------------------------------------------------------

_ADE20K = _Source(
    ("ADEChallengeData2016",),
    "ADEChallengeData2016.zip",
    "",
    "'ADEChallengeData2016.zip' (the SceneParsing benchmark's training and validation data) from "
    "http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip",
)


def _prepare_ade20k(run: _Run) -> None:
    """Checked as it is (each image has its annotation), and linked into DST when DST is elsewhere."""
    if (run.src / "images").is_dir() and (run.src / "annotations").is_dir():
        root = run.src  # SRC is ADEChallengeData2016 itself
    else:
        root = run.locate(_ADE20K)
    inside_dst = _same(root, run.dst) or _same(root, run.dst / "ADEChallengeData2016")
    out = root if inside_dst else run.dst / "ADEChallengeData2016"
    for split, folder in (("train", "training"), ("val", "validation")):
        images = _list_files(run, root / "images" / folder, "*.jpg")
        pairs = [(image, root / "annotations" / folder / f"{image.stem}.png") for image in images]
        _check_labels(run, pairs, "annotation (annotations/<split>/<name>.png)")
        jobs = [partial(_place_label, label, out / "annotations" / folder / label.name) for _, label in pairs]
        if not inside_dst:
            jobs += [partial(_place, image, out / "images" / folder / image.name) for image, _ in pairs]
        run.run_jobs(f"ADE20K {split}", jobs)
    run.check_with(ADE20KDataModule(run.dst))


# --- COCO-Stuff 164k -----------------------------------------------------------------------------------------------

_COCO_SITE = "https://cocodataset.org/#download"
_STUFF_SITE = (
    "'stuffthingmaps_trainval2017.zip' (Stuff+thing PNG-style annotations on COCO 2017 trainval) from "
    "https://github.com/nightrome/cocostuff#downloads"
)
_COCO_SOURCES = {  # split: (images, annotations)
    split: (
        _Source(
            (f"images/{split}",), f"{split}.zip", "images", f"'{split}.zip' (2017 {kind} images) from {_COCO_SITE}"
        ),
        _Source((f"annotations/{split}",), "stuffthingmaps_trainval2017.zip", "annotations", _STUFF_SITE),
    )
    for split, kind in (("train2017", "Train"), ("val2017", "Val"))
}


def _prepare_coco_stuff(run: _Run) -> None:
    """``*_labelTrainIds.png`` (0..170, 255 elsewhere) from the stuffthingmaps (COCO id - 1); images into DST."""
    table = label_map_from_dict(COCO_STUFF_RAW_TO_TRAIN_ID)  # the 11 ids without a category -> 255
    for split, (image_source, label_source) in _COCO_SOURCES.items():
        image_dir, label_dir = run.locate(image_source), run.locate(label_source)
        images = _list_files(run, image_dir, "*.jpg")
        pairs = [(image, label_dir / f"{image.stem}.png") for image in images]
        _check_labels(run, pairs, "stuffthingmaps annotation (<name>.png)")
        out = run.dst / "annotations" / split
        jobs = [partial(_convert, label, out / f"{image.stem}_labelTrainIds.png", table) for image, label in pairs]
        if not _same(image_dir, run.dst / "images" / split):
            jobs += [partial(_place, image, run.dst / "images" / split / image.name) for image in images]
        run.run_jobs(f"COCO-Stuff {split}", jobs)
    run.check_with(COCOStuffDataModule(run.dst))


# --- PASCAL Context ------------------------------------------------------------------------------------------------

_VOC2010 = _Source(
    ("VOCdevkit/VOC2010/JPEGImages", "VOC2010/JPEGImages"),
    "VOCtrainval_03-May-2010.tar",
    "",
    "'VOCtrainval_03-May-2010.tar' (PASCAL VOC 2010 training/validation data) from "
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2010/",
)
_DETAIL_JSON = "trainval_merged.json"
_DETAIL_SITE = (
    "'trainval_merged.json' (the PASCAL in Detail annotations, which hold PASCAL-Context's labels) from "
    "https://codalabuser.blob.core.windows.net/public/trainval_merged.json"
)


def _prepare_pascal_context(run: _Run) -> None:
    """``SegmentationClassContext/<name>.png`` (0 background, 1..59: one set for the 59- and the 60-class settings)
    and ``ImageSets/SegmentationContext/{train,val}.txt`` from trainval_merged.json; images into DST."""
    image_dir = run.locate(_VOC2010)
    json_path = next((p for p in (run.src / _DETAIL_JSON, run.src / "json" / _DETAIL_JSON) if p.is_file()), None)
    if json_path is None:
        raise DatasetSourceError(
            f"PASCAL Context: '{run.src / _DETAIL_JSON}' was not found. Download {_DETAIL_SITE} into '{run.src}'."
        )
    voc_src = image_dir.parent
    candidates = (run.dst / "VOCdevkit" / "VOC2010", run.dst / "VOC2010")
    voc_out = next((c for c in candidates if _same(c, voc_src)), candidates[0])
    task = run.progress.add_task(f"Reading {json_path.name}", total=None)
    images, segments, notes = read_detail_annotations(json_path)
    run.progress.update(task, total=1, completed=1)
    run.report.notes += notes
    table = _pascal_context_table(max([459, *(s["category_id"] for s in segments)]))
    by_image: dict[Any, list[dict]] = {}
    for segment in segments:
        by_image.setdefault(segment["image_id"], []).append(segment)
    for split in ("train", "val"):
        entries = sorted((e for e in images if e.get("phase") == split), key=lambda e: e["file_name"])
        if not entries:
            raise CorruptedFileError(f"PASCAL Context: '{json_path}' lists no image of phase '{split}'.")
        missing = [e["file_name"] for e in entries if not (image_dir / e["file_name"]).is_file()]
        if missing:
            raise DatasetSourceError(
                f"PASCAL Context: {len(missing)} of the {len(entries)} {split} images of '{json_path.name}' are not "
                f"in '{image_dir}', e.g. '{missing[0]}'. Is {_VOC2010.archive} completely unpacked?"
            )
        stems = [Path(e["file_name"]).stem for e in entries]
        out = voc_out / "SegmentationClassContext"
        jobs = [partial(_pascal_context_label, e, by_image.get(e["image_id"], []), table, out / f"{stem}.png")
                for e, stem in zip(entries, stems)]  # fmt: skip
        if not _same(voc_out, voc_src):
            jobs += [partial(_place, image_dir / e["file_name"], voc_out / "JPEGImages" / e["file_name"])
                     for e in entries]  # fmt: skip
        run.run_jobs(f"PASCAL Context {split}", jobs)
        outcome = _write_text(voc_out / "ImageSets" / "SegmentationContext" / f"{split}.txt", "\n".join(stems) + "\n")
        setattr(run.report, outcome, getattr(run.report, outcome) + 1)
    run.check_with(PascalContextDataModule(run.dst, num_classes=60))


def read_detail_annotations(path: Path) -> tuple[list[dict], list[dict], list[str]]:
    """The images and segment annotations of a PASCAL in Detail json (``trainval_merged.json``), and notes.

    The Detail API (github.com/zhanghang1989/detail-api, ``Detail.getMask``) reads ``images`` (``image_id``,
    ``file_name``, ``height``, ``width``, ``phase``) and ``annos_segmentation`` (``id``, ``image_id``, ``category_id``
    and ``segmentation``, a COCO run-length encoding). Segments with the same ``id`` count once (the last one, as the
    API's index keeps it). A note is made when the json names one of the 59 category ids differently.
    """
    try:
        data = json.loads(path.read_bytes())
        images, segments = data["images"], data["annos_segmentation"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptedFileError(
            f"PASCAL Context: '{path}' is not a PASCAL in Detail annotation file ({exc!r}); expected {_DETAIL_SITE}."
        ) from exc
    _check_detail_entries(path, images, segments)
    unique = {segment["id"]: segment for segment in segments}
    notes = []
    from segzoo._datasets import PASCAL_CONTEXT_59_CLASSES

    names = {cat.get("category_id"): str(cat.get("name", "")) for cat in data.get("categories", [])}
    differ = [
        f"{cid}: '{names[cid]}' (expected '{expected}')"
        for cid, expected in zip(PASCAL_CONTEXT_59_CATEGORY_IDS, PASCAL_CONTEXT_59_CLASSES)
        if cid in names and _simple(names[cid]) != _simple(expected)
    ]
    if differ:
        notes.append(f"{path.name} names some of the 59 category ids differently: {', '.join(differ)}.")
    return images, list(unique.values()), notes


# The fields of trainval_merged.json that are read, and what each must be.
_IMAGE_FIELDS = {"image_id": (int, str), "file_name": str, "height": int, "width": int}
_SEGMENT_FIELDS = {"id": (int, str), "image_id": (int, str), "category_id": int, "segmentation": dict}


def _check_detail_entries(path: Path, images: Any, segments: Any) -> None:
    """Every image and segment entry has the fields the conversion reads, of the right type; the first that does not
    is named (a one-line error instead of a KeyError deep in a worker thread)."""
    for key, entries, fields in (("images", images, _IMAGE_FIELDS), ("annos_segmentation", segments, _SEGMENT_FIELDS)):
        if not isinstance(entries, list):
            raise CorruptedFileError(f"PASCAL Context: '{path}': '{key}' is a {type(entries).__name__}, not a list.")
        for index, entry in enumerate(entries):
            problem = _entry_problem(entry, fields)
            if key == "images" and problem is None and min(entry["height"], entry["width"]) < 1:
                problem = f"is {entry['height']}x{entry['width']} pixels"
            if key == "annos_segmentation" and problem is None and entry["category_id"] < 0:
                problem = f"has 'category_id': {entry['category_id']}"
            elif key == "annos_segmentation" and problem is None:
                size = entry["segmentation"].get("size")
                if not (isinstance(size, list) and len(size) == 2 and all(isinstance(n, int) for n in size)):
                    problem = f"its segmentation size is {size!r}, not [height, width]"
                elif "counts" not in entry["segmentation"]:
                    problem = "its segmentation has no 'counts'"
            if problem is not None:
                raise CorruptedFileError(
                    f"PASCAL Context: '{path}': {key}[{index}] {problem}; expected {_DETAIL_SITE} (download it again)."
                )


def _entry_problem(entry: Any, fields: dict[str, Any]) -> str | None:
    if not isinstance(entry, dict):
        return f"is a {type(entry).__name__}, not an object"
    for name, kind in fields.items():
        if name not in entry:
            return f"has no '{name}'"
        if not isinstance(entry[name], kind) or isinstance(entry[name], bool):
            return f"has '{name}': {entry[name]!r}"
    return None


def _simple(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _pascal_context_table(max_id: int) -> np.ndarray:
    """Category id -> stored label: the 59 classes -> 1..59, any other category -> 0 (background)."""
    table = np.zeros(max_id + 1, dtype=np.uint8)
    for index, category_id in enumerate(PASCAL_CONTEXT_59_CATEGORY_IDS):
        table[category_id] = index + 1
    return table


def _pascal_context_label(entry: dict, segments: Iterable[dict], table: np.ndarray, target: Path) -> str:
    """The class mask of one image, as ``Detail.getMask(img)`` paints it: segments in file order, later ones on top."""
    if target.exists():
        return "kept"
    labels = np.zeros((entry["height"], entry["width"]), dtype=np.uint8)
    for segment in segments:
        try:
            mask = decode_rle(segment["segmentation"])
        except (CorruptedFileError, ValueError, TypeError, IndexError) as err:
            raise CorruptedFileError(
                f"PASCAL Context: segment {segment['id']} of {entry['file_name']} in {_DETAIL_JSON}: {err}"
            ) from None
        if mask.shape != labels.shape:
            raise CorruptedFileError(
                f"PASCAL Context: segment {segment['id']} of {entry['file_name']} is {mask.shape[0]}x{mask.shape[1]}, "
                f"the image {labels.shape[0]}x{labels.shape[1]}."
            )
        labels[mask] = table[segment["category_id"]]
    _save_label(labels, target)
    return "labels_written"


def decode_rle(rle: dict) -> np.ndarray:
    """A COCO run-length-encoded mask (``{"size": [h, w], "counts": ...}``) as an H x W bool array.

    ``counts`` are the lengths of alternating runs of 0 and 1, starting with 0, over the pixels in column-major order,
    either as a list (uncompressed) or as COCO's compressed string: each count in 6-bit characters (offset 48) of 5
    data bits, 0x20 meaning "more follow", the last one's 0x10 bit the sign; from the fourth count on, the string
    stores the difference to the count two before (cocoapi ``maskApi.c``, ``rleFrString``).
    """
    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, (str, bytes)):
        counts = _counts_from_string(counts.encode() if isinstance(counts, str) else counts)
    runs = np.asarray(counts, dtype=np.int64)
    if (runs < 0).any() or runs.sum() != height * width:
        raise CorruptedFileError(f"A run-length encoding of {runs.sum()} pixels for a {height}x{width} mask.")
    values = np.arange(len(runs)) % 2 == 1
    return np.repeat(values, runs).reshape(width, height).T


def _counts_from_string(data: bytes) -> list[int]:
    counts: list[int] = []
    pos = 0
    while pos < len(data):
        value, shift, more = 0, 0, True
        while more:
            char = data[pos] - 48
            value |= (char & 0x1F) << shift
            more = bool(char & 0x20)
            pos += 1
            shift += 5
            if not more and char & 0x10:
                value |= -1 << shift  # negative: extend the sign
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return counts
