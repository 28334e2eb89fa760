"""A tiny segmentation network, its data and callbacks for the training tests (training/, the DDP workers); the
callbacks are given to ``train.py`` runs by class path, ``--trainer.callbacks+=support.lit_helpers.<Name>``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, Dataset


class TinySegNet(nn.Module):
    """A few-hundred-parameter encoder–decoder with segzoo's parameter names, an auxiliary head and a position
    embedding, so every optimizer rule has something to act on."""

    def __init__(self, num_classes: int = 3, width: int = 8, with_aux: bool = True):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.backbone.pos_embed = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.decode_head = nn.Sequential(
            nn.Conv2d(width, width, 1), nn.GroupNorm(2, width), nn.ReLU(), nn.Conv2d(width, num_classes, 1)
        )
        self.auxiliary_head = nn.ModuleList([nn.Conv2d(width, num_classes, 1)] if with_aux else [])
        self.aux_weights = [0.4] * len(self.auxiliary_head)
        self.num_classes = num_classes
        self.pretrained_cfg: dict = {}

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x) + self.backbone.pos_embed

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = self._features(x)
        return self.decode_head(feats), [head(feats) for head in self.auxiliary_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode_head(self._features(x))

    def no_weight_decay(self) -> set[str]:
        return {"backbone.pos_embed"}


class ColourDataset(Dataset):
    """Images whose label is the dominant colour channel of each pixel, with a border of ignored pixels."""

    def __init__(self, num_samples: int, num_classes: int = 3, size: int = 16, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.images = torch.rand(num_samples, 3, size, size, generator=generator)
        coarse = torch.randint(0, num_classes, (num_samples, 1, size // 4, size // 4), generator=generator).float()
        labels = F.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()
        for c in range(num_classes):  # make the labelled channel clearly the brightest
            self.images[:, c][labels == c] += 1.0
        labels[:, 0, :] = 255
        self.masks = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "mask": self.masks[index], "name": f"sample{index:03d}"}


class ColourDataModule(L.LightningDataModule):
    """DataModule over :class:`ColourDataset` with the attributes segzoo DataModules expose."""

    def __init__(
        self, num_train: int = 16, num_val: int = 8, batch_size: int = 4, num_classes: int = 3, size: int = 16
    ):
        super().__init__()
        self.num_classes = num_classes
        self.ignore_index = 255
        self.class_names = [f"colour{i}" for i in range(num_classes)]
        self.palette = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)][:num_classes]
        self.mean, self.std = (0.0, 0.0, 0.0), (1.0 / 255, 1.0 / 255, 1.0 / 255)
        self.train_set = ColourDataset(num_train, num_classes, size=size, seed=0)
        self.val_set = ColourDataset(num_val, num_classes, size=size, seed=1)
        self.batch_size = batch_size

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size)


def quiet_trainer(**kwargs) -> L.Trainer:
    """A CPU trainer without progress bar, model summary or checkpoints (override any of these by keyword)."""
    defaults = {
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return L.Trainer(**(defaults | kwargs))


class KillAtStep(Callback):
    """Simulates a crash: raises when training is about to run optimizer step ``step`` (after its checkpoint)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise SimulatedKill(f"killed at step {self.step}")


class SimulatedKill(RuntimeError):
    pass


class RankReport(Callback):
    """For the multi-process tests (``--trainer.callbacks+=support.lit_helpers.RankReport``): each rank writes
    ``<out_dir>/pid-rank<R>.txt`` at setup and, when its run ends normally, ``<out_dir>/done-rank<R>.json`` with its
    world size, global step and the number of validations it completed (sanity check excluded)."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)
        self.validations = 0

    def setup(self, trainer, pl_module, stage) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"pid-rank{trainer.global_rank}.txt").write_text(str(os.getpid()))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.validations += 1

    def teardown(self, trainer, pl_module, stage) -> None:
        report = {
            "pid": os.getpid(),
            "global_rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "validations": self.validations,
        }
        (self.out_dir / f"done-rank{trainer.global_rank}.json").write_text(json.dumps(report))


class BlockRankZeroInCollective(Callback):
    """Reproduces the shape of the multi-process validation hang on purpose: at the end of the first real validation,
    rank 0 alone waits in a collective (a receive from rank 1 that never comes) while rank 1 goes on to the metrics'
    reduction and waits there for rank 0. Both block in C++ (gloo), where Python signal handlers cannot run. Writes
    ``<out_dir>/blocked`` just before blocking."""

    def __init__(self, out_dir: str):
        self.out_dir = Path(out_dir)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        (self.out_dir / "blocked").write_text(str(os.getpid()))
        torch.distributed.recv(torch.zeros(1), src=1)


class MarkStep(Callback):
    """For the interrupt tests (``--trainer.callbacks+=support.lit_helpers.MarkStep``): rank 0 writes
    ``<out_dir>/step-<S>`` once ``step`` optimizer steps are done; ``first_step`` is the global step training
    started (or resumed) at."""

    def __init__(self, out_dir: str, step: int = 2):
        self.out_dir = Path(out_dir)
        self.step = step
        self.first_step: int | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self.first_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step and trainer.is_global_zero:
            marker = self.out_dir / f"step-{self.step}"
            if not marker.exists():
                self.out_dir.mkdir(parents=True, exist_ok=True)
                marker.write_text(str(trainer.global_step))


class LastCheckpointSteps(Callback):
    """Records, at the start of each training batch, the global step of the ``last.ckpt`` that
    :class:`segzoo.training.LastCheckpoint` has written so far (None while there is none): ``seen[step]``."""

    def __init__(self):
        self.seen: dict[int, int | None] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        from segzoo.training import LastCheckpoint

        (callback,) = [c for c in trainer.callbacks if isinstance(c, LastCheckpoint)]
        path = Path(callback.dirpath) / "last.ckpt"
        step = torch.load(path, map_location="cpu", weights_only=True)["global_step"] if path.exists() else None
        self.seen[trainer.global_step] = step
