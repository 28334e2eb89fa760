"""ONNX export (checked against onnxruntime at two input sizes) and torch.compile for a tiny model of each family."""

from __future__ import annotations

import logging
import re

import onnx
import onnxruntime
import pytest
import torch
from torch import nn

import segzoo
from segzoo._cli import main
from segzoo.inference import export_onnx, verify_onnx

FAMILIES = ["segformer-test", "segmenter-test-mask", "setr-test-pup"]


def _dynamic_input_dims(path) -> list[bool]:
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [d.HasField("dim_param") for d in dims]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["segmenter-test-mask", "setr-test-pup"])
def test_export_onnx_matches_pytorch_at_two_sizes(arch, tmp_path):
    model = segzoo.create_model(arch, num_classes=3)
    path = tmp_path / f"{arch}.onnx"
    max_diff = export_onnx(model, path, height=64, width=64)
    assert max_diff < 1e-4
    assert _dynamic_input_dims(path) == [True, False, True, True]  # batch, height and width dynamic
    assert verify_onnx(model, path, sizes=((1, 45, 81),), seed=1) < 1e-4  # a third, independent size


@pytest.mark.slow  # exports and checks the real SegFormer-B0 at 512 x 512
def test_export_command_for_segformer(tmp_path, capsys):
    path = tmp_path / "segformer.onnx"
    args = ["export", "--arch", "segformer-test", "--num-classes", "3", "--out", str(path), "--height", "64"]
    assert main([*args, "--width", "96"]) == 0
    printed = capsys.readouterr().out
    max_diff = float(re.search(r"max abs difference to PyTorch on two input sizes: (\S+)\)", printed).group(1))
    assert max_diff < 1e-4
    assert _dynamic_input_dims(path) == [True, False, True, True]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"image": torch.randn(2, 3, 71, 53).numpy()})
    assert logits.shape == (2, 3, 71, 53)


class _DataDependent(nn.Module):
    """A branch on a tensor value: torch.export cannot capture it, the TorchScript tracer records one side."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if float(x.mean()) > 1e9:
            x = x * 0
        return self.conv(x)


def test_export_falls_back_to_the_torchscript_exporter(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="segzoo"):
        max_diff = export_onnx(_DataDependent(), tmp_path / "toy.onnx", height=32, width=48)
    assert max_diff < 1e-5
    assert "TorchScript-based ONNX exporter" in caplog.text
    assert _dynamic_input_dims(tmp_path / "toy.onnx") == [True, False, True, True]


@pytest.mark.parametrize("arch", [*FAMILIES, "setr-test-mla", "segmenter-test-linear"])
def test_torch_compile_matches_eager(arch):
    # backend="eager" checks that dynamo captures the whole model in one graph; inductor's C++ compile takes about
    # a minute for a tiny model on 2 cores, too slow for the test suite.
    model = segzoo.create_model(arch, num_classes=3).eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(2, 3, 67, 93)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
