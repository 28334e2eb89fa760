"""User errors say what is wrong and what to change: the CLI's one-line errors (exit status 2, argparse's
convention; the ``segzoo.load`` messages behind them are checkpoints/test_load_errors.py's). Also: ``segzoo predict``
never writes over an input image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import segzoo
import segzoo._cli as cli
from segzoo._cli import main


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(folder / "street.png")
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(folder / "room.jpg")
    return folder


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


PREDICT = ["predict", "--arch", "segformer-test", "--num-classes", "3"]


# ------------------------------------------------------------------------------------------------ predict outputs


def test_predict_refuses_an_output_folder_that_is_the_input_folder(photos, capsys):
    before = _snapshot(photos)
    assert main([*PREDICT, str(photos), "--out", str(photos)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is the input folder" in _last_line(err) and "photos-pred" in _last_line(err)
    assert _snapshot(photos) == before  # nothing replaced, nothing added
    assert main([*PREDICT, str(photos), "--out", str(photos)]) == 2  # a second run: the same refusal


def test_predict_refuses_an_output_folder_inside_the_input_folder(photos, capsys):
    assert main([*PREDICT, str(photos), "--out", str(photos / "pred")]) == 2
    assert "lies inside the input folder" in _last_line(capsys.readouterr().err)
    assert not (photos / "pred").exists()


def test_predict_refuses_an_output_path_that_is_an_input_file(photos, capsys):
    before = _snapshot(photos)
    assert main([*PREDICT, str(photos / "street.png"), "--out", str(photos)]) == 2
    line = _last_line(capsys.readouterr().err)
    assert "which is the input image" in line and "--out" in line
    assert _snapshot(photos) == before


def test_predict_refuses_an_overlay_that_would_replace_another_label_map(photos, tmp_path, capsys):
    (photos / "street_overlay.jpg").write_bytes((photos / "room.jpg").read_bytes())
    assert main([*PREDICT, str(photos), "--out", str(tmp_path / "out")]) == 2
    assert "would both be written as street_overlay.png" in _last_line(capsys.readouterr().err)
    assert main([*PREDICT, str(photos), "--out", str(tmp_path / "out"), "--no-overlay"]) == 0  # no overlays, no clash


def test_predict_into_a_separate_folder_runs_twice(photos, tmp_path):
    out = tmp_path / "pred"
    before = _snapshot(photos)
    assert main([*PREDICT, str(photos), "--out", str(out)]) == 0
    assert main([*PREDICT, str(photos), "--out", str(out)]) == 0
    assert _snapshot(photos) == before
    assert sorted(p.name for p in out.iterdir()) == ["room.png", "room_overlay.png", "street.png", "street_overlay.png"]


# ------------------------------------------------------------------------------------------------ option errors


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--device", "banana"], "unknown device 'banana': use cpu, cuda"),
        (["--device", "cuda"], "no cuda device is available on this machine: use --device cpu"),
        (["--num-classes", "-2"], "argument --num-classes: must be at least 1, got -2"),
        (["--num-classes", "0"], "argument --num-classes: must be at least 1, got 0"),
        (["--num-classes", "2.5"], "expected a positive whole number, got '2.5'"),
        (["--crop-size", "0"], "argument --crop-size: must be at least 1"),
        (["--alpha", "3"], "argument --alpha: must be from 0 to 1"),
    ],
)
def test_predict_option_errors_end_in_one_line_with_exit_status_2(
    options, expected, photos, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the same on a machine with a GPU
    with pytest.raises(SystemExit) as exit_info:
        main([*PREDICT, str(photos), "--out", str(tmp_path / "out"), *options])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and expected in _last_line(err)
    assert _last_line(err).startswith("segzoo predict: error:")


def test_predict_refuses_a_gpu_index_the_machine_does_not_have(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SystemExit) as exit_info:
        main([*PREDICT, str(photos), "--out", str(tmp_path / "out"), "--device", "cuda:3"])
    assert exit_info.value.code == 2
    assert "cuda:3 does not exist: this machine has 1 cuda device(s), cuda:0 to cuda:0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--height", "0"], "argument --height: must be at least 1, got 0"),
        (["--width", "-5"], "argument --width: must be at least 1, got -5"),
        (["--opset", "0"], "argument --opset: must be at least 1"),
        (["--opset", "999"], "the installed onnx knows opsets up to"),
    ],
)
def test_export_option_errors_end_in_one_line_with_exit_status_2(options, expected, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--arch", "segformer-test", "--out", str(tmp_path / "m.onnx"), *options])
    assert exit_info.value.code == 2
    assert expected in _last_line(capsys.readouterr().err)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--arch", "segformer-b9"], "unknown architecture --arch segformer-b9 (closest: segformer-b"),
        (["--model", "segformer-b0"], "is an architecture, which has no weights of its own: use --arch segformer-b0"),
        (["--model", "mit-b0"], "--model mit-b0 is an ImageNet encoder"),
        (["--model", "hf-hub:no-slash"], "is not a Hub model id"),
        (["--model", "./no/such/folder"], "'./no/such/folder' does not exist"),
        (["--model", "segformer-b0-adee"], "Unknown checkpoint 'segformer-b0-adee'. Closest: segformer-b0-ade"),
        (["--arch", "segformer-test", "--checkpoint", "ftp://host/w.pth"], "not ftp:// URLs"),
        (["--arch", "segformer-test", "--mode", "slide"], "--mode slide needs --crop-size and --stride"),
        (
            ["--arch", "segformer-test", "--mode", "slide", "--crop-size", "16", "--stride", "24"],
            "larger than the window 16×16",
        ),
    ],
)
def test_predict_model_errors_end_in_one_line_with_exit_status_2(options, expected, photos, tmp_path, capsys):
    assert main(["predict", *options, str(photos), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and expected in err
    assert not (tmp_path / "out").exists()


def test_cli_reports_a_corrupt_checkpoint_in_one_line(photos, tmp_path, capsys):
    (tmp_path / "w.pth").write_bytes(b"hello, not a checkpoint\n" * 50)
    args = ["--arch", "segformer-test", "--checkpoint", str(tmp_path / "w.pth")]
    assert main(["predict", *args, str(photos), "--out", str(tmp_path / "out")]) == 2
    line = _last_line(capsys.readouterr().err)
    assert "w.pth could not be read" in line and "not a checkpoint" in line and "weights_only" not in line


def test_cli_keeps_the_traceback_of_an_error_that_is_not_the_users(photos, tmp_path, monkeypatch):
    def broken_predict(*args, **kwargs):
        raise ValueError("a bug inside predict")

    monkeypatch.setattr("segzoo.inference._predict.predict", broken_predict)
    with pytest.raises(ValueError, match="a bug inside predict"):
        main([*PREDICT, str(photos), "--out", str(tmp_path / "out")])


def test_export_refuses_to_write_over_the_checkpoint_it_exports(tmp_path, capsys):
    model = segzoo.create_model("segformer-test", num_classes=3)
    model.save_pretrained(tmp_path / "tiny")
    weights = tmp_path / "tiny" / "model.safetensors"
    before = weights.read_bytes()
    assert main(["export", "--model", str(weights), "--out", str(weights), "--no-verify"]) == 2
    assert "is the checkpoint being exported" in _last_line(capsys.readouterr().err)
    assert main(["export", "--model", str(tmp_path / "tiny"), "--out", str(weights), "--no-verify"]) == 2
    assert weights.read_bytes() == before
    assert main(["export", "--arch", "segformer-test", "--out", str(tmp_path)]) == 2
    assert "is a folder: give a file name" in _last_line(capsys.readouterr().err)


def test_cli_accepts_its_defaults_unchanged():
    args = cli.build_parser().parse_args(["predict", "--arch", "segformer-test", "x.png", "--out", "o"])
    assert (args.device, args.alpha, args.num_classes) == ("cpu", 0.5, None)
