"""mmsegmentation's SegFormer (``segformer-bN-mmseg``): its head's fast path, its registry rows, its sizes (its
checkpoints: checkpoints/test_segformer_mmseg.py).

The logits of these models against mmseg 1.2.2's own code (its configs built with random weights and saved with its
checkpoint layout) are compared by the reference test set under ``reference/``; the tests here need no mmseg.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import segzoo
from segzoo.models.heads import MmsegSegformerHead

# ------------------------------------------------------------------------------------------------ head fast path


def plain_mmseg_head(head: MmsegSegformerHead, feats: list[torch.Tensor]) -> torch.Tensor:
    """mmseg's order: conv+BN+ReLU per stage, resize to 1/4, concat c1…c4, fusion conv+BN+ReLU, classify."""
    size = feats[0].shape[2:]
    outs = [
        F.interpolate(branch(feat), size=size, mode="bilinear", align_corners=False)
        for branch, feat in zip(head.convs, feats)
    ]
    return head.conv_seg(head.dropout(head.fusion_conv(torch.cat(outs, dim=1))))


def random_head(in_channels=(8, 16, 24, 32), channels=16, num_classes=5) -> MmsegSegformerHead:
    torch.manual_seed(0)
    head = MmsegSegformerHead(list(in_channels), num_classes, channels=channels, dropout=0.0)
    with torch.no_grad():
        for bn in [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0, 0.5)
            bn.running_mean.normal_(0, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    return head


def stage_maps(batch=2, size=(33, 47), in_channels=(8, 16, 24, 32)) -> list[torch.Tensor]:
    """Stage maps with MiT's strides on a size that is not a multiple of 32 (non-integer upsampling factors)."""
    h, w = size
    feats = []
    for c in in_channels:
        feats.append(torch.randn(batch, c, h, w))
        h, w = (h + 1) // 2, (w + 1) // 2
    return feats


@pytest.mark.parametrize("train", [True, False])
def test_fast_path_equals_mmseg_computation_order(train):
    head = random_head().train(train)
    reference = copy.deepcopy(head)
    feats = stage_maps()
    feats_ref = [f.clone().requires_grad_(True) for f in feats]
    feats = [f.clone().requires_grad_(True) for f in feats]
    fast, plain = head(feats), plain_mmseg_head(reference, feats_ref)
    assert fast.shape == plain.shape == (2, 5, 33, 47)
    assert (fast - plain).abs().max() < 1e-5 * plain.abs().max()
    # the same gradients for the weights and the inputs (the fast path slices the fusion conv per stage)
    grad = torch.randn_like(fast)
    fast.backward(grad)
    plain.backward(grad)
    for (name, p), (_, q) in zip(head.named_parameters(), reference.named_parameters()):
        assert (p.grad - q.grad).abs().max() <= 1e-4 * q.grad.abs().max() + 1e-7, name
    for a, b in zip(feats, feats_ref):
        assert (a.grad - b.grad).abs().max() <= 1e-4 * b.grad.abs().max()
    if train:  # batch statistics were used and the running statistics moved the same way
        for (name, a), (_, b) in zip(head.named_buffers(), reference.named_buffers()):
            assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_fast_path_in_bf16_on_cpu():
    """bf16 eval on the CPU takes the one-matrix-product upsample-and-sum path."""
    head = random_head().eval()
    feats = stage_maps(batch=1, size=(32, 48))
    with torch.no_grad():
        plain = plain_mmseg_head(head, feats)
        fast = copy.deepcopy(head).to(torch.bfloat16)([f.to(torch.bfloat16) for f in feats]).float()
    assert (fast - plain).abs().max() < 0.05 * plain.abs().max()


def test_registry_rows_use_mmsegs_layer_norm_eps_and_head():
    model = segzoo.create_model("segformer-b0-mmseg", num_classes=150, device="meta")
    backbone = model.backbone
    assert isinstance(model.decode_head, MmsegSegformerHead) and model.decode_head.channels == 256
    assert {m.eps for m in backbone.modules() if isinstance(m, nn.LayerNorm)} == {1e-6}
    official = segzoo.create_model("segformer-b0", num_classes=150, device="meta").backbone
    assert official.patch_embed1.norm.eps == official.block1[0].attn.norm.eps == 1e-5  # NVlabs' defaults kept
    assert official.block1[0].norm1.eps == official.norm1.eps == 1e-6
    for size in ("b2", "b5"):  # C = 256 for every size in mmseg (the official head: 768 from B2 on)
        assert segzoo.create_model(f"segformer-{size}-mmseg", device="meta").decode_head.channels == 256


# ------------------------------------------------------------------------------------------- parameter counts
# Measured with mmsegmentation 1.2.2 (its own venv): MODELS.build(Config.fromfile(
# "configs/segformer/segformer_mit-bN_8xb2-160k_ade20k-512x512.py").model) with the head's SyncBN as BN, then
# sum(p.numel() for p in model.parameters()). 150 ADE20K classes; Cityscapes B0 (19 classes) from
# segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py.
MMSEG_PARAMS = {
    ("b0", 150): 3_753_718,
    ("b1", 150): 13_716_822,
    ("b2", 150): 24_761_686,
    ("b3", 150): 44_637_526,
    ("b4", 150): 61_408_086,
    ("b5", 150): 82_008_406,
    ("b0", 19): 3_720_051,
    ("b5", 19): 81_974_739,
}


@pytest.mark.parametrize(("size", "classes"), list(MMSEG_PARAMS))
def test_parameter_counts_equal_mmsegs(size, classes):
    model = segzoo.create_model(f"segformer-{size}-mmseg", num_classes=classes, device="meta")
    assert sum(p.numel() for p in model.parameters()) == MMSEG_PARAMS[size, classes]
