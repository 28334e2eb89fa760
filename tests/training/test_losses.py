"""The losses a recipe can choose, each checked against a hand computation, and binary segmentation end to end."""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from segzoo.training import (
    CrossEntropyLoss,
    DiceLoss,
    FocalLoss,
    LossSum,
    OhemCrossEntropyLoss,
    PolyLR,
    SegmentationTask,
    cli_main,
)

from support.lit_helpers import ColourDataModule, TinySegNet, quiet_trainer

IGNORE = 255


def one_row(probabilities: list[list[float]]) -> torch.Tensor:
    """Logits of a 1×K×1×N image whose softmax is the given per-pixel probabilities (rows: pixels)."""
    return torch.tensor(probabilities).log().T.reshape(1, len(probabilities[0]), 1, len(probabilities))


def test_cross_entropy_with_class_weights_is_the_weighted_mean_over_labelled_pixels():
    logits = one_row([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    target = torch.tensor([[[0, 1, IGNORE]]])
    loss = CrossEntropyLoss(class_weight=[1.0, 3.0])(logits, target)
    expected = (1 * -math.log(0.7) + 3 * -math.log(0.8)) / (1 + 3)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_ohem_keeps_pixels_below_the_threshold_or_the_min_kept_hardest():
    # own-class probabilities 0.9, 0.6, 0.3, 0.8, 0.5; one ignored pixel
    logits = one_row([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.2, 0.8], [0.5, 0.5], [0.5, 0.5]])
    target = torch.tensor([[[0, 1, 0, 1, 0, IGNORE]]])
    ce = [-math.log(p) for p in (0.9, 0.6, 0.3, 0.8, 0.5)]
    ohem = OhemCrossEntropyLoss(thresh=0.7, min_kept=1)  # p_k = 2nd smallest (0.5) < 0.7: keep p < 0.7
    kept = ohem.hard_pixels(logits, target, torch.zeros(1, 1, 6))
    assert kept.flatten().tolist() == [False, True, True, False, True, False]
    assert ohem(logits, target).item() == pytest.approx((ce[1] + ce[2] + ce[4]) / 3, rel=1e-6)
    many = OhemCrossEntropyLoss(thresh=0.7, min_kept=3)  # p_k = 4th smallest (0.8) > 0.7: keep p < 0.8
    assert many.hard_pixels(logits, target, torch.zeros(1, 1, 6)).flatten().tolist() == [
        False,
        True,
        True,
        False,
        True,
        False,
    ]
    largest = OhemCrossEntropyLoss(thresh=None, min_kept=2)  # the two largest losses: p = 0.3 and 0.5
    assert largest(logits, target).item() == pytest.approx((ce[2] + ce[4]) / 2, rel=1e-6)


def test_dice_is_one_minus_the_soft_dice_of_the_present_classes():
    logits = one_row([[0.75, 0.25], [0.25, 0.75], [0.5, 0.5]])
    target = torch.tensor([[[0, 0, IGNORE]]])  # only class 0 present
    dice0 = (2 * (0.75 + 0.25) + 1) / ((0.75 + 0.25) + 2 + 1)
    assert DiceLoss(smooth=1.0)(logits, target).item() == pytest.approx(1 - dice0, rel=1e-6)
    perfect = torch.tensor([[[[20.0, -20.0]], [[-20.0, 20.0]]]])
    assert DiceLoss(smooth=0.0)(perfect, torch.tensor([[[0, 1]]])).item() == pytest.approx(0.0, abs=1e-6)


def test_focal_loss_reduces_to_cross_entropy_and_down_weights_easy_pixels():
    logits = one_row([[0.9, 0.1], [0.4, 0.6]])
    target = torch.tensor([[[0, 0]]])
    assert FocalLoss(gamma=0)(logits, target).item() == pytest.approx(CrossEntropyLoss()(logits, target).item())
    expected = (0.1**2 * -math.log(0.9) + 0.6**2 * -math.log(0.4)) / 2
    assert FocalLoss(gamma=2)(logits, target).item() == pytest.approx(expected, rel=1e-6)
    weighted = FocalLoss(gamma=2, alpha=[0.25, 1.0])(logits, target).item()
    assert weighted == pytest.approx(0.25 * expected, rel=1e-6)


def test_loss_sum_weights_its_parts_and_shares_the_ignore_index():
    logits = one_row([[0.7, 0.3], [0.2, 0.8]])
    target = torch.tensor([[[0, 7]]])
    total = LossSum([CrossEntropyLoss(), DiceLoss()], weights=[1.0, 0.5])
    total.ignore_index = 7
    assert all(part.ignore_index == 7 for part in total.losses)
    expected = CrossEntropyLoss(ignore_index=7)(logits, target) + 0.5 * DiceLoss(ignore_index=7)(logits, target)
    assert total(logits, target).item() == pytest.approx(expected.item())
    with pytest.raises(ValueError, match="one weight per loss"):
        LossSum([CrossEntropyLoss()], weights=[1.0, 2.0])


@pytest.mark.parametrize("loss", [CrossEntropyLoss(), OhemCrossEntropyLoss(min_kept=1), DiceLoss(), FocalLoss()])
def test_a_batch_without_labelled_pixels_gives_a_zero_that_reaches_the_parameters(loss):
    logits = torch.randn(1, 3, 2, 2, requires_grad=True)
    value = loss(logits, torch.full((1, 2, 2), IGNORE))
    value.backward()
    assert value.item() == 0.0 and logits.grad is not None


def test_module_trains_with_a_chosen_loss_and_reports_foreground_iou_for_binary_data():
    torch.manual_seed(0)
    loss = LossSum([CrossEntropyLoss(), DiceLoss()])
    module = SegmentationTask(
        TinySegNet(num_classes=2),
        num_classes=2,
        loss=loss,
        num_log_images=0,
        optimizer=partial(torch.optim.AdamW, lr=1e-2),
        lr_scheduler=partial(PolyLR, power=1.0),
    )
    assert module.loss.ignore_index == 255
    datamodule = ColourDataModule(num_train=8, num_val=4, batch_size=2, num_classes=2)
    trainer = quiet_trainer(max_steps=4)
    trainer.fit(module, datamodule)
    metrics = trainer.callback_metrics
    assert "val/iou_foreground" in metrics
    assert metrics["val/iou_foreground"].item() == pytest.approx(metrics["val/iou/colour1"].item())


def test_a_recipe_chooses_the_loss_by_class_path(tmp_path):
    config = tmp_path / "loss.yaml"
    config.write_text(
        "model:\n  loss:\n    class_path: segzoo.training.LossSum\n    init_args:\n      weights: [1.0, 0.5]\n"
        "      losses:\n        - class_path: segzoo.training.CrossEntropyLoss\n"
        "          init_args: {class_weight: [1.0, 2.0, 3.0]}\n        - class_path: segzoo.training.DiceLoss\n"
    )
    cli = cli_main(["--config", "configs/test/tiny.yaml", "--config", str(config)], run=False)
    loss = cli.model.loss
    assert isinstance(loss, LossSum) and loss.weights == [1.0, 0.5]
    assert isinstance(loss.losses[0], CrossEntropyLoss) and loss.losses[0].class_weight == [1.0, 2.0, 3.0]
    assert isinstance(loss.losses[1], DiceLoss)
