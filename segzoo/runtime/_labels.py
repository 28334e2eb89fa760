"""Labels at the original size from logits at any resolution, in numpy, without full-resolution logits.

The same computation as ``segzoo.inference.predict`` (``LogitsField`` / ``labels_from_fields``): each pass's logits
reach the output size through a chain of bilinear resizes (``align_corners=False``, as ``F.interpolate``) and crops
per axis, optionally mirrored, and the labels are the argmax of the logits (one pass) or of the averaged softmax
(multi-scale + flip). Only the arithmetic differs, to make it fast without PyTorch:

* A chain of bilinear resizes and crops is, per axis, one matrix with a few non-negative weights per row that sum
  to 1, so every output pixel is a convex combination of the low-resolution logits in a small rectangle. Where one
  class is the argmax at every pixel of that rectangle (in every pass), it is the argmax of the combination too, and
  of the averaged softmax: those pixels take it directly, from the low-resolution argmax.
* One pass (no multi-scale): most of the other pixels are still decided without their K logits, by a bound. The
  candidates are the argmaxes of the vectors in the pixel's rectangle. The best of them is the argmax of the
  combination when its interpolated logit beats the other candidates' and the weighted sum of the vectors' second
  largest logits, which no other class can exceed, by a safety margin far above float rounding. This needs the two
  largest logits per low-resolution vector and a few logits per candidate, gathered once per rectangle. Under a single
  bilinear resize a rectangle's pixels take weights from a small box, and a winner sure at the box's four corners is
  sure for all of them (the margins are bilinear in the weights).
* The remaining pixels (1–4% of a random-weight SegFormer's on photos, fewer for a trained model; all undecided
  pixels of a multi-scale ensemble) are computed exactly: where they are few, each one's K logits are summed from its
  taps directly; otherwise a strip of output rows at a time, the logits interpolated along the rows (all classes, at
  low resolution), then along the columns for those pixels only. Several passes are softmaxed and summed, and the
  argmax taken.

Labels therefore equal ``predict``'s except where two classes are within float rounding of each other (about 1e-6:
the sums run in another order). Memory: a few H×W integer maps, never H×W×K logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Output rows are worked on in strips of logits interpolated along the rows, at most this many bytes each.
STRIP_BYTES = 16 * 2**20


def two_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-D linear interpolation from n_in to n_out samples, ``align_corners=False`` without antialiasing (PyTorch's
    ``F.interpolate``, OpenCV's ``INTER_LINEAR``): for each output, the lower and upper input index and the lower
    one's weight. Source position (i + 0.5)·n_in/n_out − 0.5 clamped to the inputs, with PyTorch's float32 rounding
    (its kernel computes the position with one rounding): the weights equal PyTorch's to 6e-8."""
    scale = np.float64(np.float32(n_in) / np.float32(n_out))
    src = np.maximum((scale * (np.arange(n_out) + 0.5) - 0.5).astype(np.float32), np.float32(0))
    low = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    high = np.minimum(low + 1, n_in - 1)
    w_high = np.clip(src - low.astype(np.float32), 0, 1).astype(np.float32)
    return low, high, (np.float32(1) - w_high).astype(np.float64)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """:func:`two_taps` as an n_out × n_in matrix."""
    low, high, w_low = two_taps(n_in, n_out)
    matrix = np.zeros((n_out, n_in), dtype=np.float64)
    np.add.at(matrix, (np.arange(n_out), low), w_low)
    np.add.at(matrix, (np.arange(n_out), high), 1.0 - w_low)
    return matrix


def chain_matrix(size: int, chain: Sequence[tuple[str, int]], flip: bool = False) -> np.ndarray:
    """A chain of ``("resize", n)`` and ``("crop", n)`` (keep the first n) along an axis of ``size`` as one
    (output)×``size`` matrix, its rows reversed for a mirrored pass."""
    matrix = np.eye(size, dtype=np.float64)
    for op, n in chain:
        if op == "resize":
            if n != matrix.shape[0]:
                # two taps per row: apply them to the rows of the chain so far, without a dense product
                low, high, w_low = two_taps(matrix.shape[0], n)
                matrix = w_low[:, None] * matrix[low] + (1.0 - w_low)[:, None] * matrix[high]
        elif op == "crop":
            matrix = matrix[:n]
        else:
            raise ValueError(f"unknown resize step {op!r}")
    return matrix[::-1] if flip else matrix


@dataclass
class Taps:
    """A chain matrix as, per output index, the indices and weights of its non-zero inputs (a contiguous band)."""

    index: np.ndarray  # n_out × T, int64
    weight: np.ndarray  # n_out × T, float32 (0 where the band is narrower than T)

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> Taps:
        nonzero = matrix > 0
        first = nonzero.argmax(axis=1)
        last = matrix.shape[1] - 1 - nonzero[:, ::-1].argmax(axis=1)
        width = int((last - first).max()) + 1
        index = np.minimum(first[:, None] + np.arange(width)[None], last[:, None])
        weight = np.take_along_axis(matrix, index, axis=1)
        weight[np.arange(width)[None] > (last - first)[:, None]] = 0.0  # clamped duplicates carry no weight
        return cls(index, weight.astype(np.float32))


@dataclass
class Field:
    """One pass's logits (h×w×K; contiguous is fastest) and how they reach the output size: per axis a chain of
    resizes and crops, then an optional mirror of the columns."""

    logits: np.ndarray
    rows: list[tuple[str, int]]
    cols: list[tuple[str, int]]
    flip: bool = False

    def taps(self) -> tuple[Taps, Taps]:
        h, w = self.logits.shape[:2]
        return Taps.from_matrix(chain_matrix(h, self.rows)), Taps.from_matrix(chain_matrix(w, self.cols, self.flip))


def _rectangle_extremes(argmax: np.ndarray, rows: Taps, cols: Taps) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, the largest and smallest low-resolution argmax over the rectangle it reads."""
    row_max = np.max(argmax[rows.index], axis=1)  # H × w
    row_min = np.min(argmax[rows.index], axis=1)
    return np.max(row_max[:, cols.index], axis=2), np.min(row_min[:, cols.index], axis=2)


def _weighted_rows(source: np.ndarray, index: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Σ_t ``weight[:, t]`` × ``source[index[:, t]]``: rows of ``source`` mixed by an n × taps interpolation band."""
    total = source[index[:, 0]]
    total *= weight[:, 0, None]
    for tap in range(1, index.shape[1]):
        term = source[index[:, tap]]
        term *= weight[:, tap, None]
        total += term
    return total


def _rows_interpolated(field: Field, rows: Taps, top: int, bottom: int) -> np.ndarray:
    """The field's logits interpolated to output rows top..bottom (all low-resolution columns): r × (w·K)."""
    h, w, k = field.logits.shape
    by_row = field.logits.reshape(h, w * k)  # whole rows gathered at once: contiguous copies
    return _weighted_rows(by_row, rows.index[top:bottom], rows.weight[top:bottom])


def _exact_logits(strip: np.ndarray, cols: Taps, ys: np.ndarray, xs: np.ndarray, num_classes: int) -> np.ndarray:
    """n × K logits of the output pixels (ys in the strip, xs): the strip's rows interpolated along the columns."""
    vectors = strip.reshape(-1, num_classes)  # one class vector per (strip row, low-resolution column)
    first = ys * (strip.shape[1] // num_classes)
    return _weighted_rows(vectors, first[:, None] + cols.index[xs], cols.weight[xs])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


# The margin bound decides a pixel only when it exceeds this share of the logits' largest magnitude: the exact
# computation rounds at about 1e-7 of it (a few float32 operations per resize), so no rounding can reverse it.
MARGIN_TOLERANCE = 1e-5


def _tap_weights(rows: Taps, cols: Taps, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """For output pixels (ys, xs): the weight of each low-resolution vector they read, n × (row taps · column taps)
    in row-major order."""
    return (rows.weight[ys][:, :, None] * cols.weight[xs][:, None, :]).reshape(len(ys), -1)


def _second_largest(flat: np.ndarray, argmax: np.ndarray) -> np.ndarray:
    """Per row of ``flat`` (positions × K), the largest logit other than the argmax's."""
    second = np.empty(len(flat), dtype=flat.dtype)
    step = max(1, STRIP_BYTES // (4 * flat.shape[1]))
    for start in range(0, len(flat), step):  # a copy of a block at a time, with each argmax masked out
        block = flat[start : start + step].copy()
        block[np.arange(len(block)), argmax[start : start + step]] = -np.inf
        second[start : start + step] = block.max(axis=1)
    return second


def _decide_by_bound(
    field: Field, rows: Taps, cols: Taps, argmax: np.ndarray, labels: np.ndarray, decided: np.ndarray
) -> None:
    """Label the undecided pixels whose winner is certain without their K logits (see the module's docstring), in
    place: whole cells at once where a single bilinear resize makes that possible, then a chunk of pixels at a
    time."""
    h, w, k = field.logits.shape
    flat = field.logits.reshape(h * w, k)
    ys, xs = np.nonzero(~decided)
    if k < 2 or len(ys) == 0:
        return
    argmax = argmax.reshape(-1).astype(np.int64)
    second = _second_largest(flat, argmax)
    tolerance = MARGIN_TOLERANCE * float(max(flat[np.arange(len(flat)), argmax].max(), -flat.min()))
    if rows.index.shape[1] == cols.index.shape[1] == 2:
        cells = _Cells(flat, argmax, second, w, rows, cols, ys, xs)
        winner, sure = cells.winners_over_blocks(rows, cols, tolerance)
        sure_pixel = sure[cells.of_pixel]
        labels[ys[sure_pixel], xs[sure_pixel]] = winner[cells.of_pixel[sure_pixel]]
        decided[ys[sure_pixel], xs[sure_pixel]] = True
        ys, xs = ys[~sure_pixel], xs[~sure_pixel]
    taps = rows.index.shape[1] * cols.index.shape[1]
    chunk = max(1, STRIP_BYTES // (8 * taps * taps))
    for start in range(0, len(ys), chunk):
        y, x = ys[start : start + chunk], xs[start : start + chunk]
        cells = _Cells(flat, argmax, second, w, rows, cols, y, x)
        winner, margin = _best_candidate(_tap_weights(rows, cols, y, x), *cells.for_pixels())
        sure = (margin > tolerance) & cells.decidable[cells.of_pixel]
        labels[y[sure], x[sure]] = winner[sure]
        decided[y[sure], x[sure]] = True


# Candidates per cell: its corners' distinct argmaxes, at most this many (a cell whose corners have more is left
# to the exact computation). Two or three is usual: a cell of 3×3 vectors rarely straddles more classes.
MAX_CANDIDATES = 4


class _Cells:
    """The low-resolution cells that output pixels (ys, xs) read: a cell is the T×U rectangle of logit vectors from
    its top-left one (clamped at the edges, where a band has zero weight past it). Per cell, the candidates are its
    corners' distinct argmaxes; their logits at every corner and each corner's second-largest logit are gathered
    once."""

    def __init__(self, flat, argmax, second, width: int, rows: Taps, cols: Taps, ys: np.ndarray, xs: np.ndarray):
        height = len(flat) // width
        top_left = rows.index[ys, 0] * width + cols.index[xs, 0]
        used = np.zeros(len(flat), dtype=bool)
        used[top_left] = True
        cells = np.flatnonzero(used)
        self.of_pixel = (np.cumsum(used) - 1)[top_left]  # a pixel's cell, in the order of ``cells``
        self.row, self.col = cells // width, cells % width
        corner_rows = np.minimum(self.row[:, None] + np.arange(rows.index.shape[1]), height - 1)
        corner_cols = np.minimum(self.col[:, None] + np.arange(cols.index.shape[1]), width - 1)
        corners = (corner_rows[:, :, None] * width + corner_cols[:, None, :]).reshape(len(cells), -1)  # cells × P
        self.classes, self.decidable = _distinct(argmax[corners], MAX_CANDIDATES)  # cells × candidate
        self.values = flat[corners[:, None, :], self.classes[:, :, None]]  # cells × candidate × corner
        self.second = second[corners]  # cells × corner

    def for_pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.classes[self.of_pixel], self.values[self.of_pixel], self.second[self.of_pixel]

    def winners_over_blocks(self, rows: Taps, cols: Taps, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
        """Two taps per axis: the output pixels reading a cell take weights (1−α, α) × (1−β, β) with α and β in a
        small range. Every candidate's margin is bilinear in (α, β), so its minimum over that box lies at a corner of
        the box: the same sure winner at all four corners is the sure winner of every pixel of the cell."""
        alpha_low, alpha_high = _upper_weight_range(rows, self.row)
        beta_low, beta_high = _upper_weight_range(cols, self.col)
        winners, sure = [], self.decidable.copy()
        for alpha in (alpha_low, alpha_high):
            for beta in (beta_low, beta_high):
                weight = np.stack([(1 - alpha) * (1 - beta), (1 - alpha) * beta, alpha * (1 - beta), alpha * beta], 1)
                winner, margin = _best_candidate(weight, self.classes, self.values, self.second)
                winners.append(winner)
                sure &= (margin > tolerance) & (winner == winners[0])
        return winners[0], sure


def _upper_weight_range(taps: Taps, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For bands starting at input ``first``: the smallest and largest weight of their second tap over the outputs
    that read them."""
    low = np.full(taps.index.max() + 1, np.inf, dtype=np.float32)
    high = np.full_like(low, -np.inf)
    np.minimum.at(low, taps.index[:, 0], taps.weight[:, 1])
    np.maximum.at(high, taps.index[:, 0], taps.weight[:, 1])
    return low[first], high[first]


def _distinct(classes: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of each row, the first ``most`` of them in ascending order (rows with fewer repeat their
    smallest: a repeated candidate changes nothing), and whether a row had no more than ``most``."""
    ordered = np.sort(classes, axis=1)
    new = np.ones_like(ordered, dtype=bool)
    new[:, 1:] = ordered[:, 1:] != ordered[:, :-1]
    slots = np.argsort(~new, axis=1, kind="stable")[:, :most]  # where the distinct values sit, first come first
    picked = np.take_along_axis(ordered, slots, axis=1)
    count = new.sum(axis=1)
    picked = np.where(np.arange(picked.shape[1]) < count[:, None], picked, ordered[:, :1])
    return picked, count <= most


def _best_candidate(
    weight: np.ndarray, classes: np.ndarray, values: np.ndarray, second: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """With corner weights n×P: the candidate class whose interpolated logit is largest, and by how much it beats
    both the other candidates and Σ weight × (second-largest logit), which no other class can exceed (every corner's
    argmax is a candidate). A positive margin makes it the argmax over all classes."""
    scores = np.einsum("np,njp->nj", weight, values)  # each candidate's interpolated logit
    outside = np.einsum("np,np->n", weight, second)
    best = scores.argmax(axis=1)
    rows = np.arange(len(scores))
    winner = classes[rows, best]
    rival = np.where(classes == winner[:, None], -np.inf, scores).max(axis=1)
    return winner, scores[rows, best] - np.maximum(rival, outside)


def _logits_from_taps(field: Field, rows: Taps, cols: Taps, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """n × K logits of output pixels (ys, xs), each summed from the low-resolution vectors it reads."""
    h, w, k = field.logits.shape
    position = (rows.index[ys][:, :, None] * w + cols.index[xs][:, None, :]).reshape(len(ys), -1)
    return _weighted_rows(field.logits.reshape(h * w, k), position, _tap_weights(rows, cols, ys, xs))


def _decide_directly(fields: Sequence[Field], output: tuple[int, int]) -> tuple[list, np.ndarray, np.ndarray]:
    """Each field with its taps and low-resolution argmax; the labels of the pixels decided without their logits
    (one class over the whole rectangle, or by the margin bound), and which pixels those are."""
    height, width = output
    prepared = []
    labels = decided = None
    for field in fields:
        rows, cols = field.taps()
        if rows.index.shape[0] != height or cols.index.shape[0] != width:
            raise ValueError(f"a pass reaches {rows.index.shape[0]}×{cols.index.shape[0]}, not {height}×{width}")
        argmax = field.logits.argmax(axis=2).astype(np.int16 if field.logits.shape[2] < 2**15 else np.int32)
        high, low = _rectangle_extremes(argmax, rows, cols)
        if labels is None:
            labels, decided = high, high == low
        else:
            decided &= (high == low) & (high == labels)
        prepared.append((field, rows, cols, argmax))
    if len(fields) == 1:
        _decide_by_bound(*prepared[0], labels, decided)
    return prepared, labels, decided


def labels_from_fields(fields: Sequence[Field], output: tuple[int, int]) -> np.ndarray:
    """The argmax over classes of the fields' logits (one field) or of their averaged softmax (several), at
    ``output`` (height, width), as int64 labels."""
    height = output[0]
    prepared, labels, agree = _decide_directly(fields, output)
    num_classes = fields[0].logits.shape[2]
    width_in = max(field.logits.shape[1] for field in fields)
    rows_per_strip = max(1, STRIP_BYTES // (4 * num_classes * width_in))
    chunk = max(1, STRIP_BYTES // (8 * num_classes))  # the sum and one term fit in a strip's bytes
    for top in range(0, height, rows_per_strip):
        bottom = min(height, top + rows_per_strip)
        ys, xs = np.nonzero(~agree[top:bottom])
        if len(ys) == 0:
            continue
        if len(fields) == 1 and _taps_are_cheaper(len(ys), bottom - top, *prepared[0][:3]):
            for start in range(0, len(ys), chunk):
                y, x = top + ys[start : start + chunk], xs[start : start + chunk]
                labels[y, x] = _logits_from_taps(*prepared[0][:3], y, x).argmax(axis=1)
            continue
        strips = [(_rows_interpolated(field, rows, top, bottom), cols) for field, rows, cols, _ in prepared]
        for start in range(0, len(ys), chunk):
            y, x = ys[start : start + chunk], xs[start : start + chunk]
            if len(strips) == 1:
                scores = _exact_logits(*strips[0], y, x, num_classes)
            else:
                scores = sum(_softmax(_exact_logits(strip, cols, y, x, num_classes)) for strip, cols in strips)
            labels[top + y, x] = scores.argmax(axis=1)
        del strips, scores  # before the next strip is made: one strip at a time
    return labels.astype(np.int64, copy=False)


def _taps_are_cheaper(pixels: int, strip_rows: int, field: Field, rows: Taps, cols: Taps) -> bool:
    """Whether summing each pixel's taps reads fewer class vectors than interpolating the strip's rows first."""
    row_taps, col_taps = rows.index.shape[1], cols.index.shape[1]
    return pixels * row_taps * col_taps < strip_rows * field.logits.shape[1] * row_taps + pixels * col_taps


def boundary_fraction(fields: Sequence[Field], output: tuple[int, int]) -> float:
    """The share of output pixels that :func:`labels_from_fields` computes exactly (for benchmarks)."""
    return float(1.0 - _decide_directly(fields, output)[2].mean())


def upsample(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (``align_corners=False``) of h×w×K logits to ``size``, as a new contiguous array: separable,
    two taps per axis."""
    h, w = logits.shape[:2]
    if (h, w) == tuple(size):
        return np.ascontiguousarray(logits, dtype=np.float32)
    out = _resize_axis(np.asarray(logits, dtype=np.float32), size[0], axis=0)
    return _resize_axis(out, size[1], axis=1)


def _resize_axis(x: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    n_in = x.shape[axis]
    if n_in == n_out:
        return x
    low, high, w_low = two_taps(n_in, n_out)
    w_low = w_low.astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = n_out
    w_low = w_low.reshape(shape)
    a, b = np.take(x, low, axis=axis), np.take(x, high, axis=axis)
    # a·w + b·(1 − w) = b + (a − b)·w, in place
    np.subtract(a, b, out=a)
    a *= w_low
    a += b
    return a
