"""Full-resolution labels, strip by strip: each image's logits are described as a field (logits at any resolution and
the resizes, crops and flip that bring them to the output size), and labels are computed a strip of output rows at a
time, so that a large photo's full-size logits are never held in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from segzoo._preprocessing import EvalProtocol
from segzoo.inference._tensor import _run
from segzoo.models._resize import interpolation_matrix

__all__ = ["TILE_BYTES", "LogitsField", "fields_for_input", "labels_from_fields"]

# Bytes of float32 logits one strip of output rows may hold (a 4032×3024 photo's 150-class logits would take 7 GB).
TILE_BYTES = 32 * 2**20


@dataclass
class LogitsField:
    """One image's logits (K×h×w, at any resolution) and how they reach the output size: per axis a chain of
    bilinear resizes (``("resize", n)``) and crops to the first n (``("crop", n)``), then an optional flip of the
    columns (a mirrored test pass)."""

    logits: Tensor
    rows: list[tuple[str, int]]
    cols: list[tuple[str, int]]
    flip: bool = False

    def row_taps(self) -> tuple[Tensor, Tensor]:
        """The row chain as one interpolation matrix without its zeros: for each output row the few logits rows it
        reads (``index``) and their weights (``weight``), both (output rows)×taps. Composed bilinear resizes stay
        banded, so a row reads a handful of rows whatever the chain."""
        matrix = torch.eye(self.logits.shape[1], dtype=torch.float64, device=self.logits.device)
        for op, n in self.rows:
            if op == "resize":  # uncached: one matrix per photo size would pile up in the cache
                matrix = interpolation_matrix.__wrapped__(matrix.shape[0], n, torch.float64, matrix.device) @ matrix
            else:
                matrix = matrix[:n]
        matrix = matrix.float()
        taps = int((matrix != 0).sum(dim=1).max())
        index = matrix.abs().topk(taps, dim=1).indices
        return index, matrix.gather(1, index)

    def columns(self, strip: Tensor) -> Tensor:
        """The column chain applied to a K×r×w strip of rows (all the logits' columns), then mirrored back for a
        flipped pass; each resize is ``F.interpolate`` along the width, as mmseg resizes (a strip holds whole rows, so
        every output column mixes the same inputs with the same weights as in the whole map)."""
        for op, n in self.cols:
            if op == "crop":
                strip = strip[..., :n]
            elif n != strip.shape[2]:
                k, r, w = strip.shape
                rows = F.interpolate(strip.reshape(1, k * r, w), size=n, mode="linear", align_corners=False)
                strip = rows.view(k, r, n)
        return strip.flip(-1) if self.flip else strip  # the mirrored pass back, as mmseg flips its logits


def _gather_rows(logits: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """Rows of K×h×w logits mixed as an interpolation matrix with few non-zeros per row says: Σ_t ``weight[:, t]`` ×
    ``logits[:, index[:, t]]`` (whole rows: contiguous reads)."""
    out = None
    for tap in range(index.shape[1]):
        term = logits.index_select(1, index[:, tap]).mul_(weight[:, tap].view(1, -1, 1))
        out = term if out is None else out.add_(term)
    return out


def fields_for_input(
    model: nn.Module,
    images: Tensor,
    protocol: EvalProtocol,
    output: tuple[int, int],
    flip: bool = False,
    batch_size: int = 4,
) -> list[LogitsField]:
    """Run ``model`` on a batch (already resized and normalised) in the protocol's mode and describe each image's
    logits as a field at ``output`` size. A segzoo model in whole mode gives its decode head's low-resolution logits,
    so nothing of the output's size is ever allocated; other models and slide mode give logits at the input size."""
    inputs = images.flip(-1) if flip else images
    height, width = images.shape[-2:]
    head_logits = hasattr(model, "forward_head") and getattr(model, "unpad", None) in ("resize", "crop")
    if protocol.mode == "whole" and head_logits:
        logits, (padded_h, padded_w) = model.forward_head(inputs)
        if model.unpad == "resize":  # see EncoderDecoder._to_input_size
            rows, cols = [("resize", height)], [("resize", width)]
        else:
            rows, cols = [("resize", padded_h), ("crop", height)], [("resize", padded_w), ("crop", width)]
    else:
        logits = _run(model, inputs, protocol.mode, protocol.crop, protocol.stride, batch_size)
        rows, cols = [], []
    rows, cols = [*rows, ("resize", output[0])], [*cols, ("resize", output[1])]
    return [LogitsField(image_logits, rows, cols, flip) for image_logits in logits]


def labels_from_fields(fields: Sequence[LogitsField], output: tuple[int, int]) -> Tensor:
    """The argmax over classes of the fields' logits (one field) or of their averaged softmax (several: the
    multi-scale + flip ensemble, as mmseg merges it), a strip of output rows at a time so memory stays bounded.

    For each strip, the logits rows its output rows read are mixed (:func:`_gather_rows`: a few rows per output row),
    then the whole width goes through the field's column chain (:meth:`LogitsField.columns`). Returns an int64
    tensor on the logits' device."""
    height, width = output
    num_classes = fields[0].logits.shape[0]
    prepared = [(field, field.logits.float(), *field.row_taps()) for field in fields]
    widths = [n for field in fields for op, n in field.cols if op == "resize"]
    widest = max(width, *(field.logits.shape[2] for field in fields), *widths)
    rows_per_strip = max(1, TILE_BYTES // (4 * num_classes * widest))
    labels = torch.empty((height, width), dtype=torch.int64, device=fields[0].logits.device)
    for top in range(0, height, rows_per_strip):
        bottom = min(height, top + rows_per_strip)
        total = None
        for field, logits, row_index, row_weight in prepared:
            strip = field.columns(_gather_rows(logits, row_index[top:bottom], row_weight[top:bottom]))  # K×r×W
            if len(fields) > 1:
                strip = strip.softmax(dim=0)
            total = strip if total is None else total.add_(strip)
        labels[top:bottom] = total.argmax(dim=0)
    return labels
