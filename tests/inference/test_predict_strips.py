"""predict builds full-resolution labels strip by strip from low-resolution logits: the labels equal the argmax of
the full-resolution logits (bar near-ties), and no full-resolution logits tensor is ever allocated."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segzoo
import segzoo.inference._tiles as tiles
from segzoo import EvalProtocol
from segzoo.inference._tensor import _resize, _run, merge_multiscale_flip


def full_resolution_logits(model, image, tta):
    """What predict computed before: logits resized to the original size (per pass, for TTA), then the argmax."""
    protocol = model.eval_protocol
    size = image.shape[:2]
    with torch.no_grad():
        if tta:
            return merge_multiscale_flip(
                model, protocol.tta_inputs(image), size, True, protocol.mode, protocol.crop, protocol.stride
            )[0]
        return _resize(_run(model, protocol(image), protocol.mode, protocol.crop, protocol.stride, 4).float(), size)[0]


def assert_same_labels_bar_ties(labels, logits):
    reference = logits.argmax(0).numpy()
    differ = labels != reference
    top2 = logits.topk(2, dim=0).values
    assert (top2[0] - top2[1]).numpy()[differ].max(initial=0.0) < 1e-4, f"{differ.sum()} labels differ"


SLIDE = {"mode": "slide", "crop": [32, 32], "stride": [24, 24]}  # EvalProtocol arguments


@pytest.mark.parametrize(
    ("name", "cfg", "unpad", "tta"),
    [
        ("segformer-test", {"test_scale": [2048, 40]}, None, False),
        ("segformer-test", {"test_scale": [2048, 40], "size_divisor": 32}, None, True),
        ("segmenter-test-mask", {"test_scale": [2048, 60]}, "resize", False),
        ("segmenter-test-mask", {"test_scale": [2048, 60]}, "crop", False),
        ("segmenter-test-linear", {"test_scale": [2048, 60]}, "crop", True),
        ("setr-test-pup", {"test_scale": [2048, 70]}, "resize", True),
        ("segmenter-test-mask", dict(SLIDE, test_scale=[2048, 60]), "resize", False),
        ("setr-test-naive", dict(SLIDE, test_scale=[2048, 60], tta_style="mmseg-1.x"), "resize", True),
    ],
)
def test_strip_labels_equal_full_resolution_argmax(name, cfg, unpad, tta, monkeypatch):
    monkeypatch.setattr(tiles, "TILE_BYTES", 5 * 4 * 97 * 7)  # strips of 7 rows: many of them
    model = segzoo.create_model(name, num_classes=5, **({"unpad": unpad} if unpad else {})).eval()
    model.eval_protocol = EvalProtocol(**cfg)
    image = (np.random.default_rng(1).random((53, 97, 3)) * 255).astype(np.uint8)
    labels = model.predict(image, tta=tta)
    assert labels.shape == (53, 97)
    assert_same_labels_bar_ties(labels, full_resolution_logits(model, image, tta))


def test_no_full_resolution_logits_are_allocated(monkeypatch):
    """A 150-class model on a large image: every strip of logits the labels path makes stays within TILE_BYTES, far
    below the full-resolution logits (150 × 1200 × 1600 × 4 bytes = 1.15 GB)."""
    model = segzoo.create_model("segformer-test", num_classes=150).eval()
    model.eval_protocol = EvalProtocol(test_scale=(2048, 64))
    image = np.zeros((1200, 1600, 3), np.uint8)
    sizes = []
    original = tiles.LogitsField.columns

    def columns(self, strip):
        out = original(self, strip)
        sizes.extend(t.numel() * t.element_size() for t in (strip, out))
        return out

    monkeypatch.setattr(tiles.LogitsField, "columns", columns)
    labels = model.predict(image)
    assert labels.shape == (1200, 1600)
    assert len(sizes) > 1 and max(sizes) <= tiles.TILE_BYTES
