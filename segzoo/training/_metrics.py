"""Segmentation metrics from a confusion matrix, and the per-class table printed after each validation and test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

__all__ = ["class_table_rows", "percent", "print_class_table", "segmentation_metrics"]


def segmentation_metrics(confusion: Tensor) -> dict[str, Tensor]:
    """mIoU, mean accuracy, pixel accuracy and per-class IoU / accuracy from a K×K confusion matrix.

    Rows are ground truth, columns predictions (torchmetrics' layout). As in mmsegmentation, a class's IoU is NaN
    when it appears neither in the ground truth nor in the predictions, its accuracy NaN when it is absent from the
    ground truth, and the means skip NaNs.

    Args:
        confusion: K×K matrix of pixel counts.

    Returns:
        ``miou``, ``macc``, ``acc`` (scalars) and ``iou``, ``class_acc`` (length K).
    """
    confusion = confusion.double()
    intersection = confusion.diag()
    gt_area = confusion.sum(dim=1)
    union = gt_area + confusion.sum(dim=0) - intersection
    iou = intersection / union  # 0/0 = NaN for classes seen nowhere
    class_acc = intersection / gt_area
    total = confusion.sum()
    acc = intersection.sum() / total if total > 0 else torch.tensor(float("nan"), dtype=torch.float64)
    return {"miou": iou.nanmean(), "macc": class_acc.nanmean(), "acc": acc, "iou": iou, "class_acc": class_acc}


def percent(value: Tensor) -> str:
    """A ratio in % rounded to 0.01 as mmsegmentation rounds it (``np.round(100 * value, 2)``)."""
    return "-" if value.isnan() else f"{np.round(100 * float(value), 2):.2f}"


def class_table_rows(names: Sequence[str], metrics: dict[str, Tensor]) -> list[list[str]]:
    """``[class, IoU %, Acc %]`` for each class."""
    return [[name, percent(iou), percent(acc)] for name, iou, acc in zip(names, metrics["iou"], metrics["class_acc"])]


def print_class_table(title: str, summary: str, rows: list[list[str]]) -> None:
    """Prints the per-class IoU / accuracy table (rich), then the summary line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("class", "IoU", "Acc"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(summary)
