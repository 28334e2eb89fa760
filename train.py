"""Train, validate, test and predict segzoo models with LightningCLI.

    python train.py fit --config configs/quickstart.yaml
    python train.py fit --config configs/segformer/segformer-b0-ade.yaml --data.data_root data/ade
    python train.py validate --config configs/segformer/segformer-b0-ade.yaml --ckpt_path runs/.../last.ckpt
    python train.py fit --config configs/segformer/segformer-b0-ade.yaml --ckpt_path runs/.../last.ckpt  # resume

The model is :class:`segzoo.lit.SegmentationModule`; ``--data`` takes any LightningDataModule (``ADE20KDataModule``,
``CityscapesDataModule``, ``PascalContextDataModule``, ``COCOStuffDataModule``, ``FolderDataModule``,
``SyntheticDataModule``, or your own class path). ``num_classes`` and ``ignore_index`` are linked from the data to
the model. Scaling out is Lightning's: ``--trainer.devices 8 --trainer.strategy ddp``, ``--trainer.num_nodes``,
``--trainer.sync_batchnorm true``, ``--trainer.precision bf16-mixed``, ``--trainer.accumulate_grad_batches``.

SIGTERM (a job scheduler's) stops a run at the next batch on every rank and exits with status 143; a run stuck
outside Python (e.g. a rank waiting in a collective) is ended ``--sigterm.grace_period`` seconds (default 20) after the
signal, its stacks printed (:class:`segzoo.lit.SigtermWatchdog`).
"""

from __future__ import annotations

import os
import signal
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

import segzoo.data  # noqa: F401  (registers the DataModules so --data takes their short names)
from segzoo.lit import SegmentationModule, SigtermWatchdog


def trainer_defaults() -> dict:
    """CSV logging into ``runs/`` (no network) and the lr of every step in the log.

    Callbacks given here are always present (configs add theirs with ``trainer.callbacks``).
    """
    return {
        "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
        "callbacks": [LearningRateMonitor(logging_interval="step")],
    }


class SegzooCLI(LightningCLI):
    """LightningCLI with the data→model links, a best-mIoU checkpoint callback (``--checkpoint.*``) and the SIGTERM
    watchdog (``--sigterm.grace_period``)."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.ignore_index", "model.ignore_index", apply_on="instantiate")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(
            {
                "checkpoint.monitor": "val/miou",
                "checkpoint.mode": "max",
                "checkpoint.save_last": True,
                "checkpoint.filename": "step={step}-miou={val/miou:.4f}",
                "checkpoint.auto_insert_metric_name": False,
            }
        )
        parser.add_lightning_class_args(SigtermWatchdog, "sigterm")

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        """The trainer, with a rich progress bar unless ``trainer.enable_progress_bar`` is false."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        if trainer_config.get("enable_progress_bar") is not False:
            callbacks = kwargs.get("callbacks", trainer_config.get("callbacks")) or []
            if not any(isinstance(c, ProgressBar) for c in callbacks):
                kwargs["callbacks"] = list(callbacks) + [RichProgressBar()]
        return super().instantiate_trainer(**kwargs)


def cli_main(args: list[str] | None = None, run: bool = True) -> SegzooCLI:
    """Runs the CLI on ``args`` (``sys.argv`` when None); tests call it in-process."""
    return SegzooCLI(
        SegmentationModule,
        L.LightningDataModule,
        subclass_mode_data=True,
        auto_configure_optimizers=False,  # the module's own optimizer/lr_scheduler arguments configure them
        save_config_kwargs={"overwrite": True},
        trainer_defaults=trainer_defaults(),
        args=args,
        run=run,
    )


def main() -> None:
    """``python train.py``: Lightning ends a run stopped by SIGTERM with ``SIGTERMException``, a ``SystemExit`` whose
    status is 0 (success); exit with 143 (128 + SIGTERM) instead, so schedulers and shells see the run did not finish."""
    try:
        cli_main()
    except SIGTERMException:
        sys.exit(128 + signal.SIGTERM)


if __name__ == "__main__":
    main()
