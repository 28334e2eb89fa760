"""A saved model's config is one object, ModelConfig, wherever segzoo saves the model: the whole of a
``save_pretrained`` folder's ``config.json``, an ONNX file's ``segzoo.config`` metadata and a training checkpoint's
``segzoo_config``, each read by the one reader; files written in the shapes of before load too."""

from __future__ import annotations

import json

import pytest
import torch

import segzoo
from segzoo import EvalProtocol, ModelConfig
from segzoo.inference import export_onnx
from segzoo.runtime import load as load_onnx
from segzoo.runtime._model import read_metadata
from segzoo.training import SegmentationTask

from support.lit_helpers import ColourDataModule, quiet_trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A ``.ckpt`` of one training step of a registry model on a DataModule with class names and a palette."""
    folder = tmp_path_factory.mktemp("trained")
    torch.manual_seed(0)
    data = ColourDataModule(num_train=4, num_val=2, batch_size=2, size=32)
    module = SegmentationTask("segformer-test", num_classes=3, num_log_images=0)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=1, default_root_dir=folder)
    trainer.fit(module, data)
    trainer.save_checkpoint(folder / "run.ckpt")
    return folder / "run.ckpt", data


@pytest.mark.slow
def test_one_model_saved_three_ways_reads_back_as_one_config(trained, tmp_path):
    path, data = trained
    from_checkpoint = ModelConfig.from_checkpoint(torch.load(path, weights_only=True))
    assert from_checkpoint.architecture == "segformer-test" and from_checkpoint.num_classes == 3
    assert from_checkpoint.class_names == data.class_names
    assert from_checkpoint.palette == [list(color) for color in data.palette]
    assert from_checkpoint.eval_protocol == EvalProtocol(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # the data's
    assert from_checkpoint.segzoo_version == segzoo.__version__

    model = segzoo.load(str(path))
    model.save_pretrained(tmp_path / "folder")
    from_folder = ModelConfig.from_dict(json.loads((tmp_path / "folder" / "config.json").read_text()))
    export_onnx(model, tmp_path / "model.onnx", height=64, width=64, verify=False)
    from_onnx = ModelConfig.from_onnx_metadata(read_metadata(tmp_path / "model.onnx"))

    assert from_folder == from_checkpoint
    assert from_onnx == from_checkpoint
    assert ModelConfig.of(model) == from_checkpoint  # and the model loaded from each is the same model
    assert ModelConfig.of(segzoo.load(str(tmp_path / "folder"))) == from_checkpoint
    assert load_onnx(tmp_path / "model.onnx").config == from_checkpoint


def test_a_checkpoint_written_before_segzoo_config_loads_from_its_hyperparameters(tmp_path):
    """What Lightning wrote for segzoo's training module before the model config was one entry: the module's and
    the DataModule's hyperparameters beside the weights."""
    weights = segzoo.create_model("segformer-test", num_classes=4).state_dict()
    names = ["sky", "road", "tree", "car"]
    checkpoint = {
        "state_dict": {f"model.{key}": value for key, value in weights.items()},
        "hyper_parameters": {
            "model": "segformer-test", "num_classes": 4, "model_args": {"freeze_encoder": True},
            "eval_mode": "slide", "eval_crop": 48, "eval_stride": 32, "init_from": None,
        },
        "datamodule_hyper_parameters": {
            "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0], "eval_scale": [256, 64], "classes": names,
        },
    }  # fmt: skip
    torch.save(checkpoint, tmp_path / "old.ckpt")
    expected = EvalProtocol(mean=(1, 2, 3), std=(4, 5, 6), test_scale=(256, 64), mode="slide", crop=48, stride=32)
    config = ModelConfig.from_checkpoint(torch.load(tmp_path / "old.ckpt", weights_only=True))
    assert (config.architecture, config.num_classes, config.model_args) == ("segformer-test", 4, {})
    assert config.class_names == names and config.eval_protocol == expected
    loaded = segzoo.load(str(tmp_path / "old.ckpt"))
    assert (loaded.arch_name, loaded.num_classes, loaded.pretrained_cfg["class_names"]) == ("segformer-test", 4, names)
    assert loaded.eval_protocol == expected
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in weights.items())


def test_a_config_json_of_before_reads_as_today(tmp_path):
    """``config.json`` as ``save_pretrained`` wrote it before (the test pipeline as flat ``pretrained_cfg`` keys)
    reads into today's config, the pipeline as one ``eval`` entry."""
    old = {
        "architecture": "segformer-test", "num_classes": 3, "model_args": {"drop_path_rate": 0.0},
        "pretrained_cfg": {"name": "old", "mean": [1.0, 2.0, 3.0], "std": [4.0, 5.0, 6.0], "eval_mode": "whole",
                           "crop_size": [64, 64], "class_names": ["a", "b", "c"]},
        "segzoo_version": "0.0.1",
    }  # fmt: skip
    config = ModelConfig.from_dict(old)
    assert (config.architecture, config.num_classes, config.model_args) == ("segformer-test", 3, {"drop_path_rate": 0})
    assert config.eval_protocol == EvalProtocol(mean=(1, 2, 3), std=(4, 5, 6))
    assert config.name == "old" and config.class_names == ["a", "b", "c"] and config.segzoo_version == "0.0.1"
    assert "eval_mode" not in config.to_dict()["pretrained_cfg"]
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_an_onnx_file_of_before_reads_from_its_separate_keys():
    protocol = EvalProtocol(test_scale=(512, 128), mode="slide", crop=64, stride=48)
    metadata = {
        "segzoo.eval_protocol": json.dumps(protocol.to_dict()),
        "segzoo.class_names": json.dumps(["a", "b"]),
        "segzoo.palette": json.dumps([[1, 2, 3], [4, 5, 6]]),
        "segzoo.output": json.dumps({"logits": "input"}),
    }
    config = ModelConfig.from_onnx_metadata(metadata)
    assert config.eval_protocol == protocol and config.class_names == ["a", "b"] and config.num_classes == 2
    assert config.palette == [[1, 2, 3], [4, 5, 6]] and config.architecture is None
    assert ModelConfig.from_onnx_metadata({"segzoo.output": "{}"}) is None
