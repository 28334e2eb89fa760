"""Scoring as the publisher's test loop does: validation, test and predict in SegmentationTask, ``segzoo eval`` and
``benchmarks/accuracy.py`` take predict's path (each image as read through a test pipeline, labels at the image's own
size against the mask as stored), whichever test pipeline applies (the checkpoint's or the DataModule's) is the one
the log names, and batches of images of several sizes count every pixel once.

Equality with mmsegmentation's own ``Runner.test()`` is proven in ``reference/test_test_loop.py``; here the paths are
held against ``segzoo.predict`` and one another, with a tiny model on small generated images."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import segzoo
from segzoo import EvalProtocol
from segzoo._cli import main
from segzoo.data import FolderDataModule
from segzoo.training import SegmentationTask

from support import REPO
from support.fake_datasets import make_ade20k, make_folder_of_sizes
from support.inference_toys import PixelModel
from support.lit_helpers import quiet_trainer

TINY = str(REPO / "configs" / "test" / "tiny.yaml")
# the DataModule's test pipeline, and another one a checkpoint carries
DATA_PIPELINE = {"eval_scale": (128, 64), "mean": (123.675, 116.28, 103.53), "std": (58.395, 57.12, 57.375)}
CHECKPOINT_PIPELINE = EvalProtocol(
    mean=(127.5,) * 3, std=(127.5,) * 3, test_scale=(2048, 80), size_divisor=8, tta_style="mmseg-1.x"
)
CHECKPOINT_CFG = {"num_classes": 3, "eval": CHECKPOINT_PIPELINE.to_dict()}


def folder_data(root: Path, **kwargs) -> FolderDataModule:
    return FolderDataModule(
        make_folder_of_sizes(root), num_classes=3, num_workers=0, batch_size=2, crop_size=32, **DATA_PIPELINE, **kwargs
    )


def tiny_model(cfg: dict | None = None) -> torch.nn.Module:
    """Per-pixel random logits: on noise images every class shows up, and every resize moves some labels (the
    strips of segzoo models' low-resolution logits are held against full-resolution logits in test_predict_strips)."""
    model = PixelModel(num_classes=3).eval()
    model.pretrained_cfg = dict(cfg or {})
    return model


def predict_confusion(model: torch.nn.Module, dm: FolderDataModule, cfg: dict, tta: bool = False) -> torch.Tensor:
    """The confusion matrix of ``segzoo.predict``'s labels (the model given ``cfg`` as its pipeline) against the
    validation masks as stored."""
    saved, model.pretrained_cfg = model.pretrained_cfg, cfg
    try:
        dm.setup("validate")
        confusion = torch.zeros(3, 3, dtype=torch.long)
        for index in range(len(dm.datasets["val"])):
            image, mask, _ = dm.datasets["val"].load_sample(index)
            labels = torch.from_numpy(segzoo.predict(model, image, tta=tta))
            assert labels.shape == mask.shape
            valid = torch.from_numpy(mask != 255)
            target = torch.from_numpy(mask.astype(np.int64))[valid]
            confusion.index_put_((target, labels[valid]), torch.tensor(1), accumulate=True)
        return confusion
    finally:
        model.pretrained_cfg = saved


def data_cfg(dm: FolderDataModule, tta_style: str = "mmseg-0.x") -> dict:
    return {"eval": EvalProtocol(mean=dm.mean, std=dm.std, test_scale=dm.eval_scale, tta_style=tta_style).to_dict()}


@pytest.mark.parametrize("val_batch_size", [1, 2, 5])
def test_validation_of_images_of_several_sizes_equals_predict(tmp_path, val_batch_size):
    dm = folder_data(tmp_path, val_batch_size=val_batch_size)
    model = tiny_model()
    module = SegmentationTask(model, num_classes=3, num_log_images=0)
    quiet_trainer().validate(module, dm, verbose=False)
    expected = predict_confusion(model, dm, data_cfg(dm))
    assert torch.equal(module.confusion_matrices["val"], expected)
    masks = [dm.datasets["val"].load_sample(i)[1] for i in range(5)]
    assert expected.sum() == sum((mask != 255).sum() for mask in masks)  # every labelled pixel once


def test_test_multiscale_flip_resizes_every_scale_from_the_original(tmp_path):
    """test_tta in the loop equals predict(tta=True): each ratio resized from the image as read, by the rule asked."""
    dm = folder_data(tmp_path, val_batch_size=2)
    model = tiny_model()
    module = SegmentationTask(model, num_classes=3, test_tta=True, tta_style="mmseg-1.x")
    quiet_trainer().test(module, dm, verbose=False)
    expected = predict_confusion(model, dm, data_cfg(dm, "mmseg-1.x"), tta=True)
    other = predict_confusion(model, dm, data_cfg(dm, "mmseg-0.x"), tta=True)
    assert torch.equal(module.confusion_matrices["test"], expected)
    assert not torch.equal(expected, other)  # the two rules differ on these sizes: the test can fail


def test_a_checkpoints_own_pipeline_scores_it_until_it_is_trained(tmp_path, caplog):
    dm = folder_data(tmp_path)
    model = tiny_model(CHECKPOINT_CFG)
    module = SegmentationTask(model, num_classes=3, num_log_images=0)
    with caplog.at_level(logging.INFO):
        quiet_trainer().validate(module, dm, verbose=False)
    protocol, origin = module.eval_protocol()
    assert origin == "checkpoint" and protocol == CHECKPOINT_PIPELINE
    by_checkpoint, by_data = predict_confusion(model, dm, CHECKPOINT_CFG), predict_confusion(model, dm, data_cfg(dm))
    assert not torch.equal(by_checkpoint, by_data)  # the two pipelines score differently here: the test can fail
    assert torch.equal(module.confusion_matrices["val"], by_checkpoint)
    line = next(r.getMessage() for r in caplog.records if "scored at each image's own size" in r.getMessage())
    assert "with the checkpoint's test pipeline" in line and "test_scale=(2048, 80)" in line
    assert "not the DataModule's" in line and "--model.eval_protocol_source data" in line
    # asked for explicitly, the DataModule's
    data_module = SegmentationTask(model, num_classes=3, num_log_images=0, eval_protocol_source="data")
    quiet_trainer().validate(data_module, dm, verbose=False)
    assert data_module.eval_protocol()[1] == "data"
    assert torch.equal(data_module.confusion_matrices["val"], by_data)
    # once trained here, its validation uses the DataModule's (what it trains on)
    quiet_trainer(max_steps=1).fit(module, dm)
    assert module.eval_protocol()[1] == "data"


def test_a_pipeline_is_the_checkpoints_only_with_its_classes(tmp_path):
    assert SegmentationTask(tiny_model(CHECKPOINT_CFG | {"num_classes": 150}), num_classes=3).eval_protocol()[1] == (
        "data"
    )
    with pytest.raises(ValueError, match="carry no test pipeline"):
        SegmentationTask(tiny_model(), num_classes=3, eval_protocol_source="checkpoint").eval_protocol()
    with pytest.raises(ValueError, match="eval_protocol_source"):
        SegmentationTask(tiny_model(), num_classes=3, eval_protocol_source="publisher")


def test_train_py_test_and_segzoo_eval_of_a_ckpt_agree(tmp_path, monkeypatch, capsys):
    """A .ckpt train.py wrote: `train.py test --ckpt_path` scores with the run's pipeline (its DataModule's and
    evaluation settings, as segzoo.load reads them), and `segzoo eval --model <ckpt>` rebuilds the run's DataModule
    from the file and gives the same confusion matrix."""
    from segzoo.training import cli_main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["train.py"])
    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.limit_val_batches", "0"]
    cli_main(["fit", "--config", TINY, "--trainer.max_steps", "2", *quiet])
    (ckpt,) = tmp_path.glob("runs/tiny/version_0/checkpoints/last.ckpt")
    test = cli_main(["test", "--config", TINY, "--ckpt_path", str(ckpt), *quiet])
    protocol, origin = test.model.eval_protocol()
    assert origin == "checkpoint" and protocol == segzoo.load(str(ckpt)).eval_protocol
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(ckpt), "--num-workers", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "SyntheticDataModule" and result["images"] == 4
    assert torch.equal(torch.tensor(result["confusion"]), test.model.confusion_matrices["test"])
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith(f"{ckpt}: aAcc ")


def test_segzoo_eval_takes_the_dataset_from_the_file_or_the_flag(tmp_path, capsys):
    data = make_ade20k(tmp_path / "ade")
    model = segzoo.create_model("segformer-test", num_classes=150)
    protocol = EvalProtocol(mean=(127.5,) * 3, std=(127.5,) * 3, test_scale=(2048, 32))
    cfg = {"dataset": "ade20k", "eval": protocol.to_dict()}
    folder = tmp_path / "saved"
    model.save_pretrained(folder, pretrained_cfg=cfg)
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(folder), "--data", str(data), "--num-workers", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dataset"] == "ADE20KDataModule" and result["protocol_source"] == "checkpoint"
    assert result["protocol"]["test_scale"] == [2048, 32] and len(result["per_class"]) == 150
    loaded = segzoo.load(str(folder))
    dm = segzoo.data.ADE20KDataModule(data, num_workers=0)
    dm.setup("test")
    expected = torch.zeros(150, 150, dtype=torch.long)
    for index in range(len(dm.datasets["test"])):
        image, mask, _ = dm.datasets["test"].load_sample(index)
        labels, valid = torch.from_numpy(loaded.predict(image)), torch.from_numpy(mask != 255)
        expected.index_put_(
            (torch.from_numpy(mask[mask != 255]).long(), labels[valid]), torch.tensor(1), accumulate=True
        )
    assert torch.equal(torch.tensor(result["confusion"]), expected)
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"aAcc {result['aAcc']:.2f}  mIoU {result['mIoU']:.2f}  mAcc {result['mAcc']:.2f}" in printed
    # a bare weights file says nothing of its data: the flag does
    weights = tmp_path / "weights.pth"
    torch.save(model.state_dict(), weights)
    assert main(["eval", "--model", str(weights), "--data", str(data), "--num-workers", "0"]) == 2
    assert "--dataset ade20k" in capsys.readouterr().err
    assert (
        main(
            [
                "eval",
                "--model",
                str(weights),
                "--dataset",
                "ade20k",
                "--data",
                str(data),
                "--num-workers",
                "0",
                "--limit",
                "1",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["images"] == 1


def test_eval_datasets_are_the_datamodules_segzoo_eval_knows():
    from segzoo._cli import EVAL_DATASETS
    from segzoo.training._evaluate import DATAMODULES

    assert EVAL_DATASETS == tuple(DATAMODULES)
