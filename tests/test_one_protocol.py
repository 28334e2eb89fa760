"""The test pipeline is one object, EvalProtocol, wherever segzoo keeps it: a table row's ``eval``,
``model.pretrained_cfg["eval"]`` and the ``config.json`` it is saved to, a train.py checkpoint's ``eval_protocol``
(and its model config's ``pretrained_cfg["eval"]``);
each is read back by ``EvalProtocol.from_dict``. Folders and checkpoints written before it was kept so load with the
pipeline they held."""

from __future__ import annotations

import dataclasses
import json

import torch

import segzoo
from segzoo import EvalProtocol
from segzoo.data import SyntheticDataModule
from segzoo.training import SegmentationTask

from support.lit_helpers import quiet_trainer

SLIDE = EvalProtocol(
    mean=(1, 2, 3), std=(4, 5, 6), test_scale=(256, 64), mode="slide", crop=32, stride=24, tta_style="mmseg-1.x"
)


def test_a_saved_folder_keeps_the_protocol_as_one_entry(tmp_path):
    model = segzoo.create_model("segformer-test", num_classes=3)
    model.eval_protocol = SLIDE
    assert model.pretrained_cfg["eval"] == SLIDE.to_dict() and model.pretrained_cfg["mean"] == [1.0, 2.0, 3.0]
    folder = tmp_path / "saved"
    assert model.save_pretrained(folder) is None  # as huggingface_hub's ModelHubMixin
    config = json.loads((folder / "config.json").read_text())
    assert config["pretrained_cfg"]["eval"] == SLIDE.to_dict()
    assert segzoo.load(str(folder)).eval_protocol == SLIDE


def test_a_folder_saved_with_the_flat_keys_of_before_loads_with_its_pipeline(tmp_path):
    folder = tmp_path / "old"
    segzoo.create_model("segformer-test", num_classes=3).save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"] = {  # what segzoo wrote before: crop_size was the window in slide mode
        "name": "old", "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0], "eval_mode": "slide", "crop_size": [32, 32],
        "train_crop_size": [64, 64], "stride": [24, 24], "test_scale": [256, 64], "size_divisor": None,
        "min_short_side": None, "tta": "mmseg-1.x",
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    loaded = segzoo.load(str(folder))
    assert loaded.eval_protocol == SLIDE
    assert loaded.pretrained_cfg["crop_size"] == [64, 64] and loaded.pretrained_cfg["name"] == "old"
    assert not {"eval_mode", "stride", "test_scale", "tta", "train_crop_size"} & set(loaded.pretrained_cfg)


def test_a_training_checkpoint_records_the_protocol_its_validation_used(tmp_path):
    data = SyntheticDataModule(num_classes=3, image_size=64, num_train=4, num_val=2, batch_size=2)
    module = SegmentationTask(
        "segformer-test", num_classes=3, eval_mode="slide", eval_crop=48, eval_stride=32, num_log_images=0
    )
    trainer = quiet_trainer(max_steps=1, limit_val_batches=1, default_root_dir=tmp_path)
    trainer.fit(module, data)
    used, origin = module.eval_protocol()
    assert origin == "data" and (used.mode, used.crop, used.stride) == ("slide", (48, 48), (32, 32))
    path = tmp_path / "run.ckpt"
    trainer.save_checkpoint(path)
    checkpoint = torch.load(path, weights_only=True)
    assert EvalProtocol.from_dict(checkpoint["eval_protocol"]) == used
    assert segzoo.load(str(path)).eval_protocol == used
    # a checkpoint written before segzoo recorded it: the same facts, from the DataModule's and the module's
    # hyperparameters (the multi-scale settings at their defaults)
    del checkpoint["eval_protocol"], checkpoint["segzoo_config"]
    torch.save(checkpoint, tmp_path / "before.ckpt")
    defaults = {field: getattr(EvalProtocol(), field) for field in ("tta_scales", "tta_style", "flip")}
    assert segzoo.load(str(tmp_path / "before.ckpt")).eval_protocol == dataclasses.replace(used, **defaults)
