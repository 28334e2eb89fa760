"""Base LightningDataModule shared by all segzoo datasets."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, get_worker_info

from segzoo._datasets import default_palette, get_dataset_classes
from segzoo._preprocessing import EvalProtocol
from segzoo.data._dataset import SegmentationDataset, collate_eval
from segzoo.data._transforms import (
    IGNORE_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_eval_transform,
    build_train_transform,
    seed_transform,
)

SPLITS = ("train", "val", "test")


def seed_worker_transform(worker_id: int, rank: int = 0) -> None:
    """DataLoader ``worker_init_fn``: give each worker (and each DDP rank) its own augmentation stream.

    albumentations keeps its own random state, which forked workers would otherwise share (identical augmentations
    in every worker). ``get_worker_info().seed`` differs per worker and per epoch and follows ``torch`` seeding; the
    rank is mixed in because seeded ranks draw the same worker seeds. Bind it with ``functools.partial``.
    """
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if transform is not None and hasattr(transform, "set_random_state"):
        seed_transform(transform, _mix_seed(info.seed, rank))


def _mix_seed(seed: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed % 2**63, rank]).generate_state(1)[0])


def load_class_names(dataset: str) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and palette of a dataset key of ``segzoo._datasets.DATASETS`` (e.g. ``"ade20k"``)."""
    names, palette = get_dataset_classes(dataset)
    return list(names), [tuple(colour) for colour in palette]


def missing_layout_error(dataset: str, data_root: Path, layout: str, hint: str = "") -> FileNotFoundError:
    """A ``FileNotFoundError`` that shows the folder layout the DataModule expects."""
    message = f"{dataset} not found under '{data_root}'. Expected this layout:\n{layout.strip(chr(10))}"
    if hint:
        message += f"\n{hint}"
    return FileNotFoundError(message)


def require_dirs(dataset: str, data_root: Path, dirs: Sequence[Path], layout: str, hint: str = "") -> None:
    """Raise :func:`missing_layout_error` (naming the first missing folder) unless all ``dirs`` exist."""
    for folder in dirs:
        if not folder.is_dir():
            raise missing_layout_error(dataset, data_root, layout, f"Missing folder: '{folder}'.\n{hint}".strip())


class SegmentationDataModule(L.LightningDataModule):
    """Base DataModule: builds the train/eval transforms and the dataloaders; subclasses find the files.

    Subclasses set ``num_classes`` and implement :meth:`build_dataset`; they may override :meth:`_class_info` to
    provide class names and a palette.

    Args:
        crop_size: Training crop (height, width), or one int for a square crop.
        scale: Base scale of the random keep-ratio rescale (mmseg ``scale``), e.g. ``(2048, 512)``.
        eval_scale: Keep-ratio resize scale of validation/test images for the model, or ``None`` to keep the full
            resolution. Only the model's input is resized: the prediction is resized back and scored against the
            mask at its original size, as in mmsegmentation's test loop (see :attr:`eval_protocol`).
        size_divisor: Round validation/test images up to a multiple of this after ``eval_scale`` (NVlabs
            SegFormer's ``AlignedResize``; ``model.pretrained_cfg["size_divisor"]``).
        ratio_range: Range of the random rescale ratio.
        cat_max_ratio: Largest share of one class in a training crop (1 disables the check).
        batch_size: Training batch size.
        val_batch_size: Images per validation / test / predict batch (default 1). A batch is a list of images of
            their own sizes (:func:`~segzoo.data.collate_eval`); in whole mode the ones of the same size share a
            forward pass. Under DDP every image is scored exactly once (no padding repeats).
        num_workers: DataLoader worker processes.
        mean: Per-channel RGB mean on the 0-255 scale (use ``model.pretrained_cfg["mean"]``).
        std: Per-channel RGB std on the 0-255 scale (use ``model.pretrained_cfg["std"]``).
        photometric: Whether to apply mmseg's photometric distortion during training.
        pin_memory: Pin host memory in the dataloaders (only used when CUDA is available).
    """

    num_classes: int
    ignore_index: int = IGNORE_INDEX

    def __init__(
        self,
        crop_size: int | tuple[int, int] = 512,
        scale: tuple[int, int] = (2048, 512),
        eval_scale: tuple[int, int] | None = (2048, 512),
        ratio_range: tuple[float, float] = (0.5, 2.0),
        cat_max_ratio: float = 0.75,
        batch_size: int = 8,
        num_workers: int = 4,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        photometric: bool = True,
        pin_memory: bool = True,
        size_divisor: int | None = None,
        val_batch_size: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()  # collects the subclass's __init__ arguments too (logged with the checkpoint)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}.")
        if val_batch_size is not None and val_batch_size < 1:
            raise ValueError(f"val_batch_size must be at least 1, got {val_batch_size}.")
        self.crop_size = crop_size
        self.scale = tuple(scale)
        self.eval_scale = tuple(eval_scale) if eval_scale is not None else None
        self.ratio_range = tuple(ratio_range)
        self.cat_max_ratio = cat_max_ratio
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size or 1
        self.num_workers = num_workers
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.photometric = photometric
        self.pin_memory = pin_memory
        self.size_divisor = size_divisor
        self.datasets: dict[str, Dataset] = {}
        self._classes: tuple[list[str], list[tuple[int, int, int]]] | None = None

    # --- what subclasses provide -------------------------------------------------------------------------------

    def build_dataset(self, split: str, transform: Any) -> Dataset:
        """Build the dataset of ``split`` ("train", "val" or "test") with ``transform``."""
        raise NotImplementedError

    def _class_info(self) -> tuple[list[str], list[tuple[int, int, int]]]:
        return [f"class_{i}" for i in range(self.num_classes)], default_palette(self.num_classes)

    # --- public API ----------------------------------------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """One name per class index."""
        if self._classes is None:
            self._classes = self._class_info()
        return self._classes[0]

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """One RGB colour per class index."""
        if self._classes is None:
            self._classes = self._class_info()
        return self._classes[1]

    def train_transform(self) -> Any:
        """The training pipeline (see :func:`segzoo.data.transforms.build_train_transform`)."""
        return build_train_transform(
            self.crop_size,
            self.scale,
            ratio_range=self.ratio_range,
            cat_max_ratio=self.cat_max_ratio,
            mean=self.mean,
            std=self.std,
            photometric=self.photometric,
            ignore_index=self.ignore_index,
        )

    def eval_transform(self) -> Any:
        """The validation/test "pipeline": none; items keep the image as read and the mask at its size
        (:func:`segzoo.data.build_eval_transform`)."""
        return build_eval_transform()

    @property
    def eval_protocol(self) -> EvalProtocol:
        """The test pipeline this DataModule describes (``eval_scale``, ``size_divisor``, ``mean``, ``std``):
        :class:`~segzoo.training.SegmentationTask` scores validation and test images through it (with its own
        evaluation mode and window) when it evaluates a model trained on these data; a published checkpoint is scored
        with its own (``model.eval_protocol``), see ``SegmentationTask(eval_protocol_source=...)``."""
        return EvalProtocol(self.mean, self.std, test_scale=self.eval_scale, size_divisor=self.size_divisor)

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets needed by ``stage`` ("fit", "validate", "test", "predict" or ``None`` for all)."""
        needed = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        for split in needed.get(stage, SPLITS) if stage else SPLITS:
            if split in self.datasets:
                continue
            if split == "train":
                transform = self.train_transform()
                # Seed from torch so that lightning.seed_everything makes augmentations reproducible.
                seed_transform(transform, _mix_seed(int(torch.randint(2**31, ()).item()), self._rank()))
            else:
                transform = self.eval_transform()
            self.datasets[split] = self.build_dataset(split, transform)

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def _world_size(self) -> int:
        return self.trainer.world_size if self.trainer is not None else 1

    def _dataset(self, split: str) -> Dataset:
        if split not in self.datasets:
            self.setup({"train": "fit", "val": "validate", "test": "test"}[split])
        return self.datasets[split]

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            self._dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=partial(seed_worker_transform, rank=self._rank()),
        )

    def _eval_loader(self, split: str) -> DataLoader:
        """Batches of ``val_batch_size`` images at their own sizes (a list collate). With several processes each
        process scores its own share and no image twice: Lightning's default ``DistributedSampler`` would pad the
        last batches with repeated images, which would then be counted twice in the metrics."""
        dataset = self._dataset(split)
        sampler = None
        if self._world_size() > 1:
            if len(dataset) < self._world_size():
                raise ValueError(
                    f"the {split} split has {len(dataset)} images, fewer than the {self._world_size()} processes: "
                    "every process needs at least one; evaluate on fewer devices"
                )
            sampler = UnrepeatedDistributedSampler(
                dataset, num_replicas=self._world_size(), rank=self._rank(), shuffle=False
            )
        return DataLoader(
            dataset,
            batch_size=self.val_batch_size,
            sampler=sampler,
            collate_fn=collate_eval,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        dataset = self._dataset("train")
        if len(dataset) < self.batch_size:
            raise ValueError(
                f"The training split has {len(dataset)} images, fewer than batch_size={self.batch_size}, so no full "
                "batch can be formed; lower batch_size."
            )
        return self._loader("train", self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        """Predict on the evaluation split (``python train.py predict``)."""
        return self.test_dataloader()


class FileSegmentationDataModule(SegmentationDataModule):
    """Base for DataModules reading (image, mask) files from ``data_root``.

    Subclasses implement :meth:`find_samples` and may set ``label_map``. The ``test`` split is the ``val`` split
    unless :meth:`find_samples` knows a labelled test split.
    """

    dataset_name: str = "dataset"

    def __init__(self, data_root: str | Path, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_root = Path(data_root).expanduser()

    def find_samples(self, split: str) -> tuple[list[tuple[Path, Path]], np.ndarray | None]:
        """(image, mask) pairs of ``split`` and the label lookup table to apply to their masks (or ``None``)."""
        raise NotImplementedError

    def build_dataset(self, split: str, transform: Any) -> SegmentationDataset:
        samples, label_map = self.find_samples(split)
        if not samples:
            raise FileNotFoundError(
                f"{self.dataset_name}: no images found for split '{split}' under '{self.data_root}'."
            )
        return SegmentationDataset(samples, self.num_classes, transform, label_map, self.ignore_index)


def masks_for_images(images: Sequence[Path], mask_candidates: Any, dataset: str) -> tuple[list[tuple[Path, Path]], int]:
    """Pair each image with the first existing mask among its candidates, using the same candidate kind for all.

    Args:
        images: Image paths.
        mask_candidates: Function from an image path to a list of candidate mask paths, in order of preference
            (e.g. ``*_labelTrainIds.png`` before ``*_labelIds.png``).
        dataset: Dataset name for error messages.

    Returns:
        The (image, mask) pairs and the index of the candidate kind used for all of them.

    Raises:
        FileNotFoundError: If some image has no mask of any kind; names the image and the files looked for.
    """
    candidates = [mask_candidates(image) for image in images]
    num_kinds = len(candidates[0]) if candidates else 1
    for kind in range(num_kinds):
        if all(options[kind].is_file() for options in candidates):
            return [(image, options[kind]) for image, options in zip(images, candidates)], kind
    for image, options in zip(images, candidates):
        if not any(option.is_file() for option in options):
            names = " or ".join(f"'{option}'" for option in options)
            raise FileNotFoundError(f"{dataset}: no mask for image '{image}'; looked for {names}.")
    kinds = ", ".join(f"'{option.name}'" for option in candidates[0])
    raise FileNotFoundError(f"{dataset}: masks mix several kinds ({kinds}); provide one kind for every image.")
