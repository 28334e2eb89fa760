"""The runtime's labels from low-resolution logits (numpy): equal to the argmax of the dense interpolation PyTorch
computes, with PyTorch's own bilinear weights, and within a memory bound far below full-resolution logits."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segzoo.models._resize import interpolation_matrix
from segzoo.runtime._labels import (
    STRIP_BYTES,
    Field,
    _rectangle_extremes,
    boundary_fraction,
    labels_from_fields,
    resize_matrix,
    upsample,
)


@pytest.mark.parametrize(("n_in", "n_out"), [(5, 13), (13, 5), (128, 512), (7, 7), (100, 333), (683, 4032)])
def test_bilinear_weights_are_pytorchs(n_in, n_out):
    expected = interpolation_matrix.__wrapped__(n_in, n_out, torch.float64, torch.device("cpu")).numpy()
    np.testing.assert_allclose(resize_matrix(n_in, n_out), expected, rtol=0, atol=6e-8)


def test_upsample_is_f_interpolate():
    x = np.random.default_rng(0).standard_normal((37, 45, 11)).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(x).permute(2, 0, 1)[None], (100, 77), mode="bilinear")[0]
    np.testing.assert_allclose(upsample(x, (100, 77)), expected.permute(1, 2, 0).numpy(), atol=1e-5)


def dense(field: Field, output) -> torch.Tensor:
    """K×H×W float64 logits through PyTorch: every resize of the chain with F.interpolate, crops, the mirror."""
    x = torch.from_numpy(np.ascontiguousarray(field.logits)).permute(2, 0, 1)[None].double()
    for (op, n_r), (op_c, n_c) in zip(field.rows, field.cols):
        assert op == op_c, "the test chains resize and crop both axes together"
        if op == "resize":
            x = F.interpolate(x, (n_r, n_c), mode="bilinear", align_corners=False)
        else:
            x = x[..., :n_r, :n_c]
    return (x.flip(-1) if field.flip else x)[0]


def smooth_logits(seed: int, h: int, w: int, k: int) -> np.ndarray:
    """Regions and boundaries, as a model's logits have (pure noise would leave few pixels to decide directly)."""
    coarse = np.random.default_rng(seed).standard_normal((h // 2 + 1, w // 2 + 1, k)).astype(np.float32)
    return np.ascontiguousarray(np.repeat(np.repeat(coarse, 2, 0), 2, 1)[:h, :w])


def test_one_pass_and_multiscale_flip_labels_equal_the_dense_argmax():
    output = (150, 125)
    crop = Field(
        smooth_logits(0, 32, 43, 9),
        [("resize", 100), ("crop", 95), ("resize", 150)],
        [("resize", 130), ("crop", 120), ("resize", 125)],
        flip=True,
    )
    assert crop.rows[1] == ("crop", 95)
    plain = Field(smooth_logits(1, 20, 17, 9), [("resize", 150)], [("resize", 125)])
    torch_crop, torch_plain = dense(crop, output), dense(plain, output)
    np.testing.assert_array_equal(labels_from_fields([crop], output), torch_crop.argmax(0).numpy())
    ensemble = torch_crop.softmax(0) + torch_plain.softmax(0)
    np.testing.assert_array_equal(labels_from_fields([crop, plain], output), ensemble.argmax(0).numpy())


def test_labels_memory_stays_far_below_full_resolution_logits():
    """150 classes, 600×800 labels from noisy 1/4-resolution logits (most pixels near a boundary): numpy's peak
    allocation stays within twice the int64 labels plus three strips (STRIP_BYTES each), where full-resolution
    logits would take 288 MB."""
    field = Field(
        np.random.default_rng(0).standard_normal((150, 200, 150)).astype(np.float32),
        [("resize", 600)],
        [("resize", 800)],
    )
    tracemalloc.start()
    try:
        labels = labels_from_fields([field], (600, 800))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert labels.shape == (600, 800)
    bound = 2 * labels.nbytes + 3 * STRIP_BYTES
    assert peak < bound < 600 * 800 * 150 * 4 / 3, f"{peak / 2**20:.0f} MB"


def test_a_class_no_neighbour_ranks_first_can_still_win():
    """Between a vector where class 0 leads and one where class 1 leads, class 2 (second at both) wins the mix: the
    labels must not take a neighbour's argmax there."""
    logits = np.zeros((1, 2, 3), dtype=np.float32)
    logits[0, 0] = [1.0, 0.0, 0.9]
    logits[0, 1] = [0.0, 1.0, 0.9]
    field = Field(logits, [("resize", 1)], [("resize", 8)])
    expected = dense(field, (1, 8)).argmax(0).numpy()
    assert set(expected[0].tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(labels_from_fields([field], (1, 8)), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_decided_without_logits_equal_the_dense_argmax(seed):
    """Smooth noise over 150 classes, as random weights give (the worst case: three quarters of the pixels read
    vectors with different argmaxes): the margin bound decides most of those without their logits, and every label
    equals the argmax of PyTorch's dense float64 interpolation except where its two best classes are within float32
    rounding."""
    coarse = torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 150, 12, 16)).astype(np.float32))
    logits = F.interpolate(coarse, (40, 56), mode="bilinear")[0].permute(1, 2, 0).numpy().copy()
    field = Field(logits, [("resize", 151)], [("resize", 203)])
    output = (151, 203)
    labels = labels_from_fields([field], output)
    dense_logits = dense(field, output)
    top2 = dense_logits.topk(2, dim=0).values
    differ = labels != dense_logits.argmax(0).numpy()
    assert not (differ & ((top2[0] - top2[1]).numpy() > 1e-5)).any()
    rows, cols = field.taps()
    high, low = _rectangle_extremes(logits.argmax(axis=2), rows, cols)
    mixed = 1 - (high == low).mean()
    assert mixed > 0.5
    assert boundary_fraction([field], output) < 0.25 * mixed, "the bound should decide most mixed pixels"
