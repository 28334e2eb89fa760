"""What ``segzoo.load`` reads for a name: a checkpoint name always means the published checkpoint, a local folder or
file is asked for as a path (or ``local-dir:``), a named weights file is the file read, and ``checkpoint=`` weights
with another number of classes give the same model whether they come as a file or a folder."""

from __future__ import annotations

import logging

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import segzoo
import segzoo.checkpoints._download as hub
from segzoo import CorruptedFileError, DownloadError, UnknownCheckpointError
from segzoo._cli import main


class WouldDownload(DownloadError):
    """Raised instead of downloading a published checkpoint: the test only needs to know that load went there."""


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(source, **kwargs):
        raise WouldDownload(f"would download {getattr(source, 'name', source)}")

    monkeypatch.setattr(hub, "download_file", refuse)


@pytest.fixture
def tiny():
    return segzoo.create_model("segformer-test", num_classes=19).eval()


def test_a_checkpoint_name_means_the_published_checkpoint_even_beside_a_folder_of_that_name(
    tiny, tmp_path, monkeypatch, no_downloads, caplog, capsys
):
    monkeypatch.chdir(tmp_path)
    tiny.save_pretrained("segformer-b0-ade")  # a fine-tuned model saved under the name it started from
    with caplog.at_level(logging.WARNING, logger="segzoo"), pytest.raises(WouldDownload, match="segformer-b0-ade"):
        segzoo.load("segformer-b0-ade")
    assert "segzoo.load('./segformer-b0-ade')" in caplog.text  # the warning says how to load the folder
    for path in ("./segformer-b0-ade", "local-dir:segformer-b0-ade", str(tmp_path / "segformer-b0-ade")):
        local = segzoo.load(path)
        assert local.arch_name == "segformer-test" and local.num_classes == 19
    # the command line resolves --model the same way
    image = tmp_path / "photo.png"
    Image.new("RGB", (64, 48)).save(image)
    assert main(["predict", "--model", "segformer-b0-ade", str(image), "--out", str(tmp_path / "pred")]) == 2
    assert "would download segformer-b0-ade" in capsys.readouterr().err
    assert main(["predict", "--model", "./segformer-b0-ade", str(image), "--out", str(tmp_path / "pred")]) == 0


def test_a_stray_file_named_like_a_checkpoint_does_not_hide_it(tmp_path, monkeypatch, no_downloads):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "setr-pup-ade").write_text("notes")
    with pytest.raises(WouldDownload, match="setr-pup-ade"):
        segzoo.load("setr-pup-ade")


def test_a_bare_name_of_a_local_folder_asks_for_its_path(tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tiny.save_pretrained("my-run")
    with pytest.raises(UnknownCheckpointError, match=r"segzoo\.load\('\./my-run'\)"):
        segzoo.load("my-run")
    assert segzoo.load("./my-run").num_classes == 19
    with pytest.raises(FileNotFoundError, match="does not exist"):
        segzoo.load("local-dir:nowhere")


def test_a_named_safetensors_file_is_the_one_read_beside_config_json(tiny, tmp_path):
    tiny.save_pretrained(tmp_path / "run")
    other = segzoo.create_model("segformer-test", num_classes=19)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, tmp_path / "run" / "epoch5.safetensors")
    loaded = segzoo.load(str(tmp_path / "run" / "epoch5.safetensors"))
    for name, value in other.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    assert not torch.equal(
        loaded.state_dict()["decode_head.linear_pred.weight"], tiny.state_dict()["decode_head.linear_pred.weight"]
    )


def test_checkpoint_weights_with_other_classes_load_alike_from_a_file_and_a_folder(tmp_path, caplog):
    nineteen = segzoo.create_model("segformer-b0", num_classes=19)
    nineteen.save_pretrained(tmp_path / "folder")
    save_file({k: v.contiguous() for k, v in nineteen.state_dict().items()}, tmp_path / "weights.safetensors")
    table = segzoo.get_pretrained_cfg("segformer-b0-ade")
    with caplog.at_level(logging.WARNING, logger="segzoo"):
        from_folder = segzoo.load("segformer-b0-ade", checkpoint=tmp_path / "folder")
        from_file = segzoo.load("segformer-b0-ade", checkpoint=tmp_path / "weights.safetensors")
    for model in (from_folder, from_file):
        cfg = model.pretrained_cfg
        assert model.num_classes == cfg["num_classes"] == 19
        assert cfg["class_names"] is None and cfg["palette"] is None  # not ADE20K's "wall", "building", ...
        assert cfg["mean"] == list(table.mean) and cfg["eval"] == table.eval.to_dict()
        assert torch.equal(model.decode_head.linear_pred.weight, nineteen.decode_head.linear_pred.weight)
    assert from_folder.pretrained_cfg == from_file.pretrained_cfg
    assert caplog.text.count("has 19 classes, checkpoint segformer-b0-ade 150") == 2


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "not an object"),
        ('{"architecture": "segformer-test"}', "has no 'num_classes'"),
    ],
)
def test_a_broken_config_json_is_named(tiny, tmp_path, capsys, text, said):
    tiny.save_pretrained(tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text(text)
    with pytest.raises(CorruptedFileError, match=said) as error:
        segzoo.load(str(tmp_path / "run"))
    assert str(tmp_path / "run" / "config.json") in str(error.value)
    image = tmp_path / "photo.png"
    Image.new("RGB", (64, 48)).save(image)
    assert main(["predict", "--model", str(tmp_path / "run"), str(image), "--out", str(tmp_path / "pred")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(tmp_path / "run" / "config.json") in err and said in err
