"""Drawing label maps (``segzoo.inference``'s colours, overlays, legends and label PNGs): what ``segzoo predict``, the
demo page and the training overlays show."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from segzoo.inference import colorize, overlay, overlay_with_legend, side_by_side, validation_panel
from segzoo.inference._visualize import default_palette, denormalize, save_label_png


def test_default_palette_is_deterministic_distinct_and_not_black():
    palette = default_palette(150)
    assert palette == default_palette(150)
    assert len(set(palette)) == 150
    assert (0, 0, 0) not in palette
    assert default_palette(3) == palette[:3]


def test_label_maps_with_many_classes_are_16_bit(tmp_path):
    labels = np.array([[0, 299], [256, 7]])
    save_label_png(labels, tmp_path / "many.png", default_palette(300), num_classes=300)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "many.png")), labels)
    save_label_png(labels % 256, tmp_path / "few.png", default_palette(256), num_classes=256)
    assert Image.open(tmp_path / "few.png").mode == "P"


def test_colorize_and_overlay():
    palette = [(255, 0, 0), (0, 255, 0)]
    labels = np.array([[0, 1], [255, 1]])
    rgb = np.asarray(colorize(labels, palette, ignore_index=255))
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[0, 1].tolist() == [0, 255, 0] and rgb[1, 0].tolist() == [0, 0, 0]
    blended = np.asarray(overlay(np.zeros((2, 2, 3), np.uint8), labels, palette, alpha=0.5))
    assert blended[0, 0].tolist() == [128, 0, 0] or blended[0, 0].tolist() == [127, 0, 0]
    with pytest.raises(ValueError, match="sizes? .*differ"):
        overlay(np.zeros((3, 3, 3), np.uint8), labels, palette)


def test_legend_lists_only_present_classes():
    palette = default_palette(4)
    image = np.full((60, 40, 3), 255, np.uint8)
    labels = np.zeros((60, 40), np.int64)
    labels[:, 20:] = 3
    result = np.asarray(overlay_with_legend(image, labels, ["wall", "sky", "tree", "road"], palette))
    legend = result[:, 40:].reshape(-1, 3)
    colours = {tuple(int(v) for v in c) for c in legend}
    assert tuple(palette[0]) in colours and tuple(palette[3]) in colours
    assert tuple(palette[1]) not in colours and tuple(palette[2]) not in colours


def test_side_by_side_draws_ignored_ground_truth_black():
    palette = [(10, 200, 30), (200, 10, 30)]
    gt = np.array([[0, 255], [1, 1]])
    pred = np.array([[0, 0], [1, 1]])
    image = torch.full((3, 2, 2), 0.5)
    panel = np.asarray(side_by_side(image, gt, pred, palette, gap=1))
    assert panel.shape == (2, 3 * 2 + 2, 3)
    assert panel[0, 0].tolist() == [128, 128, 128]
    assert panel[0, 3 + 1].tolist() == [0, 0, 0]  # gt ignore pixel
    assert panel[0, 6 + 1].tolist() == list(palette[0])  # prediction


def test_validation_panel_is_readable_titled_and_its_legend_holds_the_classes_present():
    palette = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)]
    names = ["wall", "sky", "tree", "road"]
    image = np.full((48, 64, 3), 200, np.uint8)
    gt = np.zeros((48, 64), np.int64)
    gt[:, 32:] = 2
    gt[:4] = 255  # ignored
    pred = np.zeros((48, 64), np.int64)
    pred[:, 40:] = 1  # class 3 appears nowhere

    def draw(class_names=names, title="ADE_val_00000001.jpg"):
        return np.asarray(validation_panel(image, gt, pred, palette, class_names, title=title, height=320))

    panel = draw()
    width = round(64 * 320 / 48)
    strip = 3 * width + 2 * 8  # image, ground truth and prediction, each 320 px high, 8-px gaps
    assert panel.shape[0] > 320 and panel.shape[1] > strip
    legend = panel[:, strip:]

    def rows_of(colour):
        return np.nonzero((legend == colour).all(-1).any(1))[0]

    # one swatch per class present in either map, in label order, none for the absent class; ignored pixels black
    tops = [rows_of(palette[c]) for c in (0, 1, 2)]
    assert all(rows.size for rows in tops) and [r.min() for r in tops] == sorted(r.min() for r in tops)
    assert rows_of(palette[3]).size == 0
    assert rows_of((0, 0, 0)).max() > tops[2].max()  # the "ignored" swatch below the classes
    # the names drawn are those of the classes present: a longer name widens the legend only for a present class
    assert draw(names[:3] + ["a much longer name of an absent class"]).shape == panel.shape
    assert draw(["wall", "a much longer name of the sky", "tree", "road"]).shape[1] > panel.shape[1]
    # the title (the image's name) is drawn above the pictures
    assert (draw(title="another_image.png")[:35] != panel[:35]).any()
    # the pictures: ground truth and prediction in their classes' colours at 320 px
    top = panel.shape[0] - 320 - 10  # the strip is followed by a bottom margin of pad = 10 px
    ground_truth = panel[top + 200, width + 8 : 2 * width + 8]
    assert tuple(ground_truth[10]) == palette[0] and tuple(ground_truth[-10]) == palette[2]


def test_denormalize_inverts_the_normalisation():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    normalised = (torch.from_numpy(rgb).permute(2, 0, 1).float() - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(
        std
    ).view(3, 1, 1)
    np.testing.assert_array_equal(denormalize(normalised, mean, std), rgb)
