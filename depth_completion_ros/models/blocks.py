"""Shared building blocks for the compact networks.

`SeparableConvBlock` is the one layer design of CDSPN (its thesis, Fig. 3.2): a depth-wise k x k
convolution (with the layer's stride), a point-wise 1 x 1 projection, batch normalisation and ReLU.
Decoder layers put a parameter-free bilinear x2 up-sampling in front of the same block, which avoids
the checkerboard pattern of transposed convolutions.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def softmax_planes(planes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Softmax across a few [B, 1, H, W] planes (e.g. per-pixel confidences of candidate depths), plane by
    plane. Same values as `torch.softmax` over their concatenation; written out because ONNX Runtime
    computes a Softmax over the channel axis through transposes, 3-6x slower at image sizes than these
    element-wise operations."""
    peak = planes[0]
    for plane in planes[1:]:
        peak = torch.maximum(peak, plane)
    exps = [torch.exp(plane - peak) for plane in planes]
    total = exps[0]
    for plane in exps[1:]:
        total = total + plane
    scale = torch.reciprocal(total)
    return [plane * scale for plane in exps]


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


class SeparableConvBlock(nn.Module):
    """Depth-wise separable convolution block: [bilinear x2 up-sampling] -> depth-wise k x k conv
    (stride s, groups = in_channels, no bias) -> point-wise 1 x 1 conv -> BatchNorm -> ReLU.

    No normalisation or activation sits between the depth-wise and point-wise convolutions (the
    linear factorisation of a dense convolution; it also saves one normalisation per layer).
    `residual=True` adds the block input to the normalised output before the activation; it needs
    stride 1 and equal channel counts (the input taken after up-sampling).
    `output_layer=True` drops normalisation and activation and gives the point-wise conv a bias, for
    prediction heads (depth and confidence).

    Parameters: in*k*k (depth-wise) + in*out (point-wise) + 2*out (BatchNorm), or
    in*k*k + in*out + out for an output layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 upsample: bool = False, residual: bool = False, output_layer: bool = False):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd so that padding keeps the grid, got {kernel_size}")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        if upsample and stride != 1:
            raise ValueError("an up-sampling (decoder) block must have stride 1")
        if residual and (stride != 1 or in_channels != out_channels or output_layer):
            raise ValueError("a residual block needs stride 1, in_channels == out_channels and no output head")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.upsample = upsample
        self.residual = residual
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                                   padding=kernel_size // 2, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=output_layer)
        self.norm = nn.Identity() if output_layer else nn.BatchNorm2d(out_channels)
        self.activation = nn.Identity() if output_layer else nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in, H, W] -> [B, out, H', W'] with H' = 2H (up-sampling), H/s (stride s) or H."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.norm(self.pointwise(self.depthwise(x)))
        if self.residual:
            y = y + x
        return self.activation(y)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}->{self.out_channels}, stride={self.stride}, "
                f"upsample={self.upsample}, residual={self.residual}")
