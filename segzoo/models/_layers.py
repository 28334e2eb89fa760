"""Small building blocks shared by the decode heads."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (no bias) → BatchNorm → ReLU, with mmcv ConvModule's key names (``conv.*``, ``bn.*``).

    A plain ``nn.BatchNorm2d`` (not a fused norm-act layer) so that ``SyncBatchNorm.convert_sync_batchnorm``, which
    Lightning calls for ``sync_batchnorm=True``, converts it without dropping the activation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, device=None, dtype=None):
        dd = {"device": device, "dtype": dtype}
        super().__init__(
            OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False, **dd),
                bn=nn.BatchNorm2d(out_channels, **dd),
                act=nn.ReLU(inplace=True),
            )
        )
