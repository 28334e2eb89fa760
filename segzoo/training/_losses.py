"""Losses a recipe can choose (``model.loss``): cross-entropy with class weights, OHEM as mmsegmentation's pixel
sampler selects pixels, Dice, Focal, and weighted sums of them.

Every loss takes B×K×H×W logits and B×H×W integer labels, leaves out pixels labelled ``ignore_index`` (the
SegmentationTask sets it to the DataModule's), and returns a zero that still reaches every parameter when a batch
has no labelled pixel. Binary segmentation is two-class softmax (background 0, foreground 1): the same losses and
metrics, with the foreground IoU logged on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossEntropyLoss", "DiceLoss", "FocalLoss", "LossSum", "OhemCrossEntropyLoss"]


def _upcast(logits: Tensor) -> Tensor:
    """Half-precision logits (bf16-mixed, 16-mixed) in float32 for the loss; float32 and float64 as they are."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


def _no_labelled_pixel(logits: Tensor) -> Tensor:
    return logits.sum() * 0.0


def _class_weight(values: Sequence[float] | None, logits: Tensor) -> Tensor | None:
    if values is None:
        return None
    if len(values) != logits.shape[1]:
        raise ValueError(f"class_weight has {len(values)} values for {logits.shape[1]} classes")
    return torch.as_tensor(values, dtype=_upcast(logits[:0]).dtype, device=logits.device)


AVERAGES = ("labelled", "all")


class CrossEntropyLoss(nn.Module):
    """Pixel cross-entropy, averaged over the labelled pixels (``average_over="labelled"``, the default) or over all
    pixels of the batch (``"all"``).

    - ``"labelled"``: PyTorch's rule, the class-weighted mean over the labelled pixels, Σ w_c·ℓ / Σ w_c (the plain
      mean without class weights).
    - ``"all"``: mmsegmentation's ``CrossEntropyLoss(avg_non_ignore=False)`` (its default, and mmseg 0.x's only
      rule): Σ w_c·ℓ over the labelled pixels divided by the number of pixels in the batch, ignored ones included.
      Every mmseg-trained and NVlabs checkpoint was trained with it, so the recipes that reproduce them set it; with
      SGD it makes each step's size follow the batch's share of labelled pixels.

    A batch without labelled pixels, or whose labelled pixels all have class weight 0, gives a zero that still
    reaches every parameter (never 0/0 = NaN).

    Args:
        class_weight: One weight per class (``segzoo data check`` suggests some for imbalanced data).
        ignore_index: Label left out of the loss.
        average_over: ``"labelled"`` or ``"all"`` (see above).
    """

    def __init__(
        self, class_weight: Sequence[float] | None = None, ignore_index: int = 255, average_over: str = "labelled"
    ):
        super().__init__()
        if average_over not in AVERAGES:
            raise ValueError(f"average_over must be one of {AVERAGES}, got {average_over!r}")
        self.class_weight = None if class_weight is None else [float(w) for w in class_weight]
        self.ignore_index = ignore_index
        self.average_over = average_over

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _no_labelled_pixel(logits)
        weight = _class_weight(self.class_weight, logits)
        losses = F.cross_entropy(
            _upcast(logits), target, weight=weight, ignore_index=self.ignore_index, reduction="none"
        )  # w_c·ℓ per pixel, 0 where ignored
        if self.average_over == "all":
            return losses.sum() / target.numel()
        total_weight = valid.sum() if weight is None else weight[target[valid]].sum()
        if total_weight == 0:  # every labelled pixel has class weight 0
            return _no_labelled_pixel(logits)
        return losses.sum() / total_weight


class OhemCrossEntropyLoss(nn.Module):
    """Cross-entropy on the hard pixels only, chosen as mmsegmentation's ``OHEMPixelSampler`` chooses them.

    With ``thresh``: the pixels whose predicted probability of their own class is below
    ``max(thresh, p_k)``, where ``p_k`` is the ``min_kept × batch``-th smallest such probability (so at least that
    many pixels count). Without: the ``min_kept × batch`` pixels of largest loss. The loss is the mean over the chosen
    pixels (mmseg divides their sum by every pixel of the batch, a scale the learning rate absorbs); zero when none is
    chosen (all probabilities saturated at 1).

    Args:
        thresh: Probability threshold (mmseg's configs: 0.7), or None to keep the largest losses.
        min_kept: Pixels kept at least, per image (mmseg's configs: 100000).
        class_weight: One weight per class.
        ignore_index: Label left out of the loss.
    """

    def __init__(
        self,
        thresh: float | None = 0.7,
        min_kept: int = 100000,
        class_weight: Sequence[float] | None = None,
        ignore_index: int = 255,
    ):
        super().__init__()
        if min_kept < 1:
            raise ValueError(f"min_kept must be at least 1, got {min_kept}")
        self.thresh, self.min_kept = thresh, min_kept
        self.class_weight = None if class_weight is None else [float(w) for w in class_weight]
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _no_labelled_pixel(logits)
        weight = _class_weight(self.class_weight, logits)
        losses = F.cross_entropy(
            _upcast(logits), target, weight=weight, ignore_index=self.ignore_index, reduction="none"
        )
        kept = self.hard_pixels(logits.detach(), target, losses.detach())  # labelled pixels only
        if not kept.any():  # every probability saturated at 1: nothing hard left (mmseg's normalisation gives 0 too)
            return _no_labelled_pixel(logits)
        return losses[kept].mean()

    @torch.no_grad()
    def hard_pixels(self, logits: Tensor, target: Tensor, losses: Tensor) -> Tensor:
        """The B×H×W mask of the pixels the loss counts."""
        valid = target != self.ignore_index
        batch_kept = self.min_kept * target.shape[0]
        kept = torch.zeros_like(valid)
        if self.thresh is not None:
            labels = target.masked_fill(~valid, 0)
            own_prob = _upcast(logits).softmax(1).gather(1, labels.unsqueeze(1)).squeeze(1)
            ordered = own_prob[valid].sort().values
            threshold = max(float(ordered[min(batch_kept, ordered.numel() - 1)]), self.thresh)
            kept[valid] = own_prob[valid] < threshold
        else:
            order = losses[valid].argsort(descending=True)[:batch_kept]
            chosen = torch.zeros(int(valid.sum()), dtype=torch.bool, device=target.device)
            chosen[order] = True
            kept[valid] = chosen
        return kept


class DiceLoss(nn.Module):
    """1 − the soft Dice coefficient of the softmax probabilities, averaged over the classes present in the batch
    (labels or predictions), on the labelled pixels.

    Args:
        smooth: Added to the numerator and denominator (no 0/0 for an absent class).
        ignore_index: Label left out of the loss.
    """

    def __init__(self, smooth: float = 1.0, ignore_index: int = 255):
        super().__init__()
        self.smooth, self.ignore_index = smooth, ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = (target != self.ignore_index).unsqueeze(1)
        if not valid.any():
            return _no_labelled_pixel(logits)
        probs = _upcast(logits).softmax(1) * valid
        one_hot = F.one_hot(target.masked_fill(~valid.squeeze(1), 0), logits.shape[1]).permute(0, 3, 1, 2) * valid
        dims = (0, 2, 3)
        intersection = (probs * one_hot).sum(dims)
        total = probs.sum(dims) + one_hot.sum(dims)
        dice = (2 * intersection + self.smooth) / (total + self.smooth)
        present = one_hot.sum(dims) > 0
        return 1 - dice[present].mean()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al., arXiv 1708.02002) on the softmax: −α_c (1 − p)^γ log p of each labelled pixel's own
    class, averaged over the labelled pixels.

    Args:
        gamma: Focusing exponent (2 in the paper); 0 gives cross-entropy.
        alpha: One weight per class, or None.
        ignore_index: Label left out of the loss.
    """

    def __init__(self, gamma: float = 2.0, alpha: Sequence[float] | None = None, ignore_index: int = 255):
        super().__init__()
        self.gamma = gamma
        self.alpha = None if alpha is None else [float(a) for a in alpha]
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        valid = target != self.ignore_index
        if not valid.any():
            return _no_labelled_pixel(logits)
        log_p = _upcast(logits).log_softmax(1).gather(1, target.masked_fill(~valid, 0).unsqueeze(1)).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        alpha = _class_weight(self.alpha, logits)
        if alpha is not None:
            loss = loss * alpha[target.masked_fill(~valid, 0)]
        return loss[valid].mean()


class LossSum(nn.Module):
    """A weighted sum of losses, e.g. cross-entropy + 0.5 × Dice.

    Args:
        losses: The losses.
        weights: One weight each (default 1).
    """

    def __init__(self, losses: Sequence[nn.Module], weights: Sequence[float] | None = None):
        super().__init__()
        weights = [1.0] * len(losses) if weights is None else [float(w) for w in weights]
        if not losses or len(weights) != len(losses):
            raise ValueError(f"LossSum needs one weight per loss, got {len(losses)} losses and {len(weights)} weights")
        self.losses = nn.ModuleList(losses)
        self.weights = weights

    @property
    def ignore_index(self) -> int:
        return self.losses[0].ignore_index

    @ignore_index.setter
    def ignore_index(self, value: int) -> None:
        for loss in self.losses:
            loss.ignore_index = value

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return sum(weight * loss(logits, target) for weight, loss in zip(self.weights, self.losses))
