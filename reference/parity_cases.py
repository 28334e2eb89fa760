"""The cases of the reference-parity tests, shared by conftest.py and test_mmseg_parity.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

# the models mmseg_side.py writes (its MODEL_SPECS keys) and the segzoo checkpoint names they stand for
MODELS = {
    "setr-naive": "setr-naive-ade",
    "setr-pup": "setr-pup-ade",
    "setr-mla": "setr-mla-ade",
    "segmenter-t16-mask": "segmenter-t16-mask-ade",
    "segmenter-s16-linear": "segmenter-s16-linear-ade",
    "segmenter-s16-mask": "segmenter-s16-mask-ade",
    "segmenter-b16-mask": "segmenter-b16-mask-ade",
    "segformer-b0": "segformer-b0-ade-mmseg",
}
SETR_MODELS = [k for k in MODELS if k.startswith("setr-")]
TTA_MODELS = ["segmenter-t16-mask"]
SIZES = ["512x512", "320x416", "250x330"]  # the crop; non-square whole patches (resampled); not whole patches


@dataclass
class Reference:
    """What mmseg_side.py wrote: the folder, its manifest and lazily loaded tensors."""

    out: Path
    manifest: dict
    _cache: dict = field(default_factory=dict)

    def model(self, key: str) -> dict:
        if key not in self.manifest["models"]:
            pytest.fail(f"{key} is not in the reference run {self.out} (mmseg_side.py --models ...)", pytrace=False)
        return self.manifest["models"][key]

    def path(self, name: str) -> Path:
        return self.out / name

    def inputs(self) -> dict[str, torch.Tensor]:
        if "inputs" not in self._cache:
            self._cache["inputs"] = torch.load(self.out / self.manifest["inputs_file"], weights_only=True)
        return self._cache["inputs"]

    def outputs(self, key: str) -> dict:
        """The tensors of one model (kept for one model at a time)."""
        if self._cache.get("outputs_key") != key:
            self._cache["outputs"] = torch.load(self.out / self.model(key)["logits_file"], weights_only=True)
            self._cache["outputs_key"] = key
        return self._cache["outputs"]


# the models mmseg_train_side.py writes training records for, and the segzoo recipe that trains each (its origin is
# the same mmseg config)
TRAIN_RECIPES = {
    "segformer-b0": "configs/segformer/segformer-b0-ade-mmseg.yaml",
    "setr-naive": "configs/setr/setr-naive-ade.yaml",
    "setr-pup": "configs/setr/setr-pup-ade.yaml",
    "setr-mla": "configs/setr/setr-mla-ade.yaml",
    "segmenter-t16-mask": "configs/segmenter/segmenter-t16-mask-ade.yaml",
    "segmenter-s16-linear": "configs/segmenter/segmenter-s16-linear-ade.yaml",
}


@dataclass
class TrainReference:
    """What mmseg_train_side.py wrote: the folder, its manifest and the fixed batch."""

    out: Path
    manifest: dict
    _batch: tuple | None = None

    def model(self, key: str) -> dict:
        if key not in self.manifest["models"]:
            pytest.fail(f"{key} is not in the training reference run {self.out}", pytrace=False)
        return self.manifest["models"][key]

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed batch: normalised images (2×3×64×96) and labels with about 15% ignored pixels."""
        if self._batch is None:
            saved = torch.load(self.out / self.manifest["batch_file"], weights_only=True)
            self._batch = (saved["images"], saved["labels"])
        return self._batch
