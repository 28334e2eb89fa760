"""Bilinear resizing (``align_corners=False``), with faster paths for CPU inference.

On the CPU, PyTorch's bilinear kernel for channels-last maps divides its work by image, so for a single image it runs
on one thread, and it costs as much in bf16 as in fp32 (it converts every element). The final 150-class logits
upsampling then takes a third of SegFormer-B0's time at 512². Two exact rewrites help:

* An integer upscaling factor s makes bilinear interpolation s fixed lerps per axis: output position s·i + k always
  mixes inputs i-1, i (or i, i+1) with the same weight. Each phase is one vectorised ``torch.lerp`` over long
  contiguous rows of a channels-last map.
* Bilinear resizing is separable and linear: along each axis it is a matrix with two non-zeros per row. A sum of
  resized maps is then a matrix product, which bf16 matrix units (AMX) compute with fp32 accumulation.

Both give the same values as ``F.interpolate`` up to rounding; the tests check it.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

REDUCED_PRECISION = (torch.bfloat16, torch.float16)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``, through the lerp phases when that is faster."""
    if _use_phases(x, size):
        return _upsample_by_phases(x, size[0] // x.shape[2], size[1] // x.shape[3])
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def resize_and_sum(base: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
    """``base + Σ resize(m, base's size)`` as a batched matrix product, written into ``base`` (bf16 CPU inference).

    Each map is first resized along W (a matrix product over W), the results are stacked along H, and one
    ``baddbmm`` applies all the H interpolation matrices at once and adds ``base`` in the same pass.
    """
    B, C, H, W = base.shape
    rows, row_weights = [], []
    for m in maps:
        rows.append(torch.matmul(interpolation_matrix(m.shape[3], W, m.dtype, m.device), m.permute(0, 2, 3, 1)))
        row_weights.append(interpolation_matrix(m.shape[2], H, m.dtype, m.device))
    stacked = torch.cat(rows, dim=1).reshape(B, -1, W * C)  # B × Σh_k × (W·C)
    weights = torch.cat(row_weights, dim=1).expand(B, -1, -1)  # B × H × Σh_k
    rows_of_base = base.permute(0, 2, 3, 1).reshape(B, H, W * C)  # a view when base is channels-last
    rows_of_base.baddbmm_(weights, stacked)  # in place: base is a fresh conv output
    return rows_of_base.view(B, H, W, C).permute(0, 3, 1, 2)  # channels-last B×C×H×W


def use_matrix_resize(x: torch.Tensor) -> bool:
    """Whether :func:`resize_and_sum` beats resizing and adding map by map (measured: bf16 on CPU)."""
    return x.device.type == "cpu" and x.dtype in REDUCED_PRECISION and _eager_inference(x)


@functools.lru_cache(maxsize=64)
def interpolation_matrix(n_in: int, n_out: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """n_out × n_in matrix of 1-D linear interpolation weights, taken from ``F.interpolate`` itself."""
    eye = torch.eye(n_in, device=device)[None]  # channel c is the unit impulse at c
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[0].t().to(dtype).contiguous()


def _eager_inference(x: torch.Tensor) -> bool:
    # The fast paths write into views (no autograd) and branch on sizes (which exported graphs must not freeze).
    return not (
        x.requires_grad or torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    )


def _use_phases(x: torch.Tensor, size: tuple[int, int]) -> bool:
    h, w = x.shape[2:]
    return (
        _eager_inference(x)  # first: compiled code must not trace the checks below
        and x.device.type == "cpu"
        and x.shape[0] < torch.get_num_threads()  # PyTorch's kernel splits work by image only: idle threads
        and x.is_contiguous(memory_format=torch.channels_last)
        and size[0] % h == 0
        and size[1] % w == 0
        and size[0] > h
        and size[1] > w
    )


def _upsample_by_phases(x: torch.Tensor, sh: int, sw: int) -> torch.Tensor:
    B, C, h, w = x.shape
    out = x.new_empty((B, h * sh, w * sw, C))  # B×H×W×C: channels-last memory
    for b in range(B):  # one image at a time, so its intermediate stays in cache for the second pass
        rows = _upsample_axis(x[b].permute(1, 2, 0), 1, sw)  # along W first (h×W×C), while the map is small
        _upsample_axis(rows, 0, sh, out=out[b])  # then along H, over rows of W·C contiguous values
    return out.permute(0, 3, 1, 2)


def _upsample_axis(x: torch.Tensor, dim: int, s: int, out: torch.Tensor | None = None) -> torch.Tensor:
    """Upsample ``x`` s times along ``dim``: output s·i + k = lerp(x[i-1], x[i]) or lerp(x[i], x[i+1]), edges
    clamped."""
    n = x.shape[dim]
    if out is None:
        out = x.new_empty(x.shape[:dim] + (n * s,) + x.shape[dim + 1 :])
    phases = out.unflatten(dim, (n, s))
    lower, upper = x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1)
    for k in range(s):
        src = (k + 0.5) / s - 0.5  # source offset of phase k relative to i
        phase = phases.select(dim + 1, k)
        if src < 0:  # between i-1 and i; the first row clamps to x[0]
            phase.narrow(dim, 0, 1).copy_(x.narrow(dim, 0, 1))
            torch.lerp(lower, upper, 1 + src, out=phase.narrow(dim, 1, n - 1))
        else:  # between i and i+1; the last row clamps to x[n-1]
            phase.narrow(dim, n - 1, 1).copy_(x.narrow(dim, n - 1, 1))
            torch.lerp(lower, upper, src, out=phase.narrow(dim, 0, n - 1))
    return out
