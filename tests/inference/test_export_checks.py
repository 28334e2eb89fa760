"""``export_onnx`` / ``segzoo export`` check what they wrote against what was asked (the opset, onnxruntime at other
sizes, agreement with PyTorch), and a failed check leaves no file behind and keeps an existing one."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from segzoo import ExportError
from segzoo._cli import main
from segzoo._model_config import ModelConfig
from segzoo.inference import export_onnx
from segzoo.inference._export import written_opset


class _Normed(nn.Module):
    """A LayerNorm: an operator with no version below opset 17, so it cannot be converted to opset 5."""

    def __init__(self):
        super().__init__()
        self.conv, self.norm = nn.Conv2d(3, 4, 1), nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _PadsOnlyWhenNeeded(nn.Module):  # a Python branch on the size: frozen by tracing at a multiple of 8
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] * 2 if x.shape[-1] % 8 else x[:, :2]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_export_refuses_an_opset_it_could_not_write_and_leaves_no_file(tmp_path):
    with pytest.raises(
        ExportError,
        match=r"asked for ONNX opset 5, but torch.onnx could only write opset 18.*"
        r"--opset 18 or higher",
    ):
        export_onnx(_Normed(), tmp_path / "n.onnx", height=32, width=32, opset=5)
    assert _leftovers(tmp_path) == []


def test_export_writes_the_opset_asked_for(tmp_path):
    export_onnx(_Normed(), tmp_path / "n.onnx", height=32, width=32, opset=17)
    assert written_opset(tmp_path / "n.onnx") == 17 and _leftovers(tmp_path) == ["n.onnx"]


@pytest.mark.slow
def test_export_command_with_opset_5_fails_in_one_line(tmp_path, capsys):
    out = tmp_path / "s.onnx"
    args = ["export", "--arch", "segformer-test", "--num-classes", "3", "--out", str(out), "--height", "64"]
    assert main([*args, "--width", "64", "--opset", "5", "--no-verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("segzoo export: error: asked for ONNX opset 5") and "--opset 18" in err[-1]
    assert _leftovers(tmp_path) == []


@pytest.mark.slow
def test_segformer_exported_too_small_is_refused_with_the_size_to_use(tmp_path, capsys):
    out = tmp_path / "s.onnx"
    args = ["export", "--arch", "segformer-test", "--num-classes", "3", "--out", str(out)]
    assert main([*args, "--height", "32", "--width", "32"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "onnxruntime cannot run the exported graph" in line and "--height 512 --width 512" in line
    assert _leftovers(tmp_path) == []


def test_failed_export_keeps_the_existing_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous, good export")
    with warnings.catch_warnings(), pytest.raises(ExportError, match="differs from PyTorch"):
        warnings.simplefilter("ignore")
        export_onnx(_PadsOnlyWhenNeeded(), path, height=32, width=32)
    assert path.read_bytes() == b"the previous, good export" and _leftovers(tmp_path) == ["model.onnx"]


class _WithProtocol(nn.Module):
    """A 1×1 conv carrying a checkpoint's pretrained_cfg and eval_protocol, as segzoo models do."""

    def __init__(self, checkpoint: str):
        super().__init__()
        import segzoo

        self.conv = nn.Conv2d(3, 4, 1)
        self.pretrained_cfg = segzoo.get_pretrained_cfg(checkpoint).to_dict()
        self.eval_protocol = segzoo.EvalProtocol.from_dict(self.pretrained_cfg["eval"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_export_records_the_checkpoints_preprocessing_and_class_names(tmp_path):
    """The graph takes normalised images: the file says how to make them (segzoo.EvalProtocol as JSON) and names
    the classes, so an ONNX user needs no segzoo."""
    import json

    import onnx

    import segzoo

    model = _WithProtocol("segmenter-t16-mask-ade")  # slide mode 512/480, mean 127.5
    path = tmp_path / "model.onnx"
    export_onnx(model, path, height=32, width=32, verify=False)
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    protocol = segzoo.EvalProtocol.from_dict(json.loads(props["segzoo.eval_protocol"]))
    assert protocol == model.eval_protocol and protocol.mode == "slide" and protocol.crop == (512, 512)
    assert protocol.mean == (127.5, 127.5, 127.5)
    assert json.loads(props["segzoo.class_names"])[:3] == ["wall", "building", "sky"]
    config = ModelConfig.from_onnx_metadata(props)  # the model's config, with the protocol it was exported with
    assert config == ModelConfig.from_dict(json.loads(props["segzoo.config"]))
    assert config.eval_protocol == protocol and config.class_names == model.pretrained_cfg["class_names"]
    assert config.name == "segmenter-t16-mask-ade" and config.architecture is None  # a module without arch_name
