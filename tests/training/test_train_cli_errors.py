"""``segzoo train`` / ``python train.py``: what the user gave wrong ends in one line naming it (exit status 2), not in
jsonargparse's report of every type a value was tried as or in a traceback; a checkpoint of another class count is
refused before it fails to load; ``--ckpt_path last`` with nothing to resume says so; no Lightning warning about
``args`` on every run."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import sys
import warnings
from pathlib import Path

import pytest
import torch

from segzoo._cli import main as segzoo_main
from segzoo.training import cli_main, main

from support import REPO

TINY = str(REPO / "configs" / "test" / "tiny.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def run_train(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    """``python train.py <args>``: its exit status and stderr."""
    monkeypatch.setattr(sys, "argv", ["train.py", *args])
    try:
        main()
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code
    return status, capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--data", "FolderDataModule", "--data.num_classes", "3"],
            "--data (segzoo.data.FolderDataModule): the following arguments are required: data_root: give "
            "--data.data_root",
        ),
        (
            ["--data", "FolderDataModule", "--data.num_classes", "3", "--data.data_root", "/no/such/folder"],
            "segzoo.data.FolderDataModule: Folder dataset: data_root '/no/such/folder' does not exist",
        ),
        (["--data.batch_size", "0"], "segzoo.data.SyntheticDataModule: batch_size must be at least 1, got 0"),
        (["--data.batch_size", "two"], "--data.batch_size (segzoo.data.SyntheticDataModule): expected int, got 'two'"),
        (["--model.lr_scheduler.power", "x"], "--model.lr_scheduler.power: expected float, got 'x'"),
        (["--model.model", "segformr-b0"], "--model: unknown architecture 'segformr-b0'. Did you mean: segformer-b0"),
        (
            ["--model.model", "segmenter-mask", "--model.model_args", "{encoder: vit_smal_patch14_dinov2}"],
            "timm has no model 'vit_smal_patch14_dinov2'; closest: vit_small_patch14_dinov2",
        ),
        (
            ["--model.loss", "segzoo.training.CrossEntropyLoss", "--model.loss.class_weight", "[1.0, 2.0]"],
            "CrossEntropyLoss's class_weight has 2 values for 3 classes",
        ),
        (["--ckpt_path", "/no/such/last.ckpt"], "--ckpt_path /no/such/last.ckpt does not exist"),
    ],
)
def test_fit_errors_are_one_line(args, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, err = run_train(["fit", "--config", TINY, *QUIET, "--trainer.max_steps=1", *args], monkeypatch, capsys)
    assert status == 2
    (line,) = [line for line in err.splitlines() if "error:" in line]
    assert line.startswith("train.py: error: ") and expected in line
    assert "Traceback" not in err and "Given value" not in err and "NoneType" not in err
    assert not (tmp_path / "runs").exists()  # refused before anything trained


@pytest.mark.parametrize("args", [[], ["--data.num_classes", "3"]])
def test_test_without_data_says_to_give_a_datamodule(args, monkeypatch, capsys):
    status, err = run_train(["test", "--model.model", "segformer-test", *args], monkeypatch, capsys)
    assert status == 2
    assert err.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "a DataModule: give a recipe (--config" in err and "--data FolderDataModule" in err


def test_segzoo_train_gives_no_lightning_args_warning(monkeypatch, capsys):
    argv = ["train", "fit", "--config", TINY, "--print_config"]
    monkeypatch.setattr(sys, "argv", ["segzoo", *argv])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as exit_info:
            segzoo_main(argv)
    assert exit_info.value.code == 0 and "segformer-test" in capsys.readouterr().out
    assert not [w for w in caught if "args parameter" in str(w.message)]


@pytest.fixture(scope="module")
def three_class_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("run")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        cli = cli_main(["fit", "--config", TINY, *QUIET, "--trainer.max_steps=1", "--trainer.limit_val_batches=0"])
        return (Path(cli.trainer.log_dir) / "checkpoints" / "last.ckpt").resolve()
    finally:
        os.chdir(cwd)


@pytest.mark.parametrize("how", ["path", "last"])
def test_resuming_with_another_class_count_is_one_line(three_class_checkpoint, how, tmp_path, monkeypatch, capsys):
    assert torch.load(three_class_checkpoint, weights_only=True)["hyper_parameters"]["num_classes"] == 3
    if how == "last":  # the recipe's logger folder holds it
        monkeypatch.chdir(three_class_checkpoint.parents[4])
        ckpt = "last"
    else:
        monkeypatch.chdir(tmp_path)
        ckpt = str(three_class_checkpoint)
    status, err = run_train(
        ["fit", "--config", TINY, *QUIET, "--data.num_classes", "5", "--ckpt_path", ckpt], monkeypatch, capsys
    )
    assert status == 2 and "Traceback" not in err and "size mismatch" not in err
    line = err.strip().splitlines()[-1]
    assert "was trained for 3 classes, and the data has 5" in line and "--model.init_from" in line


def test_ckpt_path_last_with_nothing_to_resume_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, err = run_train(
        [
            "fit",
            "--config",
            TINY,
            *QUIET,
            "--trainer.max_steps=1",
            "--trainer.limit_val_batches=0",
            "--ckpt_path",
            "last",
        ],
        monkeypatch,
        capsys,
    )
    assert status == 0
    expected = f"no last.ckpt under {Path('runs') / 'tiny' / 'version_*' / 'checkpoints'} yet, so nothing to resume"
    assert expected in err and "save_last" not in err
