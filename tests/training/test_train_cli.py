"""train.py (LightningCLI): every config parses, each family runs fit/validate/test, the quickstart learns."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import pytest
import yaml
from PIL import Image

from segzoo.training import cli_main

from support import REPO
from support.recipes import RECIPES, resolved_recipe

TINY = str(REPO / "configs" / "test" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture(autouse=True)
def plain_argv(monkeypatch):
    """LightningCLI warns when pytest's own arguments are in sys.argv next to ``args``."""
    monkeypatch.setattr(sys, "argv", ["train.py"])


def read_metrics(log_dir: Path) -> list[dict[str, str]]:
    with open(log_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def recipe_of(checkpoint: str) -> str | None:
    """The recipe that trains a table row: its own; for mmseg's re-trained 0.x files the recipe of the row they
    re-train (the same config); none for the authors' official files, whose own training code segzoo does not
    reproduce (the README says so)."""
    if checkpoint.endswith("-official"):
        return None
    return checkpoint.removesuffix("-retrained")


def test_every_published_checkpoint_has_exactly_one_recipe():
    recipes = [Path(p).stem for p in RECIPES if p.split("/")[0] in ("segformer", "segmenter", "setr")]
    table = yaml.safe_load((REPO / "checkpoints.yaml").read_text())["checkpoints"]
    segmentation_checkpoints = [entry["name"] for entry in table if "arch" in entry]
    assert len(set(segmentation_checkpoints)) == len(segmentation_checkpoints)  # names are unique in the table
    trained_here = {recipe_of(name) for name in segmentation_checkpoints} - {None}
    for name in trained_here:
        assert recipes.count(name) == 1, f"{name}: {recipes.count(name)} recipes"
    assert sorted(recipes) == sorted(trained_here)  # and no recipe without its checkpoint
    # the table has the papers' checkpoints and their mmsegmentation-implementation counterparts
    papers = (
        {f"segformer-b{i}-ade" for i in range(5)}
        | {"segformer-b5-ade-640"}
        | {f"segformer-b{i}-cityscapes" for i in range(6)}
        | {f"segformer-b0-cityscapes-{r}" for r in ("512", "640", "768")}
        | {f"segmenter-{v}-ade" for v in ("t16-mask", "s16-linear", "s16-mask", "b16-mask", "l16-mask")}
        | {f"setr-{h}-{d}" for h in ("naive", "pup", "mla") for d in ("ade", "cityscapes")}
        | {"setr-mla-ade-bs8"}
    )
    mmseg = {f"segformer-b{i}-ade-mmseg" for i in range(6)} | {"segformer-b5-ade-640-mmseg"}
    mmseg |= {f"segformer-b{i}-cityscapes-mmseg" for i in range(6)}
    assert trained_here == papers | mmseg


@pytest.mark.parametrize("recipe", RECIPES)
def test_config_parses_with_print_config(recipe):
    printed = resolved_recipe(recipe)  # `fit --config configs/<recipe> --print_config`, parsed once per session
    assert printed["model"]["model"]
    assert printed["data"]["class_path"].startswith("segzoo.data.")
    if "/" in recipe and not recipe.startswith("test/"):
        # recipes: step-based training with the paper's schedule and a logger named after the recipe
        assert printed["trainer"]["max_steps"] > 0
        assert printed["trainer"]["logger"]["init_args"]["name"] == Path(recipe).stem
        assert printed["model"]["pretrained_encoder"] is True
        # a rolling last.ckpt: a killed run resumes with at most a few minutes lost, not from the last validation
        assert 0 < printed["last_checkpoint"]["every_n_train_steps"] <= 2000 < printed["trainer"]["max_steps"]


@pytest.mark.parametrize("arch", ["segformer-test", "segmenter-test-mask", "setr-test-pup", "setr-test-mla"])
def test_fast_dev_run_each_family(arch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", TINY, "--model.model", arch, "--trainer.fast_dev_run=1", *QUIET])
    assert cli.trainer.global_step == 1
    assert cli.model.num_classes == 3  # linked from the DataModule
    assert "val/miou" in cli.trainer.callback_metrics


def test_validate_and_test_subcommands(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["validate", "--config", TINY, "--trainer.fast_dev_run=1", *QUIET])
    metrics = cli.trainer.callback_metrics
    # mIoU is the mean of the per-class IoUs logged beside it (classes seen in neither labels nor predictions: none)
    per_class = [v.item() for k, v in metrics.items() if k.startswith("val/iou/")]
    assert per_class and metrics["val/miou"].item() == pytest.approx(sum(per_class) / len(per_class), abs=1e-6)
    cli = cli_main(
        [
            "test",
            "--config",
            TINY,
            "--trainer.fast_dev_run=1",
            "--model.test_tta=true",
            "--model.tta_scales=[1.0, 1.5]",
            *QUIET,
        ]
    )
    assert {"test/miou", "test/macc", "test/acc"} <= set(cli.trainer.callback_metrics)


@pytest.mark.slow
def test_fit_writes_logs_checkpoints_and_overlays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", TINY, *QUIET])
    log_dir = Path(cli.trainer.log_dir).resolve()
    assert log_dir == tmp_path.resolve() / "runs" / "tiny" / "version_0"
    rows = read_metrics(log_dir)
    assert any(row.get("val/miou") for row in rows)
    assert any(row.get("lr-AdamW/pg1") for row in rows)  # LearningRateMonitor is always on
    assert (log_dir / "checkpoints" / "last.ckpt").exists()
    assert len(list((log_dir / "checkpoints").glob("step=4-miou=*.ckpt"))) == 1  # best by val/miou
    assert len(list((log_dir / "val_overlays" / "epoch=0").glob("*.png"))) == 4  # num_log_images default
    assert (log_dir / "config.yaml").exists()


@pytest.mark.slow
def test_fine_tune_from_checkpoint_with_new_classes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = cli_main(["fit", "--config", TINY, "--trainer.max_steps=2", *QUIET])
    ckpt = Path(first.trainer.log_dir) / "checkpoints" / "last.ckpt"
    second = cli_main(
        ["fit", "--config", TINY, "--model.init_from", str(ckpt), "--data.init_args.num_classes=5",
         "--trainer.max_steps=1", *QUIET]
    )  # fmt: skip
    assert second.model.num_classes == 5
    encoder_key = next(k for k in first.model.model.state_dict() if k.startswith("backbone."))
    # the encoder starts from the checkpoint (one step of training later it moved only a little)
    before = first.model.model.state_dict()[encoder_key]
    after = second.model.model.state_dict()[encoder_key]
    assert (after - before).abs().max() < 0.05


@pytest.mark.slow  # trains the quickstart recipe until it learns: 1-2 minutes
@pytest.mark.timeout(600)
def test_quickstart_config_learns(tmp_path, monkeypatch):
    """The quickstart recipe on reduced data and steps is far above chance (the full run reaches ≥ 0.6)."""
    monkeypatch.chdir(tmp_path)
    cli = cli_main(
        ["fit", "--config", str(REPO / "configs" / "quickstart.yaml"), "--data.init_args.image_size=64",
         "--data.init_args.num_train=64", "--data.init_args.num_val=8", "--trainer.max_steps=48",
         "--trainer.check_val_every_n_epoch=6", "--model.lr_scheduler.init_args.warmup_iters=10", *QUIET]
    )  # fmt: skip
    miou = cli.trainer.callback_metrics["val/miou"].item()
    assert miou > 0.5, miou
    assert list((Path(cli.trainer.log_dir) / "val_overlays").glob("epoch=*/*.png"))


@pytest.mark.slow
def test_wandb_logger_offline_gets_metrics_table_and_overlays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network: the run is written under wandb/offline-run-*
    monkeypatch.setenv("WANDB_SILENT", "true")
    cli_main(
        [
            "fit",
            "--config",
            TINY,
            "--trainer.logger",
            "lightning.pytorch.loggers.WandbLogger",
            "--trainer.logger.save_dir",
            str(tmp_path),
            "--trainer.logger.project",
            "segzoo-test",
            *QUIET,
        ]
    )
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    media = list((runs[0] / "files" / "media").rglob("*.png"))
    tables = list((runs[0] / "files" / "media").rglob("*.table.json"))
    assert media, "validation overlays were not logged as images"
    assert tables, "the per-class IoU table was not logged"
    # W&B gets the panels the run folder holds (image name as caption): readable, not 128-px triptychs
    panels = sorted((runs[0] / "files" / "media" / "images" / "val").glob("panels_*.png"))
    written = sorted((tmp_path / "val_overlays" / "epoch=0").glob("*.png"))
    assert len(panels) == len(written) == 4
    assert sorted(Image.open(p).size for p in panels) == sorted(Image.open(p).size for p in written)
    assert all(Image.open(p).height > 320 for p in panels)


def test_the_progress_bar_of_an_iteration_based_run_counts_steps(tmp_path, monkeypatch):
    """The recipes set max_steps and no max_epochs, where Lightning's own bar reads "Epoch 1/-2"."""
    from lightning.pytorch.callbacks import Callback

    from segzoo.training import StepProgressBar

    monkeypatch.chdir(tmp_path)
    cli = cli_main(
        [
            "--config",
            TINY,
            "--trainer.max_steps=6",
            "--trainer.limit_val_batches=0",
            "--trainer.enable_model_summary=false",
        ],
        run=False,
    )
    bar = cli.trainer.progress_bar_callback
    assert isinstance(bar, StepProgressBar)  # train.py's bar unless --trainer.enable_progress_bar false
    seen = []

    class ReadBar(Callback):
        def on_train_batch_end(self, trainer, *args):
            seen.append(bar.progress.tasks[bar.train_progress_bar_id].description)

    cli.trainer.callbacks.append(ReadBar())
    cli.trainer.fit(cli.model, cli.datamodule)
    assert seen == [f"Step {step}/6 · epoch {(step - 1) // 4}" for step in range(1, 7)]  # 4 batches an epoch


def test_a_trained_run_predicts_from_its_last_checkpoint(tmp_path, monkeypatch):
    """The your-own-data loop ends in `segzoo predict --model <run>/checkpoints/last.ckpt`: the checkpoint loads by
    path with the run's classes and normalisation, and writes one label PNG per image."""
    import numpy as np
    from PIL import Image

    from segzoo._cli import main as segzoo_main

    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", "--config", TINY, "--trainer.max_steps=2", *QUIET])
    last = Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt"
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)).save(photo)
    assert segzoo_main(["predict", "--model", str(last), str(photo), "--out", str(tmp_path / "out")]) == 0
    labels = np.asarray(Image.open(tmp_path / "out" / "photo.png"))
    assert labels.shape == (40, 56) and labels.max() < 3


def test_the_folder_fine_tune_recipe_trains_on_a_folder(tmp_path, monkeypatch):
    """configs/finetune-folder.yaml on a tiny folder (the published starting weights replaced by a tiny fresh model,
    which needs no download): the recipe's data settings read the folder and a fit runs."""
    from support.fake_datasets import make_folder

    monkeypatch.chdir(tmp_path)
    root = make_folder(tmp_path / "my-dataset")
    cli = cli_main(
        [
            "fit",
            "--config",
            str(REPO / "configs" / "finetune-folder.yaml"),
            "--model.init_from=null",
            "--model.model=segformer-test",
            f"--data.init_args.data_root={root}",
            "--data.init_args.num_classes=3",
            "--data.init_args.crop_size=32",
            "--data.init_args.scale=[64, 32]",
            "--data.init_args.eval_scale=[64, 32]",
            "--data.init_args.batch_size=2",
            "--data.init_args.num_workers=0",
            "--trainer.accelerator=cpu",
            "--trainer.max_steps=2",
            "--trainer.val_check_interval=2",
            *QUIET,
        ]
    )
    assert cli.trainer.global_step == 2 and cli.model.num_classes == 3 and "val/miou" in cli.trainer.callback_metrics
